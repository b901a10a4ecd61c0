"""The HTML report: plots embedded, trajectories with useful/noisy marks, the evaluation table, odd runs."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from zerosearch.cli import main
from zerosearch.report import MOVING_AVERAGE_STEPS, PLOTS, with_moving_average, write_report

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics_row(step: int, total: int, ppo: bool = False) -> dict:
    """A metrics.jsonl line with every key the trainer logs, values moving like a real run's."""
    x = step / total
    row = {
        "step": step, "noise_probability": 0.5 * (4 ** x - 1) / 3, "reward_mean": 0.1 + 0.4 * x,
        "f1_mean": 0.1 + 0.4 * x, "em_mean": 0.05 + 0.3 * x, "cover_em_mean": 0.08 + 0.35 * x,
        "searches_per_rollout": 0.5 + x, "turns_mean": 1.5 + x, "invalid_action_rate": 0.3 * (1 - x),
        "answered_rate": 0.6 + 0.3 * x, "context_exhausted_rate": 0.0, "response_tokens_mean": 120 + 60 * x,
        "loss_mask_fraction": 0.4, "search_calls": 10, "search_failures": 0, "noisy_share": 0.5 * x,
        "trajectories_updated": 8, "policy_loss": 0.1 - 0.05 * x, "kl": 0.001 * step, "entropy": 2.0 - x,
        "grad_norm": 1.0 + x, "clipfrac": 0.01, "lr": 1e-6, "rollout_seconds": 3.0, "search_seconds": 1.0,
        "generate_seconds": 2.0, "update_seconds": 1.5, "step_seconds": 4.8,
        "groups_sampled": 4, "groups_uniform": 2, "groups_trained": 4,
    }
    if ppo:
        row["value_loss"] = 0.2 * (1 - x)
    return row


def trajectory(question: str, noisy: bool, reward: float) -> dict:
    """A rollouts/step_N.jsonl record: search (flagged), invalid, answer."""
    return {
        "question": question, "golden_answers": ["Tulsa", "Tulsa, Oklahoma"], "status": "answered",
        "turns": [
            {"action": "search", "text": "<think> find the band </think> <search> Tinted Windows first show </search>",
             "n_tokens": 18, "query": "Tinted Windows first show", "noisy": noisy, "error": None,
             "documents": ["(Tinted Windows) Tinted Windows played their first show in Tulsa.",
                           "Doc <b>two</b> & more"]},
            {"action": "invalid", "text": "hmm", "n_tokens": 2, "query": None, "documents": [], "noisy": None,
             "error": None},
            {"action": "answer", "text": "<answer> Tulsa </answer>", "n_tokens": 6, "query": None, "documents": [],
             "noisy": None, "error": None},
        ],
        "response": "...", "response_tokens": 120, "policy_tokens": 26, "answer": "Tulsa",
        "reward": reward, "f1": reward, "em": reward, "cover_em": reward,
    }


def make_run(root: Path, steps: int = 6, ppo: bool = False, rows: list[dict] | None = None) -> Path:
    """A run directory as the trainer writes it (config.yaml, metrics.jsonl, rollouts/step_N.jsonl)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"model: zerosearch:tiny\nalgorithm: reinforce\ntotal_steps: {steps}\n"
                                      "curriculum:\n  start: 0.0\n  end: 0.5\n", encoding="utf-8")
    rows = rows if rows is not None else [metrics_row(s, steps, ppo) for s in range(1, steps + 1)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "rollouts").mkdir(exist_ok=True)
    for r in rows:
        records = [trajectory(f"Q{r['step']}-{i} <script>alert(1)</script>", noisy=i % 2 == 1, reward=i / 2)
                   for i in range(3)]
        (root / "rollouts" / f"step_{r['step']}.jsonl").write_text(
            "".join(json.dumps(t) + "\n" for t in records), encoding="utf-8")
    return root


class _Collector(HTMLParser):
    """Collects tags (with attributes) and text; fails on nothing, so check structure explicitly."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.unbalanced: list[str] = []
        self.text: list[str] = []

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.unbalanced.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    assert not collector.unbalanced and not collector.stack, (collector.unbalanced, collector.stack)
    return collector


def embedded_pngs(page: _Collector) -> list[bytes]:
    prefix = "data:image/png;base64,"
    return [base64.b64decode(attrs["src"][len(prefix):]) for tag, attrs in page.tags
            if tag == "img" and attrs.get("src", "").startswith(prefix)]


def test_report_embeds_every_plot_and_marks_noisy_and_useful_searches(tmp_path):
    run = make_run(tmp_path / "run", ppo=True)
    path = write_report(run)
    assert path == run / "report" / "index.html"
    page = parse(path)
    pngs = embedded_pngs(page)
    assert len(pngs) == len(PLOTS) and all(p.startswith(PNG_MAGIC) and len(p) > 5000 for p in pngs)
    assert {p.name for p in (run / "report").glob("*.png")} == {f"{plot.name}.png" for plot in PLOTS}
    html_text = path.read_text(encoding="utf-8")
    assert "src=" not in html_text.replace("src='data:image/png;base64,", "")  # nothing loaded from outside
    assert "<script" not in html_text  # the question's <script> was escaped
    text = " ".join(page.text)
    assert "<script>alert(1)</script>" in text and "Doc <b>two</b> & more" in text
    assert "NOISY" in text and "USEFUL" in text
    # first, middle and last step; 3 trajectories each by default, documents folded
    steps = [attrs["id"] for tag, attrs in page.tags if tag == "h3" and attrs.get("id", "").startswith("step-")]
    assert steps == ["step-1", "step-4", "step-6"]
    assert sum(1 for tag, attrs in page.tags if tag == "article") == 9
    assert sum(1 for tag, _ in page.tags if tag == "details") >= 9


def test_reward_moving_average_by_hand():
    # rewards 0, 1, None (not logged), 0.5 with a window of 2: 0/1, (0+1)/2, the last two logged (0+1)/2, (1+0.5)/2
    rows = [{"reward_mean": 0.0}, {"reward_mean": 1.0}, {}, {"reward_mean": 0.5}]
    assert [r["reward_moving_average"] for r in with_moving_average(rows, window=2)] == [0.0, 0.5, 0.5, 0.75]
    assert "reward_moving_average" not in rows[0]  # the rows are not changed in place


def test_report_shows_the_reward_moving_average(tmp_path):
    run = make_run(tmp_path / "run")
    text = " ".join(parse(write_report(run)).text)
    # six steps of rewards 0.1 + 0.4 * step / 6: the mean of all six (a window of 10) is 0.1 + 0.4 * 3.5 / 6
    assert f"reward, mean of the last {MOVING_AVERAGE_STEPS} steps" in text
    assert f"{0.1 + 0.4 * 3.5 / 6:.3f}" in text


def test_one_step_nan_metrics_and_no_value_loss(tmp_path):
    row = metrics_row(1, 1)
    row.update(kl=None, entropy=None, grad_norm=float("nan"), policy_loss=None, clipfrac=None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps(row).replace("NaN", "null") + "\n", encoding="utf-8")
    page = parse(write_report(run))
    pngs = embedded_pngs(page)
    # KL/entropy and losses have no finite value: those two plots are reported missing, the rest drawn
    assert len(pngs) == len(PLOTS) - 2
    text = " ".join(page.text)
    assert "KL to the reference and entropy: not logged in this run" in text
    assert "Losses and gradient: not logged in this run" in text
    assert "Sample trajectories" not in text  # no rollouts directory


def test_evaluation_table_is_included(tmp_path):
    run = make_run(tmp_path / "run", steps=2)
    (run / "eval" / "rag").mkdir(parents=True)
    (run / "eval" / "rag" / "results.md").write_text(
        "**rag** with `m`, engine `example`\n\n| metric | nq | average |\n|---|---:|---:|\n"
        "| EM (exact match, %) | 12.50 | 12.50 |\n", encoding="utf-8")
    page = parse(write_report(run))
    text = " ".join(page.text)
    assert "Evaluation" in text and "EM (exact match, %)" in text and "12.50" in text
    assert any(tag == "table" and attrs.get("class") == "eval" for tag, attrs in page.tags)


def test_not_a_run_dir_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        write_report(tmp_path)


def test_report_of_a_real_one_step_training_run(tmp_path, monkeypatch, capsys):
    """The trainer's own output (PPO: value_loss logged; the tiny random model never searches)."""
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    assert main(["train", "configs/tiny.yaml", "algorithm=ppo", "total_steps=1", f"output_dir={run}",
                 "--no-progress"]) == 0
    from test_cli_eval import cli  # the eval/report subcommands, registered as cli.py does

    capsys.readouterr()
    assert cli(["report", str(run)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == run / "report" / "index.html"
    page = parse(path)
    assert len(embedded_pngs(page)) == len(PLOTS)
    text = " ".join(page.text)
    assert "Step 1" in text and "Configuration" in text


def test_metrics_with_a_bad_line_in_the_middle_say_what_they_leave_out(tmp_path, capsys):
    """A torn last line (a kill mid-write) ends the history quietly; a bad line with steps after it is no
    torn write, and the warning names the file, the line and what is not read."""
    from zerosearch.metrics import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    assert capsys.readouterr().err == ""
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n\n{"step": 4}\n')
    assert read_metrics(tmp_path) == [{"step": 1}]
    assert capsys.readouterr().err == (f"[zerosearch] warning: {path}:2 is not a JSON line; the 1 step(s) before "
                                       "it are read, the 2 line(s) after it are not\n")


def paired_run(tmp_path: Path) -> Path:
    """A run whose eval/ holds the three stages' evaluations, written by hand (test_compare.STAGE_EMS)."""
    from test_compare import STAGE_EMS
    from test_paired import make_eval, rows

    run = make_run(tmp_path / "run", steps=2)
    for stage, folder in (("trained", run / "eval"), ("warmup", run / "eval" / "warmup"),
                          ("untrained", run / "eval" / "untrained")):
        make_eval(folder, {"hotpotqa": rows(STAGE_EMS[stage])}, model=stage)
        (folder / "results.json").unlink()  # no evaluation tables: this test is about the comparison
    return run


def stage_results() -> dict:
    return {stage: {"engine": "example", "model": stage, "average": {"n": 10, "em": em, "f1": em}}
            for stage, em in (("untrained", 0.0), ("warmup", 0.2), ("trained", 0.4))}


def test_report_shows_the_paired_differences_with_ci_and_p(tmp_path):
    from zerosearch.compare import COMPARISON_JSON, COMPARISON_MD, comparison_table, paired_comparisons, paired_table

    run = paired_run(tmp_path)
    paired = paired_comparisons(run / "eval", ("untrained", "warmup", "trained"))
    (run / "eval" / COMPARISON_MD).write_text(comparison_table(stage_results()) + "\n" + paired_table(paired))
    (run / "eval" / COMPARISON_JSON).write_text(json.dumps({"trained": {}, "paired": paired}))
    text = " ".join(parse(write_report(run)).text)
    ci = paired["trained_vs_warmup"]["average"]["em"]["ci95"]
    for cell in ("after RL vs after warm-up", f"+20.0 [{ci[0]:.1f}, {ci[1]:.1f}]", "0.625", "no detectable change",
                 "after RL vs untrained", "0.125", "EM higher, F1 higher"):
        assert cell in text, cell
    assert text.count("after RL vs after warm-up") == 1  # held by comparison.md: not computed again


def test_report_of_a_run_compared_before_paired_statistics_computes_them(tmp_path):
    from zerosearch.compare import COMPARISON_JSON, COMPARISON_MD, comparison_table

    run = paired_run(tmp_path)
    (run / "eval" / COMPARISON_MD).write_text(comparison_table(stage_results()))  # as older versions wrote it
    (run / "eval" / COMPARISON_JSON).write_text(json.dumps({"untrained": {}, "warmup": {}, "trained": {}}))
    text = " ".join(parse(write_report(run)).text)
    assert "after RL vs after warm-up" in text and "0.625" in text and "after RL vs untrained" in text
    # a stage that cannot be paired (an interrupted evaluation: other questions) loses its row, not the others'
    (run / "eval" / "untrained" / "examples" / "hotpotqa.jsonl").write_text("")
    text = " ".join(parse(write_report(run)).text)
    assert "after RL vs after warm-up" in text and "after RL vs untrained" not in text
    (run / "eval" / "warmup" / "examples" / "hotpotqa.jsonl").unlink()
    text = " ".join(parse(write_report(run)).text)
    assert "Before and after" in text and "after RL vs" not in text
