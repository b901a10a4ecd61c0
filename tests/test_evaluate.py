"""Evaluation: scoring on hard cases, the agent and baselines end to end, determinism, resume, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import COLOR_TASK
from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.data import DataError, load_qa_file
from zerosearch.evaluate import (
    RESULTS_JSON, RESULTS_MD, DataSelection, EvalSettings, EvalSpec, SamplingSettings, average_over_datasets, evaluate,
    format_results_table, read_examples, score_response, select_rows, summarize,
)

# (generated text, golds, prediction, em, cover_em, f1), each worked out by hand
HARD_CASES = [
    ("<think> x </think> <answer> The Eiffel Tower </answer>", ["Eiffel Tower"], "The Eiffel Tower", 1, 1, 1),
    ("<answer>U.S.A.</answer>", ["USA"], "U.S.A.", 1, 1, 1),  # punctuation is dropped, not spaced
    ("<answer> Beyoncé </answer>", ["Beyonce"], "Beyoncé", 0, 0, 0),  # accents are kept
    ("<answer> Beyoncé </answer>", ["BEYONCÉ"], "Beyoncé", 1, 1, 1),
    ("<answer> 1,000 </answer>", ["1000"], "1,000", 1, 1, 1),
    ("<answer> 3.5 </answer>", ["35"], "3.5", 1, 1, 1),  # the reference normalisation's known quirk
    ("<answer> 1999 </answer>", ["1998"], "1999", 0, 0, 0),
    ("<answer>Tulsa Oklahoma</answer>", ["Tulsa", "Tulsa, Oklahoma"], "Tulsa Oklahoma", 1, 1, 1),  # 2nd alias
    ("<answer> New York City </answer>", ["New York", "NYC"], "New York City", 0, 1, 0.8),
    ("<answer> martial arts </answer>", ["art"], "martial arts", 0, 1, 0),  # cover-EM is a substring test
    ("<answer> yes it is </answer>", ["yes"], "yes it is", 0, 1, 0),  # HotpotQA yes/no rule for F1
    ("<answer> the </answer>", ["the"], "the", 0, 0, 0),  # normalises to nothing: never a match
    ("<answer> </answer>", ["Paris"], "", 0, 0, 0),  # empty answer
    ("I think it is Paris.", ["Paris"], None, 0, 0, 0),  # no answer block: wrong, no fallback
    ("<answer> Paris", ["Paris"], None, 0, 0, 0),  # unclosed
    ("<answer> Lyon </answer> wait <answer> Paris </answer>", ["Paris"], "Paris", 1, 1, 1),  # the last counts
    (None, ["Paris"], None, 0, 0, 0),  # no answer turn at all
]


@pytest.mark.parametrize("text, golds, prediction, em, cover, f1", HARD_CASES)
def test_scoring_hard_cases(text, golds, prediction, em, cover, f1):
    got_prediction, scores = score_response(text, golds)
    assert got_prediction == prediction
    assert scores == pytest.approx({"em": em, "cover_em": cover, "f1": f1})


def record(em: float, status: str = "answered", **extra) -> dict:
    return {"em": em, "cover_em": em, "f1": em, "status": status, "n_searches": 1, "n_turns": 2, "n_invalid": 0,
            "response_tokens": 10, "seconds": 0.5, "search_failures": 0, **extra}


def test_summary_and_macro_average_table():
    a = summarize([record(1.0), record(0.0), record(0.0, "search_failed", search_failures=1, n_searches=0)])
    b = summarize([record(1.0)])
    assert a["em"] == pytest.approx(1 / 3) and a["search_failures"] == 1 and a["answered_rate"] == pytest.approx(2 / 3)
    assert a["statuses"] == {"answered": 2, "search_failed": 1}
    results = {"model": "m", "method": "agent", "engine": "example", "datasets": {"nq": a, "hotpotqa": b}}
    results["average"] = average_over_datasets(results["datasets"])
    assert results["average"]["em"] == pytest.approx((1 / 3 + 1) / 2)  # mean over datasets, as the paper
    assert results["average"]["n"] == 4 and results["average"]["search_failures"] == 1
    table = format_results_table(results)
    assert "| metric | nq | hotpotqa | average |" in table
    assert "| EM (exact match, %) | 33.33 | 100.00 | 66.67 |" in table
    assert "| search failures | 1 | 0 | 1 |" in table


def test_select_rows_sample_is_seeded_keeps_file_order_and_limit_takes_the_first(tmp_path):
    rows = load_qa_file(qa_file(tmp_path, n=10))
    first = select_rows(rows, sample=4, seed=1)
    assert first == select_rows(rows, sample=4, seed=1) and len(first) == 4
    assert [r.row for r in first] == sorted(r.row for r in first)
    assert select_rows(rows, sample=4, seed=1) != select_rows(rows, sample=4, seed=2)
    assert select_rows(rows, sample=50) == rows
    assert select_rows(rows, limit=3) == rows[:3]
    assert select_rows(rows, sample=4, seed=1, limit=2) == first[:2]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        select_rows(rows, limit=0)


# ---------------------------------------------------------------------------------------------
# end to end with the tiny searching model


def qa_file(tmp_path: Path, n: int = 6, name: str = "colours") -> Path:
    """n colour questions (the searcher model's task), cycling through the four."""
    items = list(COLOR_TASK.items())
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": items[i % 4][0],
                                        "golden_answers": [items[i % 4][1]]}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def short_template(tmp_path) -> str:
    path = tmp_path / "short.txt"
    path.write_text(SHORT_TEMPLATE, encoding="utf-8")
    return str(path)


def spec_of(data, engine_spec=None, **options) -> EvalSpec:
    """The EvalSpec of flat options, each given to the dataclass whose field it is (``seed`` to the selection and
    to the sampled answers, as ``zerosearch eval --seed`` does)."""
    parts = {}
    for cls in (DataSelection, EvalSettings, SamplingSettings):
        names = {f.name for f in dataclasses.fields(cls)}
        parts[cls] = {k: v for k, v in options.items() if k in names}
    rest = {k: v for k, v in options.items() if not any(k in part for part in parts.values())}
    return EvalSpec(data=DataSelection([str(d) for d in data], **parts[DataSelection]),
                    settings=EvalSettings(**parts[EvalSettings]), engine=engine_spec,
                    sampling=SamplingSettings(**parts[SamplingSettings]), **rest)


def run(model, data, out, engine=None, method="agent", template=None, **kwargs):
    options = dict(max_turn_tokens=16, batch_size=4, device="cpu", method=method, prompt_template=template)
    options.update(kwargs)
    return evaluate(str(model), spec_of(data, **options), out, engine=engine, progress=False)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_agent_writes_results_and_full_trajectories(searcher_model, short_template, tmp_path):
    engine = FixedDocumentsEngine(["the colour is blue", "the colour is green"])
    out = tmp_path / "agent"
    results = run(searcher_model, [qa_file(tmp_path, 4), qa_file(tmp_path, 2, "more")], out, engine,
                  template=short_template, topk=1)
    assert set(results["datasets"]) == {"colours", "more"}
    expected = {"n", "em", "cover_em", "f1", "answered_rate", "searches_per_question", "turns_per_question",
                "invalid_action_rate", "response_tokens", "seconds_per_question", "search_failures", "statuses"}
    assert expected <= set(results["datasets"]["colours"]) and expected - {"statuses"} <= set(results["average"])
    assert results["engine"] == "fixed" and results["search_failures"] == 0
    assert results["datasets"]["colours"]["searches_per_question"] >= 1  # the model searches before answering
    assert json.loads((out / RESULTS_JSON).read_text())["datasets"]["more"]["n"] == 2
    assert "| metric | colours | more | average |" in (out / RESULTS_MD).read_text()
    examples = lines(out / "examples" / "colours.jsonl")
    assert [e["id"] for e in examples] == ["q0", "q1", "q2", "q3"]
    first = examples[0]
    assert first["question"] == "what colour is the sky" and first["golden_answers"] == ["blue"]
    search = first["turns"][0]
    assert search["action"] == "search" and search["query"] == "what colour is the sky"
    assert search["documents"] == ["the colour is blue"]  # topk=1
    assert first["status"] == "answered" and first["prediction"] is not None
    assert first["em"] == (first["prediction"] == "blue")
    assert {r.question for r in engine.requests} == set(COLOR_TASK)
    assert all(r.golden_answers == () for r in engine.requests)  # the engine is never told the answer
    # a real engine has no curriculum: nothing was drawn, so no turn claims "noisy": false
    assert [t["noisy"] for e in examples for t in e["turns"] if t["action"] == "search"]
    assert all(t["noisy"] is None for e in examples for t in e["turns"])
    assert not any(r.noisy for r in engine.requests)


def test_rag_and_direct_baselines(searcher_model, tmp_path):
    engine = FixedDocumentsEngine(["the colour is blue", "grass is green", "bananas are yellow"])
    rag = run(searcher_model, [qa_file(tmp_path, 3)], tmp_path / "rag", engine, method="rag", topk=2)
    assert [r.query for r in engine.requests] == [q for q in list(COLOR_TASK)[:3]]  # one retrieval each
    examples = lines(tmp_path / "rag" / "examples" / "colours.jsonl")
    retrieval = examples[0]["turns"][0]
    assert retrieval["action"] == "retrieve" and retrieval["documents"] == ["the colour is blue", "grass is green"]
    assert all(e["n_searches"] == 1 and e["n_turns"] == 1 and e["method"] == "rag" for e in examples)
    assert rag["datasets"]["colours"]["searches_per_question"] == 1

    direct = run(searcher_model, [qa_file(tmp_path, 3)], tmp_path / "direct", method="direct")
    assert direct["engine"] is None and direct["datasets"]["colours"]["n"] == 3
    examples = lines(tmp_path / "direct" / "examples" / "colours.jsonl")
    assert all(e["n_searches"] == 0 and e["n_turns"] == 1 for e in examples)
    assert all(e["status"] in ("answered", "no_answer", "context_exhausted") for e in examples)


def test_two_runs_give_the_same_records(searcher_model, short_template, tmp_path):
    data = [qa_file(tmp_path)]
    for name in ("a", "b"):
        run(searcher_model, data, tmp_path / name, FixedDocumentsEngine(["the colour is red"]), template=short_template)
    a = lines(tmp_path / "a" / "examples" / "colours.jsonl")
    b = lines(tmp_path / "b" / "examples" / "colours.jsonl")
    assert without_time(a) == without_time(b)
    ra, rb = (json.loads((tmp_path / n / RESULTS_JSON).read_text()) for n in ("a", "b"))
    assert {k: v for k, v in ra["datasets"]["colours"].items() if k != "seconds_per_question"} == \
        {k: v for k, v in rb["datasets"]["colours"].items() if k != "seconds_per_question"}


def test_resume_runs_only_the_missing_examples_and_tolerates_a_torn_line(searcher_model, short_template, tmp_path):
    data = [qa_file(tmp_path, 6)]
    out = tmp_path / "resumed"
    docs = ["the colour is green"]
    first = FixedDocumentsEngine(docs)
    # batches of one: no padding, so the resumed and the uninterrupted run must agree exactly
    partial = run(searcher_model, data, out, first, template=short_template, limit=3, batch_size=1)
    assert partial["datasets"]["colours"]["n"] == 3
    file = out / "examples" / "colours.jsonl"
    kept = lines(file)
    with file.open("a", encoding="utf-8") as handle:  # a kill in the middle of writing q3
        handle.write('{"id": "q3", "dataset": "colours", "question": "what col')
    second = FixedDocumentsEngine(docs)
    full = run(searcher_model, data, out, second, template=short_template, batch_size=1)
    asked = {r.question for r in second.requests}
    assert asked == {"what colour is a banana", "what colour is the sky", "what colour is grass"}  # q3, q4, q5
    records = lines(file)  # the torn line is gone, one record per id, in file order
    assert [r["id"] for r in records] == [f"q{i}" for i in range(6)]
    assert records[:3] == kept  # reused as they were
    assert full["datasets"]["colours"]["n"] == 6
    uninterrupted = tmp_path / "whole"
    run(searcher_model, data, uninterrupted, FixedDocumentsEngine(docs), template=short_template, batch_size=1)
    assert without_time(lines(uninterrupted / "examples" / "colours.jsonl")) == without_time(records)


def test_failed_search_is_counted_scored_zero_and_rerun_on_resume(searcher_model, short_template, tmp_path):
    data = [qa_file(tmp_path, 4)]
    out = tmp_path / "failing"
    broken = FixedDocumentsEngine(["the colour is blue"], fail_queries=["what colour is the sky"])
    results = run(searcher_model, data, out, broken, template=short_template)
    assert results["search_failures"] == 1 and results["datasets"]["colours"]["statuses"]["search_failed"] == 1
    failed = read_examples(out / "examples" / "colours.jsonl")["q0"]
    assert failed["status"] == "search_failed" and failed["prediction"] is None
    assert failed["em"] == failed["f1"] == failed["cover_em"] == 0
    assert failed["turns"][-1]["error"] == "connection refused (test)"
    assert "| search failures | 1 | 1 |" in (out / RESULTS_MD).read_text()

    fixed = FixedDocumentsEngine(["the colour is blue"])
    again = run(searcher_model, data, out, fixed, template=short_template)
    assert {r.question for r in fixed.requests} == {"what colour is the sky"}
    assert again["search_failures"] == 0 and read_examples(out / "examples" / "colours.jsonl")["q0"]["status"] != \
        "search_failed"


def test_resuming_with_other_settings_is_refused(searcher_model, short_template, tmp_path):
    data = [qa_file(tmp_path, 1)]
    out = tmp_path / "x"
    run(searcher_model, data, out, FixedDocumentsEngine(["d"]), template=short_template)
    with pytest.raises(ValueError, match="different .*method"):
        run(searcher_model, data, out, method="direct")
    with pytest.raises(ValueError, match=r"different settings.max_turns \(settings.max_turns: 4 there, 1 now\)"):
        run(searcher_model, data, out, FixedDocumentsEngine(["d"]), template=short_template, max_turns=1)


def test_an_evaluation_that_failed_before_its_first_answer_does_not_block_its_directory(
        searcher_model, short_template, tmp_path):
    data = [qa_file(tmp_path, 2)]
    out = tmp_path / "typo"
    with pytest.raises(ValueError, match="nosuch"):  # a wrong engine spec fails after the directory is made
        evaluate(str(searcher_model), spec_of(data, "nosuch", device="cpu"), out, progress=False)
    assert (out / "eval_config.json").exists()
    fixed = run(searcher_model, data, out, FixedDocumentsEngine(["d"]), template=short_template)  # not refused
    assert fixed["datasets"]["colours"]["n"] == 2 and fixed["engine"] == "fixed"
    # once it holds answers, other settings are refused as before
    with pytest.raises(ValueError, match="different engine"):
        evaluate(str(searcher_model), spec_of(data, "nosuch", device="cpu", prompt_template=short_template), out,
                 progress=False)


def test_kv_reuse_gives_the_same_answers_and_is_recorded_only_where_the_cache_is_carried(
        searcher_model, short_template, tmp_path, monkeypatch):
    from zerosearch import turn_cache

    continued = []  # the turns that ran from the turn before's cache
    real_continue = turn_cache.TurnCache.continue_rows

    def counting_continue(self, *args, **kwargs):
        out = real_continue(self, *args, **kwargs)
        continued.extend([out] if out is not None else [])
        return out

    monkeypatch.setattr(turn_cache.TurnCache, "continue_rows", counting_continue)
    data = [qa_file(tmp_path, 4)]
    docs = ["the colour is blue"]

    def config(out: Path) -> dict:
        return json.loads((out / "eval_config.json").read_text())["settings"]

    run(searcher_model, data, tmp_path / "carried", FixedDocumentsEngine(docs), template=short_template)
    assert continued, "the default evaluation (kv_cache=dynamic) continues later turns from the cache"
    continued.clear()
    run(searcher_model, data, tmp_path / "encoded", FixedDocumentsEngine(docs), template=short_template,
        kv_reuse=False)
    assert not continued, "kv_reuse=False re-encodes every turn"
    carried, encoded = (lines(tmp_path / n / "examples" / "colours.jsonl") for n in ("carried", "encoded"))
    assert any(r["n_turns"] > 1 for r in carried)  # later turns exist, so the cache was used
    assert without_time(carried) == without_time(encoded)  # fp32: the same tokens
    assert config(tmp_path / "carried")["kv_reuse"] is True
    assert "kv_reuse" not in config(tmp_path / "encoded")  # as an evaluation written before kv_reuse existed
    run(searcher_model, data, tmp_path / "static", FixedDocumentsEngine(docs), template=short_template,
        kv_cache="static")
    assert "kv_reuse" not in config(tmp_path / "static")  # a static cache is never carried
    # an evaluation that re-encoded resumes only with re-encoding
    with pytest.raises(ValueError, match=r"settings.kv_reuse: not recorded \(every turn re-encoded\) there, True "
                                         r"now.*--no-kv-reuse .* resumes it"):
        run(searcher_model, data, tmp_path / "encoded", FixedDocumentsEngine(docs), template=short_template)
    # and one that carried it says how to resume it
    with pytest.raises(ValueError, match=r"settings.kv_reuse: True there, not recorded .* now.*"
                                         r"--kv-cache dynamic without --no-kv-reuse resumes it"):
        run(searcher_model, data, tmp_path / "carried", FixedDocumentsEngine(docs), template=short_template,
            kv_cache="static")


def test_bad_arguments_say_what_to_fix(searcher_model, tmp_path):
    data = [qa_file(tmp_path, 1)]
    with pytest.raises(ValueError, match="needs a search engine"):
        run(searcher_model, data, tmp_path / "a", method="rag")
    with pytest.raises(ValueError, match="method='magic' is not one of agent, direct, cot, rag"):
        run(searcher_model, data, tmp_path / "b", method="magic")
    with pytest.raises(ValueError, match="one name per file"):
        run(searcher_model, data, tmp_path / "c", method="direct", names=["a", "b"])
    with pytest.raises(ValueError, match="repeat"):
        run(searcher_model, data + data, tmp_path / "d", method="direct")
    simulated = FixedDocumentsEngine(["d"])
    simulated.name = "simulated"
    with pytest.raises(ValueError, match="must not reveal; evaluate with a real engine"):
        run(searcher_model, data, tmp_path / "e", simulated, method="rag")


# --- benchmark tables by source (issue 15 item 3) ---------------------------------------------------------


def mixed_parquet(tmp_path: Path, counts: dict[str, int]) -> Path:
    """A published-style test parquet: several datasets in one file, told apart by ``data_source``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = list(COLOR_TASK.items())
    rows, i = [], 0
    for source, n in counts.items():
        for _ in range(n):
            question, answer = items[i % 4]
            rows.append({"data_source": source, "question": question,
                         "prompt": [{"role": "user", "content": question}], "ability": "fact-reasoning",
                         "reward_model": {"style": "rule", "ground_truth": {"target": [answer]}},
                         "extra_info": {"split": "test", "index": i}})
            i += 1
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_paper_source_names():
    from zerosearch.evaluate import paper_source_name

    for raw, name in [("nq", "nq"), ("natural_questions", "nq"), ("TriviaQA", "triviaqa"), ("popqa", "popqa"),
                      ("hotpot_qa", "hotpotqa"), ("2wikimultihopqa", "2wikimultihopqa"), ("2wiki", "2wikimultihopqa"),
                      ("musique", "musique"), ("Bamboogle", "bamboogle"), ("my_set", "my_set")]:
        assert paper_source_name(raw) == name


def test_a_file_of_several_sources_is_one_dataset_per_source(tmp_path):
    from zerosearch.evaluate import split_datasets

    mixed = mixed_parquet(tmp_path, {"natural_questions": 3, "triviaqa": 2, "bamboogle": 1})
    plain = qa_file(tmp_path, 2)
    split = split_datasets([str(mixed), str(plain)])
    assert [(name, len(rows)) for name, _, rows in split] == [("nq", 3), ("triviaqa", 2), ("bamboogle", 1),
                                                              ("colours", 2)]
    assert [name for name, _, _ in split_datasets([str(mixed)], group_by=None)] == ["test"]
    assert [name for name, _, _ in split_datasets([str(plain)], names=["C"])] == ["C"]
    typed = tmp_path / "typed.jsonl"
    typed.write_text("".join(json.dumps({"id": str(i), "question": "q", "golden_answers": ["a"],
                                         "metadata": {"type": t}}) + "\n"
                             for i, t in enumerate(["bridge", "comparison", "bridge"])))
    by_type = split_datasets([str(typed)], group_by="metadata.type")
    assert [(name, len(rows)) for name, _, rows in by_type] == [("bridge", 2), ("comparison", 1)]
    with pytest.raises(DataError, match="metadata.kind"):  # names the file, the row and the field
        split_datasets([str(plain)], group_by="metadata.kind")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="repeat"):
        split_datasets([str(mixed), str(mixed_parquet(other, {"nq": 1}))])


def test_eval_reports_a_row_per_source_averaged_over_sources(searcher_model, tmp_path):
    mixed = mixed_parquet(tmp_path, {"nq": 4, "popqa": 2})
    results = run(searcher_model, [mixed], tmp_path / "direct", method="direct", sample=3, seed=1)
    assert list(results["datasets"]) == ["nq", "popqa"]
    assert [results["datasets"][s]["n"] for s in ("nq", "popqa")] == [3, 2]  # --sample is per source
    em = [results["datasets"][s]["em"] for s in ("nq", "popqa")]
    assert results["average"]["em"] == pytest.approx(sum(em) / 2)  # over sources, not over questions
    assert "| metric | nq | popqa | average |" in (tmp_path / "direct" / RESULTS_MD).read_text()
    assert (tmp_path / "direct" / "examples" / "popqa.jsonl").exists()


def test_eval_shows_documents_in_the_format_the_model_was_trained_with(searcher_model, short_template, tmp_path):
    import shutil

    from zerosearch.policy_info import write_policy_info
    from zerosearch.search.documents import information_block
    from zerosearch.search.base import Document

    model = tmp_path / "policy"
    shutil.copytree(searcher_model, model)
    write_policy_info(model, doc_format="search_r1")  # as a run trained with doc_format=search_r1 saves it
    engine = FixedDocumentsEngine(["the colour is blue"], titles=["Sky"])
    titled = information_block([Document("the colour is blue", title="Sky")], "search_r1")
    assert 'Doc 1(Title: "Sky") the colour is blue' in titled

    recorded = run(model, [qa_file(tmp_path, 1)], tmp_path / "recorded", engine, template=short_template, topk=1)
    assert recorded["settings"]["doc_format"] == "search_r1"
    example = lines(tmp_path / "recorded" / "examples" / "colours.jsonl")[0]
    assert titled in example["response"]

    told = run(model, [qa_file(tmp_path, 1)], tmp_path / "told", engine, template=short_template, topk=1,
               doc_format="zerosearch")  # told otherwise: the flag wins
    assert told["settings"]["doc_format"] == "zerosearch"
    assert information_block([Document("the colour is blue", title="Sky")]) in (
        lines(tmp_path / "told" / "examples" / "colours.jsonl")[0]["response"])
    plain = run(searcher_model, [qa_file(tmp_path, 1)], tmp_path / "plain", engine, template=short_template, topk=1)
    assert plain["settings"]["doc_format"] == "zerosearch"  # nothing recorded: the default


def test_a_bad_recorded_doc_format_names_the_file(searcher_model, tmp_path):
    import shutil

    from zerosearch.policy_info import POLICY_INFO_FILE, resolve_doc_format

    model = tmp_path / "policy"
    shutil.copytree(searcher_model, model)
    (model / POLICY_INFO_FILE).write_text('{"doc_format": "markdown"}')
    with pytest.raises(ValueError, match=r"zerosearch\.json: field 'doc_format': unknown doc_format 'markdown'"):
        resolve_doc_format(None, model)
    (model / POLICY_INFO_FILE).write_text("[1]")
    with pytest.raises(ValueError, match=r"zerosearch\.json: expected a JSON object"):
        resolve_doc_format(None, model)
    assert resolve_doc_format("search_r1", model) == "search_r1"  # an explicit choice needs no file
    assert resolve_doc_format(None, "zerosearch:tiny") == "zerosearch"  # a built-in name records nothing
