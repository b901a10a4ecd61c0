"""``zerosearch compare``: two evaluation directories paired question by question, worked by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zerosearch.cli import main
from zerosearch.paired import compare_evaluations, format_comparison, write_comparison
from zerosearch.stats import paired_bootstrap_ci

REPO = Path(__file__).resolve().parents[1]


def make_eval(path: Path, datasets: dict[str, list[tuple]], model: str = "m") -> Path:
    """An evaluation directory written by hand: per dataset, (id, question, golds, em, f1[, status]); its
    results.json lists the datasets in the given order, as an evaluation does."""
    (path / "examples").mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"datasets": {name: {} for name in datasets}}))
    (path / "eval_config.json").write_text(json.dumps({"model": model, "method": "agent", "engine": "example",
                                                       "settings": {}}))
    for name, rows in datasets.items():
        with (path / "examples" / f"{name}.jsonl").open("w") as handle:
            for qid, question, golds, em, f1, *status in rows:
                failed = status == ["search_failed"]
                handle.write(json.dumps({"id": qid, "dataset": name, "question": question, "golden_answers": golds,
                                         "em": em, "f1": f1, "status": status[0] if status else "answered",
                                         "search_failures": int(failed)}) + "\n")
    return path


def rows(ems: list[int], f1s: list[float] | None = None, prefix: str = "q") -> list[tuple]:
    f1s = f1s if f1s is not None else [float(e) for e in ems]
    return [(f"{prefix}{i}", f"question {prefix}{i}?", [f"gold {i}"], float(e), f) for i, (e, f) in
            enumerate(zip(ems, f1s))]


# nq: A right on q0, q1; B right on q0, q2, q3, q4. Discordant: only A q1 (1), only B q2, q3, q4 (3).
NQ_A = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
NQ_B = [1, 0, 1, 1, 1, 0, 0, 0, 0, 0]
NQ_F1_A = [1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
NQ_F1_B = [1.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5]


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    a = make_eval(tmp_path / "a", {"nq": rows(NQ_A, NQ_F1_A), "hotpotqa": rows([0, 0], prefix="h")}, model="before")
    b = make_eval(tmp_path / "b", {"nq": rows(NQ_B, NQ_F1_B), "hotpotqa": rows([1, 1], prefix="h")}, model="after")
    return a, b


def test_rows_worked_by_hand(pair):
    result = compare_evaluations(*pair, resamples=4000)
    nq = result["datasets"]["nq"]
    assert nq["n"] == 10
    # EM: A 2/10 = 20 %, B 4/10 = 40 %, diff +20 points; McNemar n = 4 discordant, min = 1:
    # p = 2 * (C(4,0) + C(4,1)) / 2^4 = 2 * 5 / 16 = 0.625
    assert nq["em"]["a"] == pytest.approx(20) and nq["em"]["b"] == pytest.approx(40)
    assert nq["em"]["diff"] == pytest.approx(20) and nq["em"]["p_mcnemar"] == pytest.approx(0.625)
    # F1: A (1 + 1 + 0.5) / 10 = 25 %, B (1 + 0.5 + 1 + 1 + 1 + 0.5) / 10 = 50 %
    assert nq["f1"]["a"] == pytest.approx(25) and nq["f1"]["b"] == pytest.approx(50)
    assert nq["f1"]["diff"] == pytest.approx(25) and "p_mcnemar" not in nq["f1"]
    lo, hi = paired_bootstrap_ci(NQ_A, NQ_B, resamples=4000, seed=0)
    assert nq["em"]["ci95"] == pytest.approx([100 * lo, 100 * hi]) and lo < 0 < hi
    hotpot = result["datasets"]["hotpotqa"]
    # every question goes 0 -> 1: each resample's difference is 100; p = 2 * C(2,0) / 2^2 = 0.5
    assert {k: v for k, v in hotpot["em"].items() if k != "ci95"} == \
        pytest.approx({"a": 0, "b": 100, "diff": 100, "p_mcnemar": 0.5})
    assert hotpot["em"]["ci95"] == pytest.approx([100, 100])
    average = result["average"]
    # the mean over datasets: A (20 + 0) / 2 = 10, B (40 + 100) / 2 = 70, diff 60; n = 12 questions;
    # p over all 12 paired questions: only A 1, only B 5: 2 * (C(6,0) + C(6,1)) / 2^6 = 14 / 64
    assert average["n"] == 12
    assert average["em"]["a"] == pytest.approx(10) and average["em"]["b"] == pytest.approx(70)
    assert average["em"]["diff"] == pytest.approx(60) and average["em"]["p_mcnemar"] == pytest.approx(14 / 64)
    assert average["f1"]["diff"] == pytest.approx((25 + 100) / 2)
    # stratified: nq is resampled first from the same seeded generator, hotpotqa's difference is always 100,
    # so the average's interval is (nq's interval + 100) / 2 at both ends
    assert average["em"]["ci95"] == pytest.approx([(100 * lo + 100) / 2, (100 * hi + 100) / 2])
    assert result["a"]["model"] == "before" and result["b"]["model"] == "after"
    assert result["bootstrap"]["resamples"] == 4000 and result["bootstrap"]["seed"] == 0


def test_markdown_says_no_detectable_change_where_the_interval_spans_zero(pair):
    result = compare_evaluations(*pair, resamples=4000)
    md = format_comparison(result, "warm-up", "RL")
    lo, hi = result["datasets"]["nq"]["em"]["ci95"]
    assert f"| nq | 10 | 20.0 | 40.0 | +20.0 [{lo:.1f}, {hi:.1f}] | 0.625 | no detectable change |" in md
    assert "| hotpotqa | 2 | 0.0 | 100.0 | +100.0 [100.0, 100.0] | 0.500 | RL higher |" in md
    assert "| dataset | n | warm-up | RL | RL − warm-up [95% CI] | p (McNemar) | reading |" in md
    assert "F1 (%) on the same questions:" in md and "4,000 resamples" in md
    assert "| average | 12 | 10.0 | 70.0 | +60.0 [" in md


def test_written_json_has_the_issues_layout(pair, tmp_path):
    json_path, md_path = write_comparison(compare_evaluations(*pair, resamples=2000), tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert set(data) >= {"datasets", "average"} and list(data["datasets"]) == ["nq", "hotpotqa"]
    for row in [*data["datasets"].values(), data["average"]]:
        assert set(row) == {"n", "em", "f1"}
        assert set(row["em"]) == {"a", "b", "diff", "ci95", "p_mcnemar"} and set(row["f1"]) == {"a", "b", "diff", "ci95"}
        assert len(row["em"]["ci95"]) == 2
    assert md_path.read_text().startswith("# B vs A")


def test_a_lower_score_and_search_failures_are_reported(tmp_path):
    a = make_eval(tmp_path / "a", {"nq": rows([1] * 8 + [0, 0])})
    b = make_eval(tmp_path / "b", {"nq": rows([0] * 8 + [0, 0])[:9] + [("q9", "question q9?", ["gold 9"], 0.0, 0.0,
                                                                      "search_failed")]})
    result = compare_evaluations(a, b, resamples=2000)
    assert result["datasets"]["nq"]["em"]["ci95"][1] < 0  # 8 of 8 discordant go A's way
    assert result["datasets"]["nq"]["em"]["p_mcnemar"] == pytest.approx(2 / 256)  # 2 * C(8,0) / 2^8
    assert result["b"]["search_failed"] == 1 and result["a"]["search_failed"] == 0
    md = format_comparison(result)
    assert "| B lower |" in md and "0.008" in md and "Questions whose search failed, scored 0: B 1" in md


def test_different_questions_are_refused_and_named(tmp_path):
    a = make_eval(tmp_path / "a", {"nq": rows([1, 0, 1, 0]), "popqa": rows([1])})
    changed = rows([1, 0, 1, 0, 1])[1:]  # q0 missing, q4 extra
    changed[0] = ("q1", "another question?", ["gold 1"], 0.0, 0.0)
    changed[1] = ("q2", "question q2?", ["other gold"], 1.0, 1.0)
    b = make_eval(tmp_path / "b", {"nq": changed, "bamboogle": rows([1])})
    with pytest.raises(ValueError) as error:
        compare_evaluations(a, b)
    message = str(error.value)
    assert f"examples/popqa.jsonl is in {a} but missing in {b}" in message
    assert f"examples/bamboogle.jsonl is in {b} but missing in {a}" in message
    assert f"nq: 1 question(s) only in {a} (q0)" in message and f"nq: 1 question(s) only in {b} (q4)" in message
    assert "nq: 2 id(s) with another question text or other gold answers (q1, q2)" in message
    assert "\n" not in message


def test_many_differing_ids_are_abbreviated(tmp_path):
    a = make_eval(tmp_path / "a", {"nq": rows([0] * 12)})
    b = make_eval(tmp_path / "b", {"nq": rows([0] * 2)})
    with pytest.raises(ValueError, match=r"nq: 10 question\(s\) only in .*\(q10, q11, q2, q3, q4 and 5 more\)"):
        compare_evaluations(a, b)


def test_paths_that_are_not_evaluations_say_what_to_pass(tmp_path, pair):
    with pytest.raises(ValueError, match="is not a directory"):
        compare_evaluations(tmp_path / "nothing", pair[1])
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is not an evaluation directory: it has no eval_config.json"):
        compare_evaluations(tmp_path / "plain", pair[1])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "eval_config.json").write_text("{}")
    with pytest.raises(ValueError, match="has no examples/\\*.jsonl: the evaluation has not answered a question yet"):
        compare_evaluations(pair[0], empty)


def test_compare_command_end_to_end(pair, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(pair[0]), str(pair[1]), "--out", str(out), "--labels", "warm-up,RL",
                 "--resamples", "2000", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "# RL vs warm-up" in printed and "| hotpotqa | 2 | 0.0 | 100.0 | +100.0 [100.0, 100.0] | 0.500 | RL higher |" \
        in printed and f"written: {out / 'comparison.md'}" in printed
    assert json.loads((out / "comparison.json").read_text())["bootstrap"]["seed"] == 3
    assert (out / "comparison.md").read_text() in printed

    assert main(["compare", str(tmp_path), str(pair[1]), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not an evaluation directory" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    assert main(["compare", str(pair[0]), str(pair[1]), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the comparison into {tmp_path / 'file'}") and err.count("\n") == 1
    for bad in (["--resamples", "100"], ["--labels", "one"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", str(pair[0]), str(pair[1]), *bad])
        assert exit_info.value.code == 2
    assert "at least 2000" in capsys.readouterr().err


def test_compare_command_default_output_and_help_in_a_fresh_process(pair, tmp_path):
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "zerosearch.cli", "compare", str(pair[0]), str(pair[1])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "runs").glob("compare-a-vs-b-*/comparison.json"))
    assert len(written) == 1
    helped = subprocess.run([sys.executable, "-m", "zerosearch.cli", "compare", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "McNemar" in helped.stdout and "no detectable change" in helped.stdout and "examples:" in helped.stdout


def test_two_real_evaluations_compare(searcher_model, answerer_model, tmp_path):
    from support import SHORT_TEMPLATE, FixedDocumentsEngine
    from test_evaluate import qa_file, run

    template = tmp_path / "short.txt"
    template.write_text(SHORT_TEMPLATE)
    data = [qa_file(tmp_path, 8)]
    for name, model in (("answerer", answerer_model), ("searcher", searcher_model)):
        run(model, data, tmp_path / name, FixedDocumentsEngine(["the colour is red"]), template=str(template))
    result = compare_evaluations(tmp_path / "answerer", tmp_path / "searcher", resamples=2000)
    records = {name: [json.loads(line) for line in (tmp_path / name / "examples" / "colours.jsonl").open()]
               for name in ("answerer", "searcher")}
    row = result["datasets"]["colours"]
    assert row["n"] == 8
    assert row["em"]["a"] == pytest.approx(100 * sum(r["em"] for r in records["answerer"]) / 8)
    assert row["em"]["b"] == pytest.approx(100 * sum(r["em"] for r in records["searcher"]) / 8)
