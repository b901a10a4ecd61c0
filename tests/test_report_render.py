"""The report as a browser renders it: headless Chromium screenshots it and dumps its DOM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_report import make_run
from zerosearch.report import PLOTS, write_report

pytestmark = pytest.mark.integration

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
# CI installs Chromium and sets ZEROSEARCH_REQUIRE_CHROMIUM=1 so that these tests cannot silently skip there.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("ZEROSEARCH_REQUIRE_CHROMIUM") != "1",
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report(make_run(tmp_path_factory.mktemp("render") / "run", steps=12, ppo=True))


@needs_chromium
def test_screenshot_is_a_full_non_blank_page(report, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "page.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    # the plots area (below the summary) has real variation, not a blank or single-colour page
    stat = ImageStat.Stat(image.crop((0, 600, 1280, 2600)))
    assert max(stat.stddev) > 20
    assert len(image.resize((320, 1000)).getcolors(maxcolors=1_000_000)) > 200


@needs_chromium
def test_rendered_dom_has_the_plots_and_the_trajectories(report, tmp_path):
    result = chromium(tmp_path, "--dump-dom", report.as_uri())
    dom = result.stdout
    assert dom.count("data:image/png;base64,") == len(PLOTS), result.stderr[-2000:]
    assert dom.count("<article class=\"traj") == 9
    assert "NOISY" in dom and "USEFUL" in dom and "<details>" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script>" not in dom


@needs_chromium
def test_before_after_table_and_warmup_curve_render(tmp_path):
    """The default run's report: the before/after table (untrained, warmed-up, RL-trained) and the warm-up's
    loss curve, as Chromium lays them out."""
    from zerosearch.compare import COMPARISON_MD, comparison_table

    run = make_run(tmp_path / "run", steps=3)
    (run / "eval").mkdir()
    results = {stage: {"engine": "example", "model": stage,
                       "average": {"n": 50, "em": em, "cover_em": em, "f1": em + 0.01, "answered_rate": a,
                                   "searches_per_question": a, "invalid_action_rate": 1 - a, "response_tokens": 400}}
               for stage, em, a in (("untrained", 0.0, 0.0), ("warmup", 0.14, 1.0), ("trained", 0.16, 1.0))}
    (run / "eval" / COMPARISON_MD).write_text(comparison_table(results))
    (run / "warmup.json").write_text(json.dumps({
        "model_dir": "/cache/warmup/abc", "cached": False,
        "demonstrations": {"rows": 64, "one_search": 35, "two_searches": 28},
        "sft": {"steps": 16, "loss_curve": [[5, 0.9], [10, 0.3], [15, 0.2], [16, 0.19]]}}))
    page = write_report(run)
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    table = dom[dom.index("id=\"comparison\""):]
    table = table[:table.index("</table>")]
    for cell in ("untrained", "after warm-up", "after RL", "14.0", "16.0", "100.0"):
        assert f">{cell}<" in table, cell
    assert "id=\"plot-warmup\"" in dom and dom.count("data:image/png;base64,") == len(PLOTS) + 1
    assert dom.index("Before and after") < dom.index("Training curves")  # the headline comes first
