"""Tests for zerosearch.data and zerosearch.prompts: loaders, policy prompt, render, sampler."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zerosearch.data import (
    DataError,
    PromptSampler,
    QARow,
    load_qa_file,
    load_qa_files,
    policy_prompt,
)
from zerosearch.prompts import available_templates, load_template, render

POLICY_HAMLET = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you find you lack some knowledge, "
    "you can call a search engine by <search> query </search> and it will return the top "
    "searched results between <information> and </information>. You can search as many times "
    "as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
    "<answer> Beijing </answer>. Question: who wrote hamlet?\n"
)


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path


def write_jsonl(path: Path, rows: list[object], blank_lines: bool = False) -> Path:
    separator = "\n\n" if blank_lines else "\n"
    path.write_text(separator.join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def search_r1_row(question: str, answers: list[str], index: int, with_question: bool) -> dict:
    row = {
        "data_source": "nq",
        "prompt": [{"role": "user", "content": policy_prompt(question)}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": answers}},
        "extra_info": {"split": "train", "index": index},
    }
    if with_question:
        row["question"] = question
    return row


# ---------------------------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize(
    ("relpath", "count"),
    [
        ("qa/nq_test.jsonl", 3610),
        ("qa/hotpotqa_dev.jsonl", 6905),
        ("qa/bamboogle_test.jsonl", 125),
        ("qa/hotpotqa_distractor_train.jsonl", 300),
        ("qa/hotpotqa_distractor_dev.jsonl", 300),
        ("raw/nq_test.agentic_rag.parquet", 3610),
        ("raw/nq_test.agentic_rag.head.jsonl", 50),
        # The data README says 16; the file holds test_0..test_16 (its last line has no newline).
        ("raw/nq_test.flashrag.jsonl", 17),
    ],
)
def test_real_file_row_counts(data_dir: Path, relpath: str, count: int) -> None:
    rows = load_qa_file(data_dir / relpath)
    assert len(rows) == count
    assert all(row.question == row.question.strip() and row.golden_answers for row in rows)


def test_real_flashrag_row(data_dir: Path) -> None:
    rows = load_qa_file(data_dir / "qa/nq_test.jsonl")
    assert rows[1] == QARow(
        id="nq_test_1",
        question="who wrote he ain't heavy he's my brother lyrics",
        golden_answers=("Bobby Scott", "Bob Russell"),
        data_source="nq_test",
        source=str(data_dir / "qa/nq_test.jsonl"),
        row=2,
    )


def test_rows_keep_their_raw_record_for_extra_fields(data_dir: Path) -> None:
    row = load_qa_file(data_dir / "qa/hotpotqa_distractor_train.jsonl")[0]
    assert row.get("metadata.supporting_titles") == ["Russian Civil War", "Socialist Revolutionary Party"]
    assert row.get("metadata.nothing") is None and row.get("id") == row.id
    assert row == QARow(row.id, row.question, row.golden_answers, row.data_source, row.source, row.row)  # not compared


def test_real_questions_are_stripped(data_dir: Path) -> None:
    rows = {row.id: row for row in load_qa_file(data_dir / "qa/hotpotqa_dev.jsonl")}
    row = rows["hotpotqa_dev_23"]  # stored with a trailing space
    assert row.question.endswith("Badly Drawn Boy or Wolf Alice?")
    assert row.golden_answers == ("Badly Drawn Boy",)


def test_real_agentic_rag_matches_flashrag(data_dir: Path) -> None:
    flash = load_qa_file(data_dir / "qa/nq_test.jsonl")
    for name in ("raw/nq_test.agentic_rag.parquet", "raw/nq_test.agentic_rag.head.jsonl"):
        verl = load_qa_file(data_dir / name)
        assert [(r.question, r.golden_answers) for r in verl] == [
            (r.question, r.golden_answers) for r in flash[: len(verl)]
        ]
    first = load_qa_file(data_dir / "raw/nq_test.agentic_rag.parquet")[0]
    assert first.id == "google-research-datasets/nq_open_test_0"
    assert first.data_source == "google-research-datasets/nq_open"
    assert first.row == 0


def test_real_agentic_rag_answers_with_commas_are_not_split(data_dir: Path) -> None:
    rows = load_qa_file(data_dir / "raw/nq_test.agentic_rag.parquet")
    with_commas = [row for row in rows if any("," in answer for answer in row.golden_answers)]
    assert with_commas, "the real file has answers containing commas"


# ---------------------------------------------------------------------------------------------
# Synthetic layouts


def test_flashrag_string_answer_blank_lines_and_json(tmp_path: Path) -> None:
    rows = [
        {"id": 7, "question": "  q one ", "golden_answers": " a "},
        {"id": "x", "question": "q two", "golden_answers": ["b", " c"]},
    ]
    loaded = load_qa_file(write_jsonl(tmp_path / "mini.jsonl", rows, blank_lines=True))
    assert [(r.id, r.question, r.golden_answers, r.row) for r in loaded] == [
        ("7", "q one", ("a",), 1),
        ("x", "q two", ("b", "c"), 3),
    ]
    assert loaded[0].data_source == "mini"
    (tmp_path / "mini.json").write_text(json.dumps(rows), encoding="utf-8")
    from_json = load_qa_file(tmp_path / "mini.json")
    assert [r.golden_answers for r in from_json] == [("a",), ("b", "c")]
    # a row's own errors number it as its reader did: jsonl by 1-based line, json by 0-based index
    assert str(loaded[1].error("question", "text")).startswith(f"{tmp_path / 'mini.jsonl'}, line 3, field 'question'")
    assert str(from_json[1].error("question", "text")).startswith(f"{tmp_path / 'mini.json'}, row 1, field 'question'")


@pytest.mark.parametrize("with_question_column", [False, True])
def test_search_r1_parquet(tmp_path: Path, with_question_column: bool) -> None:
    rows = [
        search_r1_row("who wrote hamlet", ["Shakespeare", "Will"], 0, with_question_column),
        search_r1_row("capital of france?", ["Paris"], 1, with_question_column),
    ]
    loaded = load_qa_file(write_parquet(tmp_path / "train.parquet", rows))
    expected_q = "who wrote hamlet" if with_question_column else "who wrote hamlet?"
    assert loaded[0] == QARow(
        id="nq_train_0",
        question=expected_q,
        golden_answers=("Shakespeare", "Will"),
        data_source="nq",
        source=str(tmp_path / "train.parquet"),
        row=0,
    )
    assert loaded[1].question == "capital of france?"
    assert policy_prompt(loaded[0].question) == POLICY_HAMLET


# ---------------------------------------------------------------------------------------------
# Malformed files


def check_error(excinfo: pytest.ExceptionInfo[DataError], path: Path, row: str, field: str) -> None:
    message = str(excinfo.value)
    assert str(path) in message and row in message and f"'{field}'" in message, message
    assert "expected" in message


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "golden_answers": ["a"]}\n\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        load_qa_file(path)
    assert str(path) in str(excinfo.value) and "line 3" in str(excinfo.value)
    assert excinfo.value.row == 3


@pytest.mark.parametrize(
    ("second_row", "field"),
    [
        ({"id": "b", "golden_answers": ["a"]}, "question"),
        ({"id": "b", "question": 5, "golden_answers": ["a"]}, "question"),
        ({"id": "b", "question": "q", "golden_answers": []}, "golden_answers"),
        ({"id": "b", "question": "q", "golden_answers": ["a", "  "]}, "golden_answers[1]"),
        ({"id": "b", "question": "q", "golden_answers": [3]}, "golden_answers[0]"),
        ({"id": ["b"], "question": "q", "golden_answers": ["a"]}, "id"),
    ],
)
def test_malformed_flashrag_row(tmp_path: Path, second_row: dict, field: str) -> None:
    good_row = {"id": "a", "question": "q", "golden_answers": ["a"]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good_row, second_row])
    with pytest.raises(DataError) as excinfo:
        load_qa_file(path)
    check_error(excinfo, path, "line 2", field)
    assert (excinfo.value.row, excinfo.value.field) == (2, field)


def test_malformed_parquet_row(tmp_path: Path) -> None:
    rows = [search_r1_row("q one", ["a"], 0, False), search_r1_row("q two", [], 1, False)]
    path = write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(DataError) as excinfo:
        load_qa_file(path)
    check_error(excinfo, path, "row 1", "reward_model.ground_truth.target")


def test_parquet_prompt_without_question_marker(tmp_path: Path) -> None:
    row = search_r1_row("q", ["a"], 0, False)
    row["prompt"] = [{"role": "user", "content": "no marker here"}]
    path = write_parquet(tmp_path / "bad.parquet", [row])
    with pytest.raises(DataError) as excinfo:
        load_qa_file(path)
    check_error(excinfo, path, "row 0", "prompt")


def test_non_object_row_and_empty_and_unsupported_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "list.jsonl", [["q", "a"]])
    with pytest.raises(DataError, match="line 1"):
        load_qa_file(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="at least one QA row"):
        load_qa_file(empty)
    csv = tmp_path / "data.csv"
    csv.write_text("q,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\.parquet"):
        load_qa_file(csv)


# ---------------------------------------------------------------------------------------------
# Several files


def test_mixing_files_and_comma_separated_paths(tmp_path: Path) -> None:
    row = {"id": "1", "question": "q1", "golden_answers": ["a1"]}
    first = write_jsonl(tmp_path / "one.jsonl", [row])
    second = write_parquet(tmp_path / "two.parquet", [search_r1_row("q2", ["a2"], 0, True)])
    from_list = load_qa_files([first, str(second)])
    assert [(r.question, r.data_source, r.source) for r in from_list] == [
        ("q1", "one", str(first)),
        ("q2", "nq", str(second)),
    ]
    assert load_qa_files(f"{first}, {second}") == from_list
    assert load_qa_files(str(first)) == from_list[:1]


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    row = {"id": "1", "question": "q", "golden_answers": ["a"]}
    present = write_jsonl(tmp_path / "one.jsonl", [row])
    with pytest.raises(FileNotFoundError) as excinfo:
        load_qa_files(f"{present},{tmp_path / 'nope.jsonl'},{tmp_path / 'gone.parquet'}")
    assert "nope.jsonl" in str(excinfo.value) and "gone.parquet" in str(excinfo.value)
    with pytest.raises(ValueError, match="no QA data files"):
        load_qa_files(" , ")


# ---------------------------------------------------------------------------------------------
# Prompts


def test_policy_prompt_byte_exact() -> None:
    assert policy_prompt("who wrote hamlet") == POLICY_HAMLET
    assert policy_prompt("  who wrote hamlet?  ") == POLICY_HAMLET
    assert load_template("policy") == POLICY_HAMLET.replace("who wrote hamlet?", "{question}")


def test_policy_prompt_custom_template_and_empty_question() -> None:
    assert policy_prompt("x", template="Q: {question}") == "Q: x?"
    with pytest.raises(ValueError, match="empty"):
        policy_prompt("   ")


def test_load_template_by_path_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("Hi {name}\n", encoding="utf-8")
    assert load_template(str(path)) == "Hi {name}\n"
    assert "policy" in available_templates()
    for missing in ("no_such_template", str(tmp_path / "absent.txt")):
        with pytest.raises(FileNotFoundError, match="policy"):
            load_template(missing)


def test_render_substitutes_once_and_keeps_other_braces() -> None:
    template = 'Doc {n}: {text} {not a field} {"json": 1}'
    out = render(template, n=1, text="{text} and {n} stay")
    assert out == 'Doc 1: {text} and {n} stay {not a field} {"json": 1}'


def test_render_errors() -> None:
    with pytest.raises(ValueError, match=r"missing field\(s\) \['answer'\]"):
        render("{question} {answer}", question="q")
    with pytest.raises(ValueError, match=r"\['extra'\] match no placeholder"):
        render("{question}", question="q", extra="x")


# ---------------------------------------------------------------------------------------------
# Sampler


def test_sampler_is_deterministic_and_covers_each_epoch() -> None:
    a, b = PromptSampler(7, seed=3), PromptSampler(7, seed=3)
    batches = [a.next_batch(7) for _ in range(3)]
    assert batches == [b.next_batch(7) for _ in range(3)]
    assert all(sorted(batch) == list(range(7)) for batch in batches)
    assert batches[0] != batches[1]  # a fresh permutation each epoch
    assert PromptSampler(7, seed=4).next_batch(7) != batches[0]


def test_sampler_batch_spans_epoch_boundary() -> None:
    sampler = PromptSampler(5, seed=0)
    flat = [i for _ in range(4) for i in sampler.next_batch(3)]  # 12 draws: epochs 0, 1 and 2 of 5
    assert sorted(flat[:5]) == sorted(flat[5:10]) == list(range(5))
    assert sampler.state_dict() == {"seed": 0, "epoch": 2, "position": 2, "n_rows": 5}
    big = PromptSampler(3, seed=0).next_batch(7)
    assert sorted(big[:3]) == sorted(big[3:6]) == [0, 1, 2]


def test_sampler_resume_equals_uninterrupted() -> None:
    uninterrupted = PromptSampler(11, seed=9)
    expected = [uninterrupted.next_batch(4) for _ in range(10)]
    first = PromptSampler(11, seed=9)
    got = [first.next_batch(4) for _ in range(4)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = PromptSampler(11, seed=0)
    resumed.load_state_dict(state)
    got += [resumed.next_batch(4) for _ in range(6)]
    assert got == expected


def test_sampler_rejects_bad_arguments_and_state() -> None:
    with pytest.raises(ValueError, match="n_rows"):
        PromptSampler(0, seed=1)
    sampler = PromptSampler(5, seed=1)
    with pytest.raises(ValueError, match="k must be"):
        sampler.next_batch(0)
    with pytest.raises(ValueError, match="saved for 6 rows"):
        sampler.load_state_dict({"seed": 1, "epoch": 0, "position": 0, "n_rows": 6})
    with pytest.raises(ValueError, match="lacks"):
        sampler.load_state_dict({"seed": 1})
