"""The one jsonl reader (its bad-line policies, and records holding U+2028) and json_safe."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from zerosearch.jsonio import BadJsonLine, iter_jsonl, json_safe, read_jsonl, skip_bad_lines, skip_torn_last_line

# characters json.dumps(ensure_ascii=False) leaves unescaped in a string and str.splitlines() splits at
LINE_BREAKS_IN_TEXT = "Paris\u2028is\u2029the\x85capital"


def _write(path, lines: list[str]):
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_records_with_their_line_numbers_blank_lines_skipped(tmp_path):
    path = _write(tmp_path / "a.jsonl", ['{"id": 1}', "", "  ", '[1, 2]', '"text"'])
    assert list(iter_jsonl(path)) == [(1, {"id": 1}), (4, [1, 2]), (5, "text")]
    assert read_jsonl(path) == [{"id": 1}, [1, 2], "text"]


def test_a_record_holding_unicode_line_separators_is_one_record(tmp_path):
    """The readers this replaced split at str.splitlines() boundaries and read such a record as broken lines."""
    record = {"id": "q1", "documents": [LINE_BREAKS_IN_TEXT]}
    path = _write(tmp_path / "a.jsonl", [json.dumps(record, ensure_ascii=False), '{"id": "q2"}'])
    assert LINE_BREAKS_IN_TEXT in path.read_text(encoding="utf-8")  # written raw, not escaped
    assert read_jsonl(path) == [record, {"id": "q2"}]
    assert [number for number, _ in iter_jsonl(path)] == [1, 2]


def test_a_bad_line_is_raised_naming_the_file_and_line(tmp_path):
    path = _write(tmp_path / "a.jsonl", ['{"id": 1}', '{"id": 2', '{"id": 3}'])
    with pytest.raises(BadJsonLine) as caught:
        read_jsonl(path)
    bad = caught.value
    assert (bad.line, bad.last, bad.path) == (2, False, str(path))
    assert str(bad) == (f"{path}, line 2: not valid JSON (Expecting ',' delimiter: line 2 column 1 (char 9)); "
                        "fix or delete that line")
    assert isinstance(bad, ValueError) and isinstance(bad.error, json.JSONDecodeError)


def test_skip_torn_last_line_skips_only_the_last_with_a_warning(tmp_path, capsys):
    torn = _write(tmp_path / "torn.jsonl", ['{"id": 1}', '{"id": 2}', '{"id": 3, "tex'])
    assert read_jsonl(torn, skip_torn_last_line) == [{"id": 1}, {"id": 2}]
    assert capsys.readouterr().err == f"[zerosearch] {torn}: ignoring a torn last line 3\n"
    middle = _write(tmp_path / "middle.jsonl", ['{"id": 1}', '{"id": 2', '{"id": 3}'])
    with pytest.raises(BadJsonLine, match=r"middle.jsonl, line 2: not valid JSON"):
        read_jsonl(middle, skip_torn_last_line)
    # a trailing blank line after the torn one: the torn line is not the last line, so it is no torn write
    blank_after = _write(tmp_path / "blank.jsonl", ['{"id": 1}', '{"id": 2', "", ""])
    with pytest.raises(BadJsonLine, match="line 2"):
        read_jsonl(blank_after, skip_torn_last_line)


def test_skip_bad_lines_skips_every_bad_line_silently(tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", ["{bad", '{"id": 2}', "{bad", '{"id": 4}', "{torn"])
    assert list(iter_jsonl(path, skip_bad_lines)) == [(2, {"id": 2}), (4, {"id": 4})]
    assert capsys.readouterr().err == ""


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")


# --- the callers: each keeps its policy, and reads a record holding U+2028 ---------------------------------


def test_simulator_tuning_records_skip_a_torn_last_line_and_read_line_separators(tmp_path, capsys):
    from zerosearch.simulator_tuning.records import _read_jsonl

    row = {"row_id": "1", "calls": [{"documents": [{"text": LINE_BREAKS_IN_TEXT}]}]}
    path = _write(tmp_path / "collected.jsonl", [json.dumps(row, ensure_ascii=False), '{"row_id": "2", "ca'])
    assert _read_jsonl(path) == [row]
    assert capsys.readouterr().err == f"[zerosearch] {path}: ignoring a torn last line 2\n"


def test_eval_examples_keep_a_record_with_line_separators(tmp_path, capsys):
    """It was skipped as unreadable (and re-run at every resume, and missing from a paired comparison)."""
    from zerosearch.eval_files import read_examples

    record = {"id": "q1", "prediction": "x", "turns": [{"documents": [LINE_BREAKS_IN_TEXT]}]}
    path = _write(tmp_path / "ds.jsonl", [json.dumps(record, ensure_ascii=False), '{"bad', '{"id": "q2"}', "[1]",
                                          '{"id": "q3", "pred'])
    assert read_examples(path) == {"q1": record, "q2": {"id": "q2"}}
    assert capsys.readouterr().err.splitlines() == [  # the torn last line (5) silently
        f"[zerosearch] {path}:2: unreadable record skipped (it will be re-run)",
        f"[zerosearch] {path}:4: unreadable record skipped (it will be re-run)"]


def test_warmup_demonstrated_questions_read_line_separators(tmp_path):
    from zerosearch.warmup import DEMOS_FILE, demonstrated_questions

    demos = [{"question": "Who wrote it?", "response": LINE_BREAKS_IN_TEXT}, {"question": "Where is it?"}]
    (tmp_path / DEMOS_FILE).write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in demos),
                                       encoding="utf-8")
    assert demonstrated_questions(tmp_path) == {"who wrote it", "where is it"}


def test_report_trajectories_read_line_separators(tmp_path):
    """The report showed what it could read: a trajectory holding U+2028 was silently left out."""
    from zerosearch.report import _trajectory_section

    rollouts = tmp_path / "rollouts"
    rollouts.mkdir()
    records = [{"question": "first question", "answer": LINE_BREAKS_IN_TEXT}, {"question": "second question"}]
    _write(rollouts / "step_1.jsonl", ["{bad", *[json.dumps(r, ensure_ascii=False) for r in records], "[1]", "{torn"])
    html = _trajectory_section(tmp_path, per_step=3)
    assert html.count("<article") == 2 and "first question" in html and "second question" in html


# --- json_safe ------------------------------------------------------------------------------------------


def test_json_safe_nulls_non_finite_floats_at_any_depth():
    value = {"em": 0.5, "f1": math.nan, "n": 3, "ok": True, "name": "nq",
             "ci95": [math.inf, -1.0], "by": {"pass@1": -math.inf, "deep": [{"x": math.nan}]}, "pair": (1.0, math.nan)}
    safe = json_safe(value)
    assert safe == {"em": 0.5, "f1": None, "n": 3, "ok": True, "name": "nq", "ci95": [None, -1.0],
                    "by": {"pass@1": None, "deep": [{"x": None}]}, "pair": [1.0, None]}
    json.dumps(safe, allow_nan=False)  # standard JSON
    assert json_safe(math.nan) is None and json_safe(2.5) == 2.5 and json_safe(None) is None


def test_jsonio_needs_only_the_standard_library():
    code = ("import sys, zerosearch.jsonio; "
            "assert not {'torch', 'numpy', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
