"""Simulator tuning: labelling rules, dataset building, the SFT loss mask, and all four stages end to end.

The end-to-end test runs collect (a tiny searching policy against fixed documents, and question-mode
collection against BM25 over 200 real HotpotQA paragraphs), build, a few SFT steps of the tiny model, and
evaluate, then loads the trained directory in the simulated engine.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from conftest import COLOR_TASK
from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.config import RolloutSettings
from zerosearch.data import DataError
from zerosearch.search.base import Document, SearchRequest
from zerosearch.simulator_tuning import (
    NOISY,
    USEFUL,
    SearchCall,
    balance,
    build,
    collect,
    contains_answer,
    dedupe,
    done_row_ids,
    evaluate,
    label_call,
    parse_simulator_spec,
    simulator_messages,
    snippet,
    split_by_question,
    train,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HOTPOT_CORPUS = DATA / "corpus" / "hotpotqa_distractor_paragraphs.jsonl"
HOTPOT_TRAIN = DATA / "qa" / "hotpotqa_distractor_train.jsonl"


def call(question: str = "what colour is the sky", answer: str = "blue", docs: tuple[str, ...] = ("the sky is blue",),
         correct: bool | None = True, query: str = "sky colour", row_id: str = "r1") -> SearchCall:
    return SearchCall(row_id=row_id, question=question, golden_answers=(answer,), query=query,
                      documents=tuple(Document(text=d, title="") for d in docs),
                      query_source="question" if correct is None else "policy", correct=correct)


# --- labelling rules -------------------------------------------------------------------------------


def test_policy_calls_are_labelled_by_outcome_and_containment():
    assert label_call(call(correct=True, docs=("the sky is blue",))) == USEFUL
    assert label_call(call(correct=False, docs=("grass is green",))) == NOISY
    assert label_call(call(correct=True, docs=("grass is green",))) is None  # right without the documents
    assert label_call(call(correct=False, docs=("the sky is blue",))) is None  # wrong despite them


def test_question_calls_are_labelled_by_containment_alone():
    assert label_call(call(correct=None, docs=("the sky is blue",))) == USEFUL
    assert label_call(call(correct=None, docs=("grass is green",))) == NOISY


def test_containment_is_normalised_whole_words_over_titles_and_texts():
    assert contains_answer([Document("Its tower is in Paris.", title="The Eiffel Tower")], ["the eiffel tower!"])
    assert contains_answer([Document("Built in 1889, in PARIS!")], ["Paris"])
    assert not contains_answer([Document("She studied martial arts.")], ["art"])
    assert contains_answer([Document("nothing here")], ["yes"]) is None  # yes/no cannot be judged
    assert label_call(call(answer="no", docs=("no, it is not",))) is None


def test_snippet_cuts_to_a_sentence_end_in_the_second_half():
    text = "One two three. Four five six seven eight. Nine ten eleven twelve"
    assert snippet(text, 10) == "One two three. Four five six seven eight."
    assert snippet("a b c d e f", 4) == "a b c d"  # no sentence end: a hard cut
    assert snippet("short  text\nhere", 40) == "short text here"
    assert snippet(text, 0) == text


def test_snippet_keeps_the_answer_a_long_document_holds():
    text = "Alpha beta gamma. Delta epsilon zeta eta. Theta iota kappa Tulsa lambda mu. Nu xi omicron pi rho"
    assert snippet(text, 8, ["Tulsa"]) == "Theta iota kappa Tulsa lambda mu."  # from the sentence holding it
    assert snippet(text, 3, ["tulsa"]) == "iota kappa Tulsa"  # no sentence start fits: a word start
    assert snippet(text, 12, ["Delta"]) == "Alpha beta gamma. Delta epsilon zeta eta."  # in the first window
    assert snippet(text, 8, ["Paris"]) == snippet(text, 8)  # not in the text: the leading snippet
    long = " ".join(["w"] * 50) + " end."
    assert snippet(long, 40, ["yes"]) == " ".join(["w"] * 40)  # yes/no answers are not looked for


def test_format_stats_hand_worked():
    from zerosearch.search.base import SearchResult
    from zerosearch.simulator_tuning import format_stats

    w = lambda n, word="w": " ".join([word] * n)  # noqa: E731
    results = [
        SearchResult([Document(w(20)), Document(w(30, "x")), Document(w(15, "y"))]),  # valid, distinct
        SearchResult([Document(w(20)), Document(w(20) + ".")]),  # 2 docs, the same text after normalising
        SearchResult([Document(w(10)), Document(w(61, "x")), Document(w(40, "y"))]),  # 10 and 61 out of range
        SearchResult(error="timeout"),
    ]
    stats = format_stats(results, topk=3, word_range=(15, 60))
    assert stats["parsed"] == 0.75 and stats["exact_topk"] == 0.5 and stats["valid"] == 0.25
    assert stats["words_per_doc"] == (20 + 30 + 15 + 20 + 20 + 10 + 61 + 40) / 8
    assert stats["docs_in_range"] == 6 / 8
    assert stats["no_repeats"] == 2 / 3  # over the 3 parsed sets


def test_containment_meter_counts_only_format_valid_sets():
    """Issue 15.4: one sentence restating the question and answer is not a useful set of documents."""
    from zerosearch.search.base import SearchResult
    from zerosearch.simulator_tuning import containment
    from zerosearch.simulator_tuning.evaluate import EvalItem, results_table

    w = lambda n, word="w": " ".join([word] * n)  # noqa: E731
    items = [EvalItem("what colour is the sky", ("blue",), "sky")] * 4 + [EvalItem("is it?", ("yes",), "q")]
    results = [
        SearchResult([Document(w(20) + " blue"), Document(w(20, "x")), Document(w(20, "y"))]),  # valid, has it
        SearchResult([Document("The sky is blue.")]),  # a restatement: has it, not a valid set
        SearchResult([Document(w(20)), Document(w(20, "x")), Document(w(20, "y"))]),  # valid, clean
        SearchResult(error="timeout"),
        SearchResult([Document(w(20) + " yes")] * 3),  # yes/no: not judged
    ]
    meter = containment(items, results, topk=3, word_range=(15, 60))
    assert meter["judged"] == 4
    assert meter["contains_share"] == 2 / 4  # raw: the restatement counts
    assert meter["valid_contains_share"] == 1 / 4  # headline: it does not
    assert meter["contains_among_valid"] == 1 / 2
    assert meter["valid_clean_share"] == 1 / 4 and meter["parsed_clean_share"] == 1 / 4
    row = {"name": "sim", "useful": {**meter, "parsed": 0.75, "exact_topk": 0.5, "words_per_doc": 20.0,
                                     "docs_in_range": 1.0, "valid": 0.5, "no_repeats": 1.0, "reader": {}},
           "noisy": meter}
    table = results_table({"items": 5, "topk": 3, "word_range": [15, 60], "reader": "r", "engines": [row]})
    assert "| useful: valid, has answer | has answer (raw) | has answer among valid |" in table
    assert "| sim | 25.0 | 50.0 | 50.0 | 25.0 | 25.0 |" in table


# --- dedupe, balance, split --------------------------------------------------------------------------


def test_dedupe_by_normalised_query_and_documents():
    items = [
        (call(query="Sky colour?", docs=("The sky is blue.",)), USEFUL),
        (call(query="sky colour", docs=("the sky is blue",), row_id="r2"), USEFUL),  # same after normalising
        (call(query="sky colour", docs=("the sky is azure",)), USEFUL),
        (call(query="sky hue", docs=("the sky is blue",)), USEFUL),
    ]
    kept = dedupe(items)
    assert [c.row_id for c, _ in kept] == ["r1", "r1", "r1"]
    assert len(kept) == 3 and items[1] not in kept


def test_balance_downsamples_the_larger_class():
    items = [(call(row_id=f"u{i}"), USEFUL) for i in range(5)] + [(call(row_id=f"n{i}"), NOISY) for i in range(2)]
    kept = balance(items, random.Random(0))
    assert sorted(label for _, label in kept) == [NOISY, NOISY, USEFUL, USEFUL]
    capped = balance(items * 2, random.Random(0), max_examples=2)
    assert sorted(label for _, label in capped) == [NOISY, USEFUL]


def test_balance_upsample_keeps_every_call_and_repeats_the_smaller_class_evenly():
    useful = [(call(row_id=f"u{i}"), USEFUL) for i in range(5)]
    noisy = [(call(row_id=f"n{i}"), NOISY) for i in range(2)]
    kept = balance(useful + noisy, random.Random(0), how="upsample")
    counts = Counter(c.row_id for c, _ in kept)
    assert {r: counts[r] for r in ("u0", "u1", "u2", "u3", "u4")} == dict.fromkeys(("u0", "u1", "u2", "u3", "u4"), 1)
    # 5 noisy slots from 2 calls: each twice, then one drawn once more
    assert sorted(counts[r] for r in ("n0", "n1")) == [2, 3] and len(kept) == 10
    capped = balance(useful + noisy, random.Random(0), max_examples=6, how="upsample")
    assert Counter(label for _, label in capped) == {USEFUL: 3, NOISY: 3}
    assert balance(useful, random.Random(0), how="upsample") == []  # nothing to repeat: no noisy calls
    with pytest.raises(ValueError, match="downsample"):
        balance(useful, random.Random(0), how="oversample")


def test_split_keeps_each_question_on_one_side():
    items = [(call(question=f"question {q}?", row_id=f"{q}-{k}"), USEFUL if k else NOISY)
             for q in range(10) for k in range(3)]
    items.append((call(question="Question 3", row_id="3-again"), USEFUL))  # the same question, normalised
    train_part, val_part = split_by_question(items, 0.2, random.Random(0))
    train_q = {c.question.lower().rstrip("?") for c, _ in train_part}
    val_q = {c.question.lower().rstrip("?") for c, _ in val_part}
    assert not train_q & val_q
    assert len(val_q) == 2 and len(train_part) + len(val_part) == len(items)
    assert {label for _, label in val_part} == {USEFUL, NOISY}  # stratified: both classes on both sides


# --- the dataset ---------------------------------------------------------------------------------------

EXPECTED_USER = (
    "You are the Google search engine.\n"
    "Given a query, you need to generate five noisy documents for the query.\n"
    "\n"
    "The user is trying to answer the question: \"Who wrote Hamlet?\" whose answer is William Shakespeare.\n"
    "Each document should contain about 30 words, and these documents should contain noisy information.\n"
    "\n"
    "Query: hamlet author\n"
    "Noisy Output:\n"
)


def test_training_prompt_is_the_published_finetuned_prompt_byte_for_byte():
    c = SearchCall("r", "Who wrote Hamlet?", ("William Shakespeare", "Shakespeare"), "hamlet author",
                   (Document("A play.", title="Hamlet"), Document("An untitled text.")), "policy", False)
    messages = simulator_messages(c, NOISY)
    assert messages == [
        {"role": "system", "content": ""},
        {"role": "user", "content": EXPECTED_USER},
        # the target as the original simulators write documents, "Doc i: text"
        {"role": "assistant", "content": "Doc 1: A play.\nDoc 2: An untitled text."},
    ]
    useful = simulator_messages(c, USEFUL)[1]["content"]
    assert useful == EXPECTED_USER.replace("noisy", "useful").replace("Noisy", "Useful")


def _record(row_id: str, question: str, answer: str, correct: bool | None, *searches: tuple[str, list[str]]) -> dict:
    return {"row_id": row_id, "question": question, "golden_answers": [answer],
            "query_source": "question" if correct is None else "policy", "status": "answered",
            "prediction": answer if correct else "x",
            "scores": None if correct is None else {"em": float(correct), "f1": float(correct),
                                                    "cover_em": float(correct)},
            "correct": correct,
            "searches": [{"turn": i, "query": q, "documents": [{"title": "", "text": t} for t in docs]}
                         for i, (q, docs) in enumerate(searches)]}


def test_build_labels_drops_dedupes_splits_and_writes_chat_data(tmp_path):
    records = [
        _record("1", "What colour is the sky?", "blue", True, ("sky", ["the sky is blue"]), ("sky", ["the sky is blue"])),
        _record("2", "What colour is grass?", "green", False, ("grass", ["grass is red"])),
        _record("3", "What colour is snow?", "white", True, ("snow", ["snow is cold"])),  # ambiguous
        _record("4", "Is snow cold?", "yes", None, ("snow cold", ["snow is cold"])),  # undecidable
        _record("5", "What colour is coal?", "black", None, ("coal", ["coal is black"])),
        _record("6", "What colour is chalk?", "white", None, ("chalk", ["chalk is soft"])),
    ]
    collected = tmp_path / "collected.jsonl"
    collected.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"row_id": "7", "quest', encoding="utf-8")
    stats = build(collected, tmp_path / "ds", seed=0, val_fraction=0.3)
    assert (stats.collected_rows, stats.search_calls, stats.useful, stats.noisy) == (6, 7, 3, 2)
    assert (stats.ambiguous_dropped, stats.undecidable_dropped, stats.duplicates_dropped) == (1, 1, 1)
    assert stats.train + stats.val + stats.balance_dropped == 4
    assert stats.train_useful * 2 == stats.train and stats.val_useful * 2 == stats.val
    train_rows = [json.loads(line) for line in (tmp_path / "ds" / "train.jsonl").read_text().splitlines()]
    calls = [json.loads(line) for line in (tmp_path / "ds" / "train_calls.jsonl").read_text().splitlines()]
    val_calls = [json.loads(line) for line in (tmp_path / "ds" / "val_calls.jsonl").read_text().splitlines()]
    assert len(train_rows) == stats.train == len(calls)
    assert not {c["question"] for c in calls} & {c["question"] for c in val_calls}
    for row, c in zip(train_rows, calls):
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert f"generate five {c['label']} documents" in row["messages"][1]["content"]
        assert row["messages"][2]["content"].startswith("Doc 1: ")
    assert json.loads((tmp_path / "ds" / "stats.json").read_text())["duplicates_dropped"] == 1


def test_build_upsample_repeats_in_train_only_and_counts_the_copies(tmp_path):
    records = [_record(str(i), f"What colour is thing {i}?", "blue", True, (f"thing {i}", [f"thing {i} is blue"]))
               for i in range(5)]
    records.append(_record("9", "What colour is grass?", "green", False, ("grass", ["grass is red"])))
    collected = tmp_path / "collected.jsonl"
    collected.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    stats = build(collected, tmp_path / "ds", seed=0, val_fraction=0.0, balance_by="upsample")
    assert (stats.useful, stats.noisy, stats.train, stats.train_useful) == (5, 1, 10, 5)
    assert (stats.balance_dropped, stats.balance_repeated) == (0, 4)
    assert stats.settings["balance_by"] == "upsample"
    train_rows = (tmp_path / "ds" / "train.jsonl").read_text().splitlines()
    calls = [json.loads(line) for line in (tmp_path / "ds" / "train_calls.jsonl").read_text().splitlines()]
    assert len(train_rows) == 10 and sum('generate five noisy' in row for row in train_rows) == 5
    assert len(calls) == 6 and sum(c["label"] == NOISY for c in calls) == 1  # each distinct call once
    with pytest.raises(ValueError, match="balance_by"):
        build(collected, tmp_path / "ds2", balance_by="both")


def test_build_val_split_is_the_same_sample_under_either_balance(tmp_path):
    records = [_record(str(i), f"What colour is thing {i}?", "blue", True, (f"thing {i}", [f"thing {i} is blue"]))
               for i in range(12)]
    records += [_record(f"n{i}", f"What colour is rock {i}?", "green", False, (f"rock {i}", ["rock is red"]))
                for i in range(5)]
    collected = tmp_path / "collected.jsonl"
    collected.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    down = build(collected, tmp_path / "down", seed=3, val_fraction=0.4)
    up = build(collected, tmp_path / "up", seed=3, val_fraction=0.4, balance_by="upsample")
    assert down.val > 0 and up.train > down.train
    for name in ("val.jsonl", "val_calls.jsonl"):
        assert (tmp_path / "down" / name).read_text() == (tmp_path / "up" / name).read_text()


def test_build_without_both_classes_says_what_to_do(tmp_path):
    collected = tmp_path / "c.jsonl"
    collected.write_text(json.dumps(_record("1", "What colour is coal?", "black", None, ("coal", ["coal is black"]))) + "\n")
    with pytest.raises(ValueError, match="both classes"):
        build(collected, tmp_path / "ds")


def test_done_row_ids_removes_a_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"row_id": "a"}\n{"row_id": "b"}\n{"row_id": "c", "que', encoding="utf-8")
    assert done_row_ids(path) == {"a", "b"}
    assert path.read_text() == '{"row_id": "a"}\n{"row_id": "b"}\n'


def test_parse_simulator_spec():
    spec = parse_simulator_spec("tuned=finetuned:simulated:runs/sim")
    assert (spec.label, spec.mode, spec.spec, spec.name) == ("tuned", "finetuned", "simulated:runs/sim", "tuned")
    url = parse_simulator_spec("prompt:simulated:http://127.0.0.1:8001/v1")
    assert (url.label, url.spec) == ("", "simulated:http://127.0.0.1:8001/v1")
    with pytest.raises(ValueError, match="MODE:simulated"):
        parse_simulator_spec("simulated:zerosearch:tiny")


# --- the SFT loss mask -----------------------------------------------------------------------------------


def test_loss_is_on_the_assistant_reply_only(tmp_path):
    """chat_example's mask covers the reply and its end-of-turn tokens only, exactly as TRL's
    prompt-completion tokenisation (which trained the simulator before) puts its labels."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from zerosearch.models.tiny import tiny_model_dir
    from zerosearch.sft import chat_example

    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    replies = ["Doc 1: the sky is blue\nDoc 2: it is", "Doc 1(Title: Grass) grass is green"]
    examples = [{"prompt": [{"role": "system", "content": ""}, {"role": "user", "content": f"Query: q{i}\nUseful Output:"}],
                 "completion": [{"role": "assistant", "content": reply}]} for i, reply in enumerate(replies)]
    ours = [chat_example(tok, e["prompt"] + e["completion"]) for e in examples]
    for example, reply in zip(ours, replies):
        prompt_ids = tok(tok.apply_chat_template(examples[replies.index(reply)]["prompt"], tokenize=False,
                                                 add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        n = len(prompt_ids)
        assert list(example.input_ids[:n]) == prompt_ids and example.loss_mask[:n] == (0,) * n  # no loss there
        assert set(example.loss_mask[n:]) == {1}  # every token after the prompt
        assert tok.decode(example.input_ids[n:]) == reply + "<|im_end|>\n"

    config = SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, report_to=[], use_cpu=True,
                       per_device_train_batch_size=1, max_length=1024)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir()), args=config,
                         processing_class=tok, train_dataset=Dataset.from_list(examples))
    for row, example in zip(trainer.train_dataset, ours):
        assert list(row["input_ids"]) == list(example.input_ids)
        assert list(row["labels"]) == [i if m else -100 for i, m in zip(example.input_ids, example.loss_mask)]


# --- end to end ----------------------------------------------------------------------------------------


def _write_qa(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "question": q, "golden_answers": [a]}) + "\n" for i, q, a in rows))
    return path


def _small_bm25(tmp_path: Path) -> tuple[str, Path]:
    """BM25 over the first 200 HotpotQA paragraphs, and a QA file of the train questions they answer."""
    pytest.importorskip("bm25s")
    if not HOTPOT_CORPUS.is_file() or not HOTPOT_TRAIN.is_file():
        pytest.skip("shared HotpotQA data is absent")
    with HOTPOT_CORPUS.open(encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(200)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(lines), encoding="utf-8")
    qa = [json.loads(line) for line in HOTPOT_TRAIN.read_text(encoding="utf-8").splitlines()[:6]]
    path = _write_qa(tmp_path / "hotpot.jsonl", [(r["id"], r["question"], r["golden_answers"][0]) for r in qa])
    return f"bm25:{corpus}", path


def test_collect_searches_the_extra_queries_a_row_holds(tmp_path):
    qa = tmp_path / "hotpot.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "question": "Q1?", "golden_answers": ["x"], "metadata": {"supporting_titles": ["T1", "T2"]}},
        {"id": "b", "question": "Q2?", "golden_answers": ["y"], "metadata": {"supporting_titles": "Q2?"}},
        {"id": "c", "question": "Q3?", "golden_answers": ["z"]},  # no field: the question alone
        {"id": "d", "question": "Q4?", "golden_answers": ["w"], "metadata": {"supporting_titles": ["T4", "bad"]}},
    ]))
    engine = FixedDocumentsEngine(["the x doc"], fail_queries=["bad"])
    out = tmp_path / "collected.jsonl"
    summary = collect(None, engine, qa, out, query_source="question", extra_query_field="metadata.supporting_titles",
                      rollout=RolloutSettings(topk=1), progress=False)
    assert (summary.written, summary.search_calls, summary.failed) == (3, 5, 1)  # d: one search failed, not written
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [[s["query"] for s in r["searches"]] for r in records] == [["Q1?", "T1", "T2"], ["Q2?"], ["Q3?"]]
    assert [s["turn"] for s in records[0]["searches"]] == [0, 1, 2]
    stats = build(out, tmp_path / "ds", val_fraction=0.0, max_doc_words=0)
    assert (stats.search_calls, stats.useful, stats.noisy) == (5, 3, 2)  # the doc holds x: row a's calls useful

    qa.write_text(json.dumps({"id": "f", "question": "Q?", "golden_answers": ["x"], "metadata": {"supporting_titles": []}}))
    collect(None, engine, qa, tmp_path / "f.jsonl", query_source="question", extra_query_field="metadata.supporting_titles",
            progress=False)  # an empty list: the question alone
    assert [s["query"] for s in json.loads((tmp_path / "f.jsonl").read_text())["searches"]] == ["Q?"]

    qa.write_text(json.dumps({"id": "e", "question": "Q?", "golden_answers": ["x"], "metadata": {"supporting_titles": 7}}))
    with pytest.raises(DataError, match=r"line 1, field 'metadata.supporting_titles'.*list of strings"):
        collect(None, engine, qa, tmp_path / "e.jsonl", query_source="question",
                extra_query_field="metadata.supporting_titles", progress=False)
    shouting = tmp_path / "QA.JSONL"  # read line by line like .jsonl, so its rows are lines too
    shouting.write_text(qa.read_text())
    with pytest.raises(DataError, match=r"QA\.JSONL, line 1, field 'metadata.supporting_titles'"):
        collect(None, engine, shouting, tmp_path / "s.jsonl", query_source="question",
                extra_query_field="metadata.supporting_titles", progress=False)
    with pytest.raises(ValueError, match="query_source='question' only"):
        collect("m", engine, qa, tmp_path / "e.jsonl", extra_query_field="metadata.supporting_titles")


def test_four_stages_end_to_end(tmp_path, searcher_model):
    pytest.importorskip("trl")
    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.search.factory import build_engine
    from zerosearch.search.simulated import SimulatedSearchEngine

    colours = _write_qa(tmp_path / "colours.jsonl", [(f"c{i}", q, a) for i, (q, a) in enumerate(COLOR_TASK.items())])
    fixed = FixedDocumentsEngine(["the colour is blue"])
    policy_out = tmp_path / "policy.jsonl"
    summary = collect(str(searcher_model), fixed, colours, policy_out, limit=3, batch_size=2,
                      policy_template=SHORT_TEMPLATE, progress=False)
    assert (summary.written, summary.search_calls, summary.correct) == (3, 3, 1)  # only the sky is blue
    rows = [json.loads(line) for line in policy_out.read_text().splitlines()]
    assert rows[0]["searches"][0] == {"turn": 0, "query": "what colour is the sky",
                                      "documents": [{"title": "", "text": "the colour is blue"}]}
    assert collect(str(searcher_model), fixed, colours, policy_out, limit=3, policy_template=SHORT_TEMPLATE,
                   progress=False).skipped == 3  # resume

    bm25_spec, hotpot = _small_bm25(tmp_path)
    bm25 = build_engine(bm25_spec, index_dir=str(tmp_path / "index"))
    question_out = tmp_path / "question.jsonl"
    assert collect(None, bm25, hotpot, question_out, query_source="question", progress=False).written == 6

    stats = build([policy_out, question_out], tmp_path / "ds", val_fraction=0.2)
    assert stats.train >= 2 and stats.useful >= 1 and stats.noisy >= 2

    model_dir = tmp_path / "sim"
    info = train(tmp_path / "ds", "zerosearch:tiny", model_dir, lora=True, lr=1e-3, max_steps=3, batch_size=2,
                 max_length=512, save_steps=0, device="cpu", progress=False)
    assert info["steps"] == 3 and info["base_model"] == "zerosearch:tiny"
    assert not (model_dir / "checkpoints").exists() and (model_dir / "simulator_tuning.json").is_file()
    assert not list(model_dir.glob("adapter_*"))  # merged: a plain model directory
    with pytest.raises(FileExistsError):
        train(tmp_path / "ds", "zerosearch:tiny", model_dir, max_steps=1, progress=False)

    engine = SimulatedSearchEngine(TransformersChatModel(str(model_dir), seed=0), mode="finetuned", max_tokens=12)
    [result] = engine.search([SearchRequest("sky colour", "what colour is the sky", ("blue",))], topk=3)
    assert result.ok or "no parseable documents" in result.error

    results = evaluate([f"tuned=finetuned:simulated:{model_dir}"], fixed, tmp_path / "eval", qa_files=colours,
                       limit=2, topk=2, max_tokens=12, batch_size=2, progress=False)
    assert results["reader"] == "zerosearch:tiny"  # the tuned simulator's base
    assert [row["name"] for row in results["engines"]] == ["real: fixed", "tuned"]
    real = results["engines"][0]["useful"]
    assert real["contains_share"] == 0.5 and real["exact_topk"] == 0.0  # one fixed document, blue only
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| tuned |" in table and "| real: fixed |" in table
    assert len((tmp_path / "eval" / "samples.jsonl").read_text().splitlines()) == 2 + 2 * 2


def test_bf16_training_on_cpu_moves_fp32_weights(tmp_path):
    """--bf16 on CPU: autocast steps (fast on avx512_bf16/AMX CPUs) that still update and save fp32 weights."""
    pytest.importorskip("trl")
    import torch
    from transformers import AutoModelForCausalLM

    from zerosearch.models.tiny import tiny_model_dir

    records = [_record("1", "What colour is the sky?", "blue", None, ("sky", ["the sky is blue"])),
               _record("2", "What colour is coal?", "black", None, ("coal", ["coal is grey"]))]
    collected = tmp_path / "c.jsonl"
    collected.write_text("".join(json.dumps(r) + "\n" for r in records))
    build(collected, tmp_path / "ds", val_fraction=0.0)
    info = train(tmp_path / "ds", "zerosearch:tiny", tmp_path / "sim", lr=1e-2, max_steps=2, batch_size=2,
                 save_steps=0, device="cpu", progress=False, bf16=True)
    assert info["settings"]["bf16"] is True
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "sim")
    assert after.dtype == torch.float32
    assert not torch.equal(before.lm_head.weight, after.lm_head.weight)


def test_cli_stages_parse_and_build_runs(tmp_path, capsys):
    from zerosearch.commands.errors import run_command
    from zerosearch.commands.tune_cmds import add_tune_simulator_parser

    parser = argparse.ArgumentParser(prog="zerosearch")
    add_tune_simulator_parser(parser.add_subparsers(dest="command", required=True))
    for stage in ("collect", "build", "train", "evaluate"):
        with pytest.raises(SystemExit):
            parser.parse_args(["tune-simulator", stage, "--help"])
        assert "example" in capsys.readouterr().out
    records = [_record("1", "What colour is coal?", "black", None, ("coal", ["coal is black"])),
               _record("2", "What colour is chalk?", "white", None, ("chalk", ["chalk is soft"]))]
    collected = tmp_path / "c.jsonl"
    collected.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = parser.parse_args(["tune-simulator", "build", "--collected", str(collected), "--out-dir",
                              str(tmp_path / "ds"), "--val-fraction", "0"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["train"] == 2
    args = parser.parse_args(["tune-simulator", "build", "--collected", str(collected), "--out-dir",
                              str(tmp_path / "ds2"), "--val-fraction", "0", "--balance", "upsample"])
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["settings"]["balance_by"] == "upsample"
    assert parser.parse_args(["tune-simulator", "train", "--dataset", "d", "--base-model", "m", "--out-dir", "o",
                              "--bf16"]).bf16 is True
    args = parser.parse_args(["tune-simulator", "train", "--dataset", str(tmp_path / "nothing"),
                              "--base-model", "zerosearch:tiny", "--out-dir", str(tmp_path / "m")])
    assert run_command(args) == 2
    assert "tune-simulator build" in capsys.readouterr().err
