"""Tuning a simulation LLM on real search results: collect, build, train, evaluate.

The paper fine-tunes the simulator on the documents a real engine returned to a policy, each labelled by
whether the policy went on to answer correctly; the original code for this was never released. This
module is that pipeline, in four stages that each read the previous stage's files:

1. :func:`collect` runs a policy against a *real* engine (:class:`~zerosearch.rollout.RolloutRunner`) over
   QA rows and appends one JSON line per row to a jsonl file: the row, the trajectory's outcome and every
   search call it made (query + the documents the engine returned). Resumable.
2. :func:`build` labels every search call useful or noisy, drops what the rule cannot decide, removes
   duplicates, splits by question and balances the classes, then writes chat-format SFT data.
3. :func:`train` fine-tunes an instruct model on it with TRL's ``SFTTrainer`` (loss on the assistant
   reply only) and saves a plain Hugging Face directory (LoRA merged) that ``simulated:DIR`` and vLLM load.
4. :func:`evaluate` compares simulators (and the real engine) on held-apart questions: answer containment
   in useful / noisy mode, output format, and a fixed reader's EM/F1 from the documents.

Labelling rules (:func:`label_call`):

* a search call of a *policy* trajectory is **useful** when the trajectory's final answer was correct
  *and* the documents contain a gold answer, **noisy** when the answer was wrong *and* the documents
  contain none; the two mixed cases are ambiguous and dropped (counted). "Correct" is cover EM = 1 (a
  normalised gold answer inside the normalised prediction, what the original code called EM); ``build``
  can use exact EM instead (``correct_metric="em"``).
* a call collected with ``query_source="question"`` (below) has no trajectory: it is labelled by
  containment alone (useful iff the documents contain a gold answer).
* "contain" means a normalised gold answer (:func:`~zerosearch.rewards.normalize_answer`) occurs as a
  whole-word sequence in the normalised title + text of the documents. Yes/no gold answers cannot be
  judged by containment: such calls are undecidable and dropped (counted); evaluation leaves them out of
  the containment shares too.

Departures from the paper, on purpose:

* ``query_source="question"``: a weak policy (e.g. SmolLM2-135M) rarely writes a well-formed search, so
  ``collect`` can instead issue one search per row with the question itself as the query. Without a
  trajectory the label rests on containment only (the paper's "documents alone suffice" check).
  ``extra_query_field`` adds the sub-queries a capable multi-hop searcher would issue, read from the
  rows (HotpotQA's ``metadata.supporting_titles``): one question then yields calls of both labels under
  the same prompt but for the mode word, the contrast a simulator must learn to heed that word.
* Documents are cut to search-snippet length (``max_doc_words``, default 40) before labelling and
  training: the published prompt asks for "about 30 words" per document (Google snippets), while
  wiki-style corpora hold ~100-word passages. Like a search engine's snippet, the window shows the part
  of the passage around the match: around the gold answer when the passage holds one (so cutting never
  changes a label), else the passage's start; it ends at a sentence end when one falls in its second half.
* The assistant reply is the documents in the wiki rendering the policy sees at test time,
  ``Doc 1(Title: {title}) {text}`` one per line (``Doc 1: {text}`` for untitled ones), so the tuned
  simulator writes titles, and :func:`~zerosearch.search.documents.parse_simulated_documents` reads them.
* The user message is produced by :meth:`SimulatedSearchEngine.conversation_for` itself (finetuned mode),
  so the training prompt is byte for byte the one the engine sends when the tuned model serves.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from zerosearch.data import QARow, load_qa_files, policy_prompt
from zerosearch.rewards import answer_metrics, extract_answer, normalize_answer
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.search.documents import render_documents

__all__ = [
    "BuildStats",
    "CollectSummary",
    "EvalItem",
    "Reader",
    "SearchCall",
    "SimulatorSpec",
    "balance",
    "build",
    "collect",
    "containment",
    "contains_answer",
    "dedupe",
    "done_row_ids",
    "eval_items",
    "evaluate",
    "format_stats",
    "label_call",
    "load_sft_examples",
    "make_sft_trainer",
    "parse_simulator_spec",
    "read_collected",
    "results_table",
    "search_calls",
    "simulator_messages",
    "snippet",
    "split_by_question",
    "train",
]

PathLike = str | os.PathLike[str]
USEFUL, NOISY = "useful", "noisy"
QUERY_SOURCES = ("policy", "question")
CORRECT_METRICS = ("cover_em", "em")
TUNING_INFO = "simulator_tuning.json"  # written last into a trained simulator's directory
_CLOSED_ANSWERS = frozenset({"yes", "no"})


# =====================================================================================================
# Shared helpers


def contains_answer(documents: Sequence[Document], golden_answers: Iterable[str]) -> bool | None:
    """Whether a normalised gold answer occurs, as whole words, in the documents' titles and texts.

    Returns None when no gold answer can be judged this way (only yes/no or empty answers).
    """
    golds = [g for g in map(normalize_answer, golden_answers) if g and g not in _CLOSED_ANSWERS]
    if not golds:
        return None
    text = f" {normalize_answer(' '.join(f'{d.title} {d.text}' for d in documents))} "
    return any(f" {g} " in text for g in golds)


def _holds_answer(words: Sequence[str], answers: Sequence[str]) -> bool:
    return bool(answers) and bool(contains_answer([Document(" ".join(words))], answers))


def _window_start(words: Sequence[str], max_words: int, answers: Sequence[str]) -> int:
    """Where a ``max_words`` window of ``words`` starts so that it shows a gold answer the text holds.

    The text's start if its first window holds one; else the start of the last sentence whose window
    does (the sentence that mentions the answer); else the first word start whose window does; else 0.
    """
    if not _holds_answer(words, answers) or _holds_answer(words[:max_words], answers):
        return 0
    sentence_starts = [i + 1 for i, word in enumerate(words[:-1]) if word.endswith((".", "!", "?"))]
    for start in sentence_starts[::-1] + list(range(len(words))):
        if _holds_answer(words[start : start + max_words], answers):
            return start
    return 0


def snippet(text: str, max_words: int, answers: Sequence[str] = ()) -> str:
    """``text`` with whitespace collapsed, cut to a window of at most ``max_words`` words (0: no cut).

    The window starts at the beginning or, when a gold answer in ``answers`` occurs in the text beyond the
    first window, at the sentence mentioning it (as a search engine's snippet shows the passage around the
    matching words), so cutting never removes the answer a document holds. The window then ends at its last
    sentence end (``.``, ``!``, ``?``) in its second half when there is one and the answer stays inside.
    """
    words = text.split()
    if max_words <= 0 or len(words) <= max_words:
        return " ".join(words)
    start = _window_start(words, max_words, answers)
    head = words[start : start + max_words]
    keep_answer = _holds_answer(head, answers)
    for end in range(len(head), len(head) // 2, -1):
        if head[end - 1].endswith((".", "!", "?")) and (not keep_answer or _holds_answer(head[:end], answers)):
            return " ".join(head[:end])
    return " ".join(head)


def _doc_dict(doc: Document) -> dict[str, Any]:
    out: dict[str, Any] = {"title": doc.title, "text": doc.text}
    if doc.id is not None:
        out["id"] = doc.id
    return out


def _doc_from_dict(data: dict[str, Any]) -> Document:
    return Document(text=str(data.get("text", "")), title=str(data.get("title", "")), id=data.get("id"))


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a jsonl file; a torn (unparseable) *last* line is skipped with a warning."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                print(f"[zerosearch] {path}: ignoring a torn last line {number}", file=sys.stderr)
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc}); fix or delete that line") from None
    return rows


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, dynamic_ncols=True)


# =====================================================================================================
# 1. collect


@dataclass
class CollectSummary:
    """What one :func:`collect` call did."""

    rows: int = 0  # rows selected (after ``limit``)
    skipped: int = 0  # already in the output file (resume)
    written: int = 0  # rows appended now
    search_calls: int = 0  # search calls in the rows appended now
    failed: int = 0  # rows whose search failed; not written, so the next run retries them
    correct: int = 0  # policy mode: rows answered correctly (cover EM)
    seconds: float = 0.0


class _RecordingEngine:
    """Wraps an engine and keeps the documents each (question, query) got, with their titles.

    The rollout keeps only rendered document strings; the dataset needs titles and texts apart. Real
    engines are deterministic, so one entry per (question, query) is exact.
    """

    def __init__(self, inner: SearchEngine) -> None:
        self.inner = inner
        self.name = inner.name
        self.documents: dict[tuple[str, str], list[Document]] = {}

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        results = self.inner.search(requests, topk)
        for request, result in zip(requests, results):
            if result.ok:
                self.documents[(request.question, request.query)] = list(result.documents[:topk])
        return results


def done_row_ids(path: Path) -> set[str]:
    """Row ids already in a collect file. A torn last line (an interrupted write) is cut off the file."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        print(f"[zerosearch] {path}: removing a torn last line ({len(data) - keep} bytes); that row is redone",
              file=sys.stderr)
        with path.open("r+b") as handle:
            handle.truncate(keep)
    return {str(row["row_id"]) for row in _read_jsonl(path)}


def _unique_ids(rows: Sequence[QARow]) -> None:
    counts = Counter(row.id for row in rows)
    duplicated = [row_id for row_id, n in counts.items() if n > 1]
    if duplicated:
        raise ValueError(
            f"{len(duplicated)} row id(s) occur more than once (e.g. {duplicated[:3]}); collect resumes by row "
            "id, so give every row a unique id or collect one file at a time into separate outputs"
        )


def _row_record(row: QARow, source: str) -> dict[str, Any]:
    return {"row_id": row.id, "question": row.question, "golden_answers": list(row.golden_answers),
            "query_source": source}


def _extra_queries(row: QARow, extra_query_field: str | None) -> list[str]:
    """The row's extra queries: the string, or the strings of the list, at ``extra_query_field``."""
    if not extra_query_field:
        return []
    value = row.get(extra_query_field)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise row.error(extra_query_field, "a string or a list of strings (extra queries)", value)
    return [v.strip() for v in values if v.strip()]


def _question_records(engine: SearchEngine, rows: Sequence[QARow], topk: int, summary: CollectSummary,
                      extra_query_field: str | None = None) -> list[dict[str, Any]]:
    """``query_source="question"``: per row, a search with the question as the query, then one per extra
    query the row holds at ``extra_query_field`` (e.g. HotpotQA's ``metadata.supporting_titles``).

    A row is written only when all its searches succeeded (a failed one is retried by the next run).
    """
    queries = [list(dict.fromkeys([r.question, *_extra_queries(r, extra_query_field)])) for r in rows]
    requests = [SearchRequest(query=q, question=r.question, golden_answers=r.golden_answers)
                for r, qs in zip(rows, queries) for q in qs]
    results = iter(engine.search(requests, topk))
    records = []
    for row, row_queries in zip(rows, queries):
        row_results = [next(results) for _ in row_queries]
        if not all(result.ok for result in row_results):
            summary.failed += 1
            continue
        record = _row_record(row, "question")
        record.update(status=None, prediction=None, scores=None, correct=None, searches=[
            {"turn": turn, "query": query, "documents": [_doc_dict(d) for d in result.documents[:topk]]}
            for turn, (query, result) in enumerate(zip(row_queries, row_results))
        ])
        records.append(record)
    return records


@dataclass
class _PolicyRunner:
    """What policy-mode collection needs: the rollout runner, its recording engine, the prompt encoder."""

    runner: Any
    engine: _RecordingEngine
    tokenizer: Any
    chat: bool
    template: str | None

    def records(self, rows: Sequence[QARow], summary: CollectSummary) -> list[dict[str, Any]]:
        import numpy as np

        from zerosearch.policy import encode_prompt
        from zerosearch.rollout import SEARCH_FAILED, Trajectory

        trajectories = [
            Trajectory(question=r.question, golden_answers=r.golden_answers,
                       prompt_ids=encode_prompt(self.tokenizer, policy_prompt(r.question, self.template), self.chat))
            for r in rows
        ]
        self.runner.run(trajectories, 0.0, np.random.default_rng(0))  # a real engine: nothing is noisy
        records = []
        for row, traj in zip(rows, trajectories):
            if traj.status == SEARCH_FAILED:
                summary.failed += 1
                continue
            records.append(self._record(row, traj))
        self.engine.documents.clear()
        return records

    def _record(self, row: QARow, traj: Any) -> dict[str, Any]:
        prediction = extract_answer(traj.answer_text) if traj.answer_text is not None else None
        scores = answer_metrics(prediction, row.golden_answers)
        searches = [
            {"turn": i, "query": turn.query,
             "documents": [_doc_dict(d) for d in self.engine.documents[(row.question, turn.query)]]}
            for i, turn in enumerate(traj.turns)
            if turn.action == "search" and turn.query is not None and turn.error is None
        ]
        record = _row_record(row, "policy")
        record.update(status=traj.status, prediction=prediction, scores=scores,
                      correct=scores["cover_em"] == 1.0, searches=searches)
        return record


def _policy_runner(policy_model: str, engine: SearchEngine, *, topk: int, max_turns: int, max_turn_tokens: int,
                   temperature: float, batch_size: int, template: str | None, device: str) -> _PolicyRunner:
    from zerosearch.policy import load_causal_lm, load_tokenizer, pick_device, pick_dtype, use_chat_template
    from zerosearch.rollout import RolloutRunner, RolloutSettings

    torch_device = pick_device(device)
    tokenizer = load_tokenizer(policy_model)
    model = load_causal_lm(policy_model, torch_device, pick_dtype("auto", torch_device))
    recording = _RecordingEngine(engine)
    settings = RolloutSettings(max_turns=max_turns, topk=topk, max_turn_tokens=max_turn_tokens,
                               temperature=temperature, batch_size=batch_size)
    runner = RolloutRunner(model, tokenizer, recording, settings, torch_device)
    return _PolicyRunner(runner, recording, tokenizer, use_chat_template(tokenizer, "auto"), template)


def collect(
    policy_model: str | None,
    engine: str | SearchEngine,
    qa_files: Sequence[PathLike] | PathLike,
    out_path: PathLike,
    *,
    query_source: str = "policy",
    extra_query_field: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    max_turns: int = 2,
    topk: int = 5,
    temperature: float = 0.0,
    max_turn_tokens: int = 500,
    policy_template: str | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> CollectSummary:
    """Search a real engine for QA rows and append one JSON line per row to ``out_path``.

    Each line: ``row_id``, ``question``, ``golden_answers``, ``query_source``, the trajectory's ``status``,
    ``prediction``, ``scores`` (em/f1/cover_em) and ``correct`` (cover EM = 1), and ``searches``: one entry
    per search call, ``{"turn", "query", "documents": [{"title", "text", "id"?}]}``. One line per row (not
    per call) so that an interrupted write can never leave a row half recorded; rows whose id is already
    in the file are skipped, a torn last line is removed and redone. Rows whose search *failed* are not
    written (the next run retries them).

    Args:
        policy_model: the policy (path, hub id, ``zerosearch:*``); unused for ``query_source="question"``.
        engine: a real engine or its spec (``bm25:FILE``, ``http://.../retrieve``, ``google``, ...).
        qa_files: QA files (any layout :func:`~zerosearch.data.load_qa_files` reads).
        query_source: ``"policy"`` (the paper: the policy's own searches, labelled by its outcome) or
            ``"question"`` (one search per row with the question as the query; for weak policies).
        extra_query_field: with ``query_source="question"``, a field of the rows (dotted, e.g.
            ``metadata.supporting_titles`` in HotpotQA) holding more queries, a string or a list: each is
            searched too, standing in for the sub-queries a capable policy would issue for a multi-hop question.
        limit: use only the first ``limit`` rows of the files.
        batch_size: rows per rollout batch (and per engine call).
        max_turns, topk, max_turn_tokens: rollout settings (paper: 2 turns, 5 documents, 500 tokens).
        temperature: policy sampling temperature; 0 is greedy.
        policy_template: the policy prompt template *text* (``{question}``); default the built-in one.
        seed: torch seed for a sampling policy.
    """
    if query_source not in QUERY_SOURCES:
        raise ValueError(f"query_source must be one of {QUERY_SOURCES}, got {query_source!r}")
    if query_source == "policy" and not policy_model:
        raise ValueError("query_source='policy' needs a policy model; or use query_source='question'")
    if batch_size < 1 or topk < 1 or max_turns < 1:
        raise ValueError("batch_size, topk and max_turns must all be >= 1")
    if extra_query_field and query_source != "question":
        raise ValueError("extra_query_field works with query_source='question' only (a policy writes its own)")
    started = time.perf_counter()
    rows = load_qa_files(qa_files)[: limit if limit is not None else None]
    _unique_ids(rows)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = done_row_ids(out_path)
    todo = [row for row in rows if row.id not in done]
    summary = CollectSummary(rows=len(rows), skipped=len(rows) - len(todo))
    if not todo:
        return summary
    if isinstance(engine, str):
        from zerosearch.search.factory import build_engine

        engine = build_engine(engine)
    policy = None
    if query_source == "policy":
        import torch

        torch.manual_seed(seed)
        policy = _policy_runner(policy_model, engine, topk=topk, max_turns=max_turns,  # type: ignore[arg-type]
                                max_turn_tokens=max_turn_tokens, temperature=temperature,
                                batch_size=batch_size, template=policy_template, device=device)
    with out_path.open("a", encoding="utf-8") as handle, _progress(len(todo), "collect", progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            records = (policy.records(batch, summary) if policy is not None
                       else _question_records(engine, batch, topk, summary, extra_query_field))
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.written += 1
                summary.search_calls += len(record["searches"])
                summary.correct += bool(record["correct"])
            handle.flush()
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


# =====================================================================================================
# 2. build


@dataclass(frozen=True)
class SearchCall:
    """One search call of a collected row, documents already cut to snippets."""

    row_id: str
    question: str
    golden_answers: tuple[str, ...]
    query: str
    documents: tuple[Document, ...]
    query_source: str
    correct: bool | None  # the trajectory's outcome; None for query_source="question"


def read_collected(paths: Sequence[PathLike] | PathLike) -> list[dict[str, Any]]:
    """The row records of one or more collect files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    rows: list[dict[str, Any]] = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"collected file not found: {path} (write it with `tune-simulator collect`)")
        rows.extend(_read_jsonl(path))
    return rows


def _is_correct(record: dict[str, Any], metric: str) -> bool | None:
    if record.get("query_source") == "question" or record.get("scores") is None:
        return None
    return float(record["scores"][metric]) == 1.0


def search_calls(records: Iterable[dict[str, Any]], *, max_doc_words: int = 40,
                 correct_metric: str = "cover_em") -> list[SearchCall]:
    """Every search call with documents of the collected rows, documents cut by :func:`snippet`."""
    if correct_metric not in CORRECT_METRICS:
        raise ValueError(f"correct_metric must be one of {CORRECT_METRICS}, got {correct_metric!r}")
    calls = []
    for record in records:
        correct = _is_correct(record, correct_metric)
        for search in record.get("searches", []):
            docs = tuple(
                Document(text=snippet(d.text, max_doc_words, record["golden_answers"]), title=d.title)
                for d in map(_doc_from_dict, search["documents"])
            )
            if not any(d.text for d in docs):
                continue  # the engine found nothing: no documents to learn to write
            calls.append(SearchCall(
                row_id=str(record["row_id"]), question=record["question"],
                golden_answers=tuple(record["golden_answers"]), query=search["query"],
                documents=tuple(d for d in docs if d.text), query_source=record.get("query_source", "policy"),
                correct=correct,
            ))
    return calls


def label_call(call: SearchCall) -> str | None:
    """``"useful"``, ``"noisy"`` or None (ambiguous or undecidable); the rules are in the module docstring."""
    contains = contains_answer(call.documents, call.golden_answers)
    if contains is None:
        return None
    if call.correct is None:  # query_source="question": containment alone
        return USEFUL if contains else NOISY
    if call.correct and contains:
        return USEFUL
    if not call.correct and not contains:
        return NOISY
    return None


def _dedupe_key(call: SearchCall) -> str:
    docs = "\x1f".join(normalize_answer(f"{d.title} {d.text}") for d in call.documents)
    return f"{normalize_answer(call.query)}\x1e{docs}"


def dedupe(labelled: Sequence[tuple[SearchCall, str]]) -> list[tuple[SearchCall, str]]:
    """The first labelled call of each (normalised query, normalised documents), in order."""
    seen: set[str] = set()
    kept = []
    for item in labelled:
        key = _dedupe_key(item[0])
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def split_by_question(labelled: Sequence[tuple[SearchCall, str]], val_fraction: float,
                      rng: random.Random) -> tuple[list[tuple[SearchCall, str]], list[tuple[SearchCall, str]]]:
    """Split so that no (normalised) question is in both parts, stratified by label.

    Questions are grouped by the set of labels their calls carry; from each group ``val_fraction`` of
    the questions (rounded, always leaving one for training) go to val, so a small dataset cannot lose a
    whole class to the validation split.
    """
    labels_of: dict[str, set[str]] = {}
    for call, label in labelled:
        labels_of.setdefault(normalize_answer(call.question), set()).add(label)
    strata: dict[tuple[str, ...], list[str]] = {}
    for question in sorted(labels_of):
        strata.setdefault(tuple(sorted(labels_of[question])), []).append(question)
    val_questions: set[str] = set()
    for key in sorted(strata):
        questions = strata[key]
        rng.shuffle(questions)
        val_questions.update(questions[: min(round(val_fraction * len(questions)), len(questions) - 1)])
    train = [item for item in labelled if normalize_answer(item[0].question) not in val_questions]
    val = [item for item in labelled if normalize_answer(item[0].question) in val_questions]
    return train, val


BALANCE_MODES = ("downsample", "upsample")


def balance(labelled: Sequence[tuple[SearchCall, str]], rng: random.Random,
            max_examples: int | None = None, how: str = "downsample") -> list[tuple[SearchCall, str]]:
    """The two classes at equal size, shuffled.

    ``how="downsample"`` draws the larger class down to the smaller one's size (the paper's balance; it
    throws labelled calls away). ``how="upsample"`` keeps every call and repeats the smaller class's calls
    (each as evenly as possible: all of them ``k`` times, then a random draw of the rest) up to the larger
    one's size, for small collections where every real document set counts. ``max_examples`` caps both
    classes at ``max_examples // 2``. A class with no calls gives an empty result either way.
    """
    if how not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, got {how!r}")
    if how == "upsample":
        # Upsample with a copy of rng, and move rng on exactly as downsampling would: whatever rng draws
        # next (build's val split) is then the same sample under either mode, so the two compare.
        own = random.Random()
        own.setstate(rng.getstate())
        balance(labelled, rng, max_examples)
        rng = own
    by_label = {label: [item for item in labelled if item[1] == label] for label in (USEFUL, NOISY)}
    sizes = [len(items) for items in by_label.values()]
    size = min(sizes) if how == "downsample" or min(sizes) == 0 else max(sizes)
    if max_examples is not None:
        size = min(size, max_examples // 2)
    kept = [item for items in by_label.values() for item in _draw(items, size, rng)]
    rng.shuffle(kept)
    return kept


def _draw(items: Sequence[Any], size: int, rng: random.Random) -> list[Any]:
    """``size`` of ``items``: a sample without repeats when there are enough, else every item
    ``size // len(items)`` times plus a sample of the remainder."""
    if size <= len(items):
        return rng.sample(list(items), size)
    return list(items) * (size // len(items)) + rng.sample(list(items), size % len(items))


@lru_cache(maxsize=1)
def _finetuned_prompter() -> Any:
    """A finetuned-mode simulated engine used only to render prompts (it never calls a chat model)."""
    from zerosearch.search.simulated import SimulatedSearchEngine

    return SimulatedSearchEngine(chat_model=None, mode="finetuned")  # type: ignore[arg-type]


def simulator_messages(call: SearchCall, label: str) -> list[dict[str, str]]:
    """The training conversation: the finetuned-mode prompt the engine sends, then the real documents."""
    request = SearchRequest(query=call.query, question=call.question, golden_answers=call.golden_answers,
                            noisy=label == NOISY)
    return [*_finetuned_prompter().conversation_for(request), {"role": "assistant", "content": render_documents(call.documents)}]


def _call_record(call: SearchCall, label: str) -> dict[str, Any]:
    return {"row_id": call.row_id, "question": call.question, "golden_answers": list(call.golden_answers),
            "query": call.query, "label": label, "query_source": call.query_source,
            "documents": [_doc_dict(d) for d in call.documents]}


@dataclass
class BuildStats:
    """Counts of :func:`build` (also written as ``stats.json``)."""

    collected_rows: int = 0
    search_calls: int = 0
    useful: int = 0
    noisy: int = 0
    ambiguous_dropped: int = 0  # correct answer without the answer in the documents, or the reverse
    undecidable_dropped: int = 0  # yes/no gold answers: containment says nothing
    duplicates_dropped: int = 0
    balance_dropped: int = 0
    balance_repeated: int = 0  # extra copies of the smaller class (balance_by="upsample")
    train: int = 0
    val: int = 0
    train_useful: int = 0
    val_useful: int = 0
    train_questions: int = 0
    val_questions: int = 0
    by_query_source: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _label_all(calls: Sequence[SearchCall], stats: BuildStats) -> list[tuple[SearchCall, str]]:
    labelled = []
    for call in calls:
        label = label_call(call)
        if label is not None:
            labelled.append((call, label))
        elif contains_answer(call.documents, call.golden_answers) is None:
            stats.undecidable_dropped += 1
        else:
            stats.ambiguous_dropped += 1
    stats.useful = sum(label == USEFUL for _, label in labelled)
    stats.noisy = len(labelled) - stats.useful
    return labelled


def build(
    collected: Sequence[PathLike] | PathLike,
    out_dir: PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_examples: int | None = None,
    max_doc_words: int = 40,
    correct_metric: str = "cover_em",
    balance_by: str = "downsample",
) -> BuildStats:
    """Turn collected search calls into balanced SFT data for a simulator.

    Steps: cut documents to snippets, label (:func:`label_call`), drop ambiguous and undecidable calls,
    drop duplicates (same normalised query and documents), split train/val by question, balance each
    split (:func:`balance`: downsample the larger class, or with ``balance_by="upsample"`` repeat the
    smaller one; ``max_examples`` caps the train split), shuffle. ``stats.balance_dropped`` counts the calls
    left out, ``stats.balance_repeated`` the extra copies added.

    Writes to ``out_dir``: ``train.jsonl`` / ``val.jsonl`` (``{"messages": [system "", user prompt,
    assistant documents]}``), ``train_calls.jsonl`` / ``val_calls.jsonl`` (the same examples as records,
    each distinct call once: question, gold answers, query, label, documents; ``evaluate --calls`` reads
    them) and ``stats.json``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_examples is not None and max_examples < 2:
        raise ValueError(f"max_examples must be >= 2 (one per class), got {max_examples}")
    if balance_by not in BALANCE_MODES:
        raise ValueError(f"balance_by must be one of {BALANCE_MODES}, got {balance_by!r}")
    records = read_collected(collected)
    calls = search_calls(records, max_doc_words=max_doc_words, correct_metric=correct_metric)
    stats = BuildStats(collected_rows=len(records), search_calls=len(calls),
                       by_query_source=dict(Counter(call.query_source for call in calls)),
                       settings={"seed": seed, "val_fraction": val_fraction, "max_examples": max_examples,
                                 "max_doc_words": max_doc_words, "correct_metric": correct_metric,
                                 "balance_by": balance_by})
    labelled = _label_all(calls, stats)
    unique = dedupe(labelled)
    stats.duplicates_dropped = len(labelled) - len(unique)
    labelled = unique
    rng = random.Random(seed)
    train_part, val_part = split_by_question(labelled, val_fraction, rng)
    # val is always downsampled: repeated examples would only re-weight its loss and its calls
    train_set, val_set = balance(train_part, rng, max_examples, how=balance_by), balance(val_part, rng)
    train_calls = list({id(item): item for item in train_set}.values())  # upsampled copies once: one call each
    stats.balance_dropped = len(labelled) - len(train_calls) - len(val_set)
    stats.balance_repeated = len(train_set) - len(train_calls)
    if not train_set:
        raise ValueError(
            f"no training examples: after labelling there are {stats.useful} useful and {stats.noisy} noisy "
            f"calls ({stats.ambiguous_dropped} ambiguous, {stats.undecidable_dropped} undecidable dropped) and "
            "both classes are needed; collect more rows, or use query_source='question' with a weak policy"
        )
    _fill_split_stats(stats, train_set, val_set)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, examples, distinct in (("train", train_set, train_calls), ("val", val_set, val_set)):
        _write_jsonl(out / f"{name}.jsonl", ({"messages": simulator_messages(c, label)} for c, label in examples))
        _write_jsonl(out / f"{name}_calls.jsonl", (_call_record(c, label) for c, label in distinct))
    (out / "stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    return stats


def _fill_split_stats(stats: BuildStats, train_set: Sequence[tuple[SearchCall, str]],
                      val_set: Sequence[tuple[SearchCall, str]]) -> None:
    stats.train, stats.val = len(train_set), len(val_set)
    stats.train_useful = sum(label == USEFUL for _, label in train_set)
    stats.val_useful = sum(label == USEFUL for _, label in val_set)
    stats.train_questions = len({normalize_answer(c.question) for c, _ in train_set})
    stats.val_questions = len({normalize_answer(c.question) for c, _ in val_set})


# =====================================================================================================
# 3. train


def load_sft_examples(path: PathLike) -> list[dict[str, list[dict[str, str]]]]:
    """A ``{"messages": [...]}`` jsonl as TRL prompt-completion examples (the last message is the reply).

    TRL computes the loss on the completion only (``completion_only_loss``): the assistant reply and the
    chat template's end-of-turn tokens after it, never the system or user turns.
    """
    path = Path(path)
    examples = []
    for number, row in enumerate(_read_jsonl(path), start=1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise ValueError(f"{path}, example {number}: expected {{\"messages\": [..., "
                             "{\"role\": \"assistant\", ...}]}} ending with the assistant reply")
        examples.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return examples


def _end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The special token(s) the chat template closes an assistant turn with (e.g. ``<|im_end|>``)."""
    marker = "\u2603zerosearch\u2603"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    suffix = text.split(marker, 1)[1]
    special = set(tokenizer.all_special_ids)
    return [i for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in special]


def _conversation_length(tokenizer: Any, example: dict[str, Any]) -> int:
    text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fitting(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], int]:
    """The examples that fit ``max_length`` tokens (a cut-off reply would teach unfinished documents)."""
    kept = [e for e in examples if _conversation_length(tokenizer, e) <= max_length]
    return kept, len(examples) - len(kept)


def make_sft_trainer(model: Any, tokenizer: Any, train_examples: list[dict[str, Any]],
                     val_examples: list[dict[str, Any]], output_dir: PathLike, *, lr: float = 1e-6,
                     max_steps: int = -1, epochs: float = 1.0, batch_size: int = 2, grad_accum: int = 1,
                     max_length: int = 1024, seed: int = 0, save_steps: int = 200,
                     gradient_checkpointing: bool = False, lora: Any = None, progress: bool = True,
                     bf16: bool | None = None) -> Any:
    """A TRL ``SFTTrainer`` with the loss on the assistant reply only (prompt-completion data).

    ``lora``: a ``peft.LoraConfig`` or None for full fine-tuning. ``max_steps > 0`` wins over ``epochs``.
    ``bf16``: bf16 mixed precision (fp32 master weights, autocast); None = on a CUDA device that supports
    it. On a CPU with bf16 instructions (avx512_bf16, AMX) it also pays: SmolLM2-135M trainer steps on
    the same 12 batches of the simulator-tuning benchmark's data, side by side on a 2-core AMD EPYC,
    took 9.6 s in fp32 and 7.3 s in bf16 (1.3x).
    """
    import torch

    try:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise ImportError(f"simulator training needs TRL ({exc}): pip install 'trl>=1.0'") from exc

    cuda = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
    # transformers 5 renamed gradient_checkpointing (still accepted, with a warning) to activation_checkpointing
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                     else "gradient_checkpointing")
    config = SFTConfig(
        output_dir=str(output_dir), learning_rate=lr, max_steps=max_steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, max_length=max_length, seed=seed, data_seed=seed,
        completion_only_loss=True, **{checkpointing: gradient_checkpointing},
        save_strategy="steps" if save_steps > 0 else "no", save_steps=max(save_steps, 1), save_total_limit=1,
        logging_steps=10, report_to=[], disable_tqdm=not progress, use_cpu=not cuda,
        bf16=(cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16, dataloader_num_workers=0,
    )
    return SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=lora,
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(val_examples) if val_examples else None,
    )


def _last_checkpoint(checkpoints: Path) -> str | None:
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def _save_merged(trainer: Any, tokenizer: Any, out_dir: Path, lora: bool) -> None:
    """Save the trained model (LoRA merged into the base) and tokenizer as a plain HF directory."""
    model = trainer.model.merge_and_unload() if lora else trainer.model
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    # generate (and vLLM) stop at generation_config's EOS: make it include the end of an assistant turn
    model.generation_config.eos_token_id = list(dict.fromkeys(eos_ids + _end_of_turn_ids(tokenizer)))
    model.config.use_cache = True  # the trainer turns the cache off for training; inference wants it
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def train(
    dataset_dir: PathLike,
    base_model: str,
    out_dir: PathLike,
    *,
    lora: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lr: float = 1e-6,
    max_steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 2,
    grad_accum: int = 1,
    max_length: int = 1024,
    seed: int = 0,
    save_steps: int = 200,
    gradient_checkpointing: bool = False,
    device: str = "auto",
    progress: bool = True,
    bf16: bool | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning of a simulator on ``build``'s ``train.jsonl`` (loss on the reply only).

    Defaults follow the paper (lr 1e-6, batch 2, 1000 steps when neither ``max_steps`` nor ``epochs`` is
    given), which suits 3B-14B models; small models and LoRA want a larger ``lr``. Examples longer than
    ``max_length`` tokens are left out (counted). Checkpoints go to ``out_dir/checkpoints`` every
    ``save_steps`` steps; rerunning the same command resumes from the newest, and they are removed once the
    model is saved. The result in ``out_dir`` is a plain Hugging Face model directory (LoRA merged) with
    the tokenizer and chat template, whose generation config stops at the end of an assistant turn, plus
    ``simulator_tuning.json`` (settings and losses), written last. ``bf16``: see :func:`make_sft_trainer`.
    """
    if max_steps is not None and epochs is not None:
        raise ValueError("give max_steps or epochs, not both")
    if max_steps is None and epochs is None:
        max_steps = 1000
    out = Path(out_dir)
    if (out / TUNING_INFO).exists():
        raise FileExistsError(f"{out} already holds a trained simulator; choose another out_dir or delete it")
    started = time.perf_counter()
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.policy import load_causal_lm, load_tokenizer, pick_device, pick_dtype

    torch_device = pick_device(device)
    tokenizer = load_tokenizer(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{base_model} has no chat template; the simulator must be an instruct (chat) model")
    train_path = Path(dataset_dir) / "train.jsonl"
    if not train_path.is_file():
        raise FileNotFoundError(f"{train_path} not found; write the dataset with `tune-simulator build`")
    train_examples, too_long = _fitting(tokenizer, load_sft_examples(train_path), max_length)
    val_path = Path(dataset_dir) / "val.jsonl"
    val_examples = _fitting(tokenizer, load_sft_examples(val_path), max_length)[0] if val_path.exists() else []
    if not train_examples:
        raise ValueError(f"no training example fits max_length={max_length} tokens; raise max_length")
    model = load_causal_lm(base_model, torch_device, pick_dtype("auto", torch_device))
    peft_config = _lora_config(lora_r, lora_alpha) if lora else None
    checkpoints = out / "checkpoints"
    trainer = make_sft_trainer(
        model, tokenizer, train_examples, val_examples, checkpoints, lr=lr,
        max_steps=max_steps if max_steps is not None else -1, epochs=epochs or 1.0, batch_size=batch_size,
        grad_accum=grad_accum, max_length=max_length, seed=seed, save_steps=save_steps,
        gradient_checkpointing=gradient_checkpointing, lora=peft_config, progress=progress, bf16=bf16,
    )
    resume = _last_checkpoint(checkpoints)
    eval_before = trainer.evaluate()["eval_loss"] if val_examples and resume is None else None
    result = trainer.train(resume_from_checkpoint=resume)
    eval_after = trainer.evaluate()["eval_loss"] if val_examples else None
    _save_merged(trainer, tokenizer, out, lora)
    info = _tuning_info(base_model, resolve_model_path(base_model), dataset_dir, trainer, result,
                        train_examples, val_examples, too_long, eval_before, eval_after, started)
    info["settings"] = {"lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lr": lr, "max_steps": max_steps,
                        "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum,
                        "max_length": max_length, "seed": seed, "bf16": trainer.args.bf16}
    (out / TUNING_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return info


def _lora_config(r: int, alpha: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def _tuning_info(base_model: str, base_path: str, dataset_dir: PathLike, trainer: Any, result: Any,
                 train_examples: list, val_examples: list, too_long: int, eval_before: float | None,
                 eval_after: float | None, started: float) -> dict[str, Any]:
    import trl

    return {
        "base_model": base_model, "base_model_path": base_path, "dataset": str(dataset_dir),
        "train_examples": len(train_examples), "val_examples": len(val_examples),
        "too_long_dropped": too_long, "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "eval_loss_before": eval_before, "eval_loss_after": eval_after,
        "seconds": time.perf_counter() - started, "trl_version": trl.__version__,
    }


# =====================================================================================================
# 4. evaluate

READER_SYSTEM = (  # FlashRAG's naive-generation RAG prompt
    "Answer the question based on the given document. Only give me the answer and do not output any other "
    "words.\nThe following are given documents.\n\n{documents}"
)
READER_USER = "Question: {question}"


@dataclass(frozen=True)
class SimulatorSpec:
    """A simulator to evaluate: a ``simulated:...`` engine spec, its prompt mode and a label for tables."""

    spec: str
    mode: str
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.spec} ({self.mode})"


def parse_simulator_spec(text: str) -> SimulatorSpec:
    """``[LABEL=]MODE:simulated:TARGET``, e.g. ``tuned=finetuned:simulated:runs/sim`` or
    ``prompt:simulated:http://127.0.0.1:8001/v1``."""
    from zerosearch.search.simulated import MODES

    label = ""
    head, sep, rest = text.partition("=")
    if sep and ":" not in head and "/" not in head:
        label, text = head, rest
    mode, _, spec = text.partition(":")
    if mode not in MODES or not spec.startswith("simulated:"):
        raise ValueError(
            f"bad simulator {text!r}: expected [LABEL=]MODE:simulated:MODEL_OR_URL with MODE one of "
            f"{sorted(MODES)}, e.g. tuned=finetuned:simulated:runs/simulator"
        )
    return SimulatorSpec(spec=spec, mode=mode, label=label)


@dataclass(frozen=True)
class EvalItem:
    """One evaluation search: the query, and the question and answers the simulator is told."""

    question: str
    golden_answers: tuple[str, ...]
    query: str


def eval_items(qa_files: Sequence[PathLike] | PathLike | None = None, calls_file: PathLike | None = None,
               limit: int | None = None) -> list[EvalItem]:
    """Items from QA files (query = the question) or from ``build``'s ``*_calls.jsonl`` (their queries)."""
    if (qa_files is None) == (calls_file is None):
        raise ValueError("give QA files (the question is the query) or a calls file (build's val_calls.jsonl)")
    if calls_file is not None:
        items = [EvalItem(r["question"], tuple(r["golden_answers"]), r["query"]) for r in _read_jsonl(Path(calls_file))]
    else:
        items = [EvalItem(r.question, r.golden_answers, r.question) for r in load_qa_files(qa_files)]  # type: ignore[arg-type]
    return items[: limit if limit is not None else None]


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def format_stats(results: Sequence[SearchResult], topk: int, word_range: tuple[int, int]) -> dict[str, Any]:
    """Format of document sets: parsed at all, exactly ``topk`` documents, words per document, repeats.

    ``valid`` is the share of sets with exactly ``topk`` documents, each within ``word_range`` words.
    ``no_repeats`` is the share of parsed sets whose documents' texts all differ (after answer
    normalisation): a real engine never returns one passage twice, while a small simulator decoding
    greedily often writes its first document again.
    """
    low, high = word_range
    counts = [[len(d.text.split()) for d in r.documents] for r in results]
    all_counts = [n for c in counts for n in c]
    texts = [[normalize_answer(d.text) for d in r.documents] for r in results if r.ok and r.documents]
    return {
        "parsed": _share([r.ok and bool(r.documents) for r in results]),
        "exact_topk": _share([len(c) == topk for c in counts]),
        "words_per_doc": sum(all_counts) / len(all_counts) if all_counts else None,
        "docs_in_range": _share([low <= n <= high for n in all_counts]),
        "valid": _share([len(c) == topk and all(low <= n <= high for n in c) for c in counts]),
        "no_repeats": _share([len(set(t)) == len(t) for t in texts]),
    }


def containment(items: Sequence[EvalItem], results: Sequence[SearchResult]) -> dict[str, Any]:
    """Share of document sets containing a gold answer, over the items containment can judge.

    A failed or empty result counts as not containing; ``contains_share`` is over judged items only
    (yes/no questions are left out), ``parsed_clean_share`` is the share of judged items whose result
    parsed *and* holds no gold answer (the noisy-mode figure: a failure is not a clean noisy set).
    """
    judged = [(contains_answer(r.documents, item.golden_answers), r) for item, r in zip(items, results)]
    judged = [(c, r) for c, r in judged if c is not None]
    return {
        "judged": len(judged),
        "contains_share": _share([bool(c) and r.ok for c, r in judged]),
        "parsed_clean_share": _share([not c and r.ok and bool(r.documents) for c, r in judged]),
    }


class Reader:
    """A fixed reader: answers a question from documents with a RAG prompt, greedy (the downstream figure)."""

    def __init__(self, chat_model: Any, max_tokens: int = 24) -> None:
        self.chat_model = chat_model
        self.max_tokens = max_tokens

    @staticmethod
    def conversation(question: str, documents: Sequence[Document]) -> list[dict[str, str]]:
        return [{"role": "system", "content": READER_SYSTEM.format(documents=render_documents(documents))},
                {"role": "user", "content": READER_USER.format(question=question)}]

    @staticmethod
    def prediction(text: str) -> str:
        """The answer in a reply: an ``<answer>`` block if any, else its first non-empty line."""
        tagged = extract_answer(text)
        if tagged is not None:
            return tagged
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        answer = lines[0] if lines else ""
        return answer[len("answer:"):].strip() if answer.lower().startswith("answer:") else answer

    def scores(self, items: Sequence[EvalItem], results: Sequence[SearchResult]) -> tuple[dict[str, float], list[str]]:
        """Mean EM / F1 / cover EM of the reader over all items, and its predictions."""
        conversations = [self.conversation(i.question, r.documents) for i, r in zip(items, results)]
        replies = self.chat_model.complete(conversations, max_tokens=self.max_tokens, temperature=0.0)
        predictions = [self.prediction(c.text) if c.ok else "" for c in replies]
        metrics = [answer_metrics(p, i.golden_answers) for p, i in zip(predictions, items)]
        means = {k: sum(m[k] for m in metrics) / len(metrics) for k in ("em", "f1", "cover_em")} if metrics else {}
        return means, predictions


def _search_all(engine: SearchEngine, items: Sequence[EvalItem], noisy: bool, topk: int, batch_size: int,
                desc: str, progress: bool) -> list[SearchResult]:
    requests = [SearchRequest(query=i.query, question=i.question, golden_answers=i.golden_answers, noisy=noisy)
                for i in items]
    results: list[SearchResult] = []
    with _progress(len(requests), desc, progress) as bar:
        for start in range(0, len(requests), batch_size):
            results.extend(engine.search(requests[start : start + batch_size], topk))
            bar.update(min(batch_size, len(requests) - start))
    return results


def _default_reader(simulators: Sequence[SimulatorSpec]) -> str:
    """The base model of the first in-process simulator (a tuned one records its base)."""
    for sim in simulators:
        target = sim.spec.partition(":")[2]
        if target.startswith(("http://", "https://")):
            continue
        from zerosearch.llm.models import resolve_model_path

        info = Path(resolve_model_path(target)) / TUNING_INFO
        return json.loads(info.read_text(encoding="utf-8"))["base_model"] if info.is_file() else target
    raise ValueError("no in-process simulator to take the reader from; pass reader_model")


def _simulator_engine(sim: SimulatorSpec, *, max_tokens: int, temperature: float, batch_size: int,
                      seed: int, device: str) -> SearchEngine:
    from zerosearch.search.factory import build_engine

    options: dict[str, Any] = {"mode": sim.mode, "max_tokens": max_tokens, "temperature": temperature}
    if not sim.spec.partition(":")[2].startswith(("http://", "https://")):
        options.update(max_batch_size=batch_size, seed=seed, device=device)
    return build_engine(sim.spec, **options)


def _sample_rows(name: str, mode: str, items: Sequence[EvalItem], results: Sequence[SearchResult],
                 predictions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"engine": name, "mode": mode, "question": i.question, "golden_answers": list(i.golden_answers),
             "query": i.query, "error": r.error, "documents": [_doc_dict(d) for d in r.documents],
             "reader_prediction": p} for i, r, p in zip(items, results, predictions)]


def evaluate(
    simulators: Sequence[SimulatorSpec | str],
    real_engine: str | SearchEngine | None,
    out_dir: PathLike,
    *,
    qa_files: Sequence[PathLike] | PathLike | None = None,
    calls_file: PathLike | None = None,
    limit: int | None = 50,
    topk: int = 5,
    reader_model: str | None = None,
    max_tokens: int = 600,
    temperature: float = 0.0,
    batch_size: int = 8,
    word_range: tuple[int, int] = (15, 60),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Compare simulators with each other and with a real engine on held-apart questions.

    For every item each simulator writes ``topk`` documents in useful and in noisy mode. Measured:
    useful-mode sets containing a gold answer, noisy-mode sets parsed and free of one (both over the
    items containment can judge), the format (:func:`format_stats`), and a fixed reader's EM/F1/cover EM
    answering from the useful-mode documents. The real engine is the reference
    row: its containment, format and reader scores from its own documents.

    Args:
        simulators: :class:`SimulatorSpec` or ``[LABEL=]MODE:simulated:MODEL_OR_URL`` strings.
        real_engine: the reference engine (spec or object), or None to leave that row out.
        qa_files / calls_file: the held-apart items (see :func:`eval_items`).
        reader_model: the reader (default: the first in-process simulator's base model).
        max_tokens, temperature: simulator generation (default greedy, for reproducible comparisons).

    Writes ``results.json``, ``results.md`` (the table) and ``samples.jsonl`` (every document set and reader
    prediction) to ``out_dir``; returns the results.
    """
    started = time.perf_counter()
    sims = [parse_simulator_spec(s) if isinstance(s, str) else s for s in simulators]
    items = eval_items(qa_files, calls_file, limit)
    if not items:
        raise ValueError("no evaluation items")
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.llm.transformers_backend import TransformersChatModel

    reader_name = reader_model or _default_reader(sims)
    reader = Reader(TransformersChatModel(resolve_model_path(reader_name), max_batch_size=batch_size, device=device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    if real_engine is not None:
        rows.append(_evaluate_real(real_engine, items, reader, topk, batch_size, word_range, progress, samples))
    for sim in sims:
        engine = _simulator_engine(sim, max_tokens=max_tokens, temperature=temperature, batch_size=batch_size,
                                   seed=seed, device=device)
        rows.append(_evaluate_simulator(sim, engine, items, reader, topk, batch_size, word_range, progress, samples))
        del engine
        gc.collect()
    results = {
        "items": len(items), "topk": topk, "word_range": list(word_range), "reader": reader_name,
        "simulator_max_tokens": max_tokens, "simulator_temperature": temperature,
        "source": str(calls_file) if calls_file is not None else "questions",
        "engines": rows, "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(results_table(results) + "\n", encoding="utf-8")
    _write_jsonl(out / "samples.jsonl", samples)
    return results


def _evaluate_real(engine: str | SearchEngine, items: Sequence[EvalItem], reader: Reader, topk: int,
                   batch_size: int, word_range: tuple[int, int], progress: bool,
                   samples: list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(engine, str):
        from zerosearch.search.factory import build_engine

        spec, engine = engine, build_engine(engine)
    else:
        spec = engine.name
    results = _search_all(engine, items, False, topk, batch_size, "real engine", progress)
    reader_scores, predictions = reader.scores(items, results)
    samples.extend(_sample_rows(f"real: {spec}", "real", items, results, predictions))
    return {"name": f"real: {spec}", "kind": "real", "spec": spec,
            "useful": {**containment(items, results), **format_stats(results, topk, word_range),
                       "reader": reader_scores},
            "noisy": None}


def _evaluate_simulator(sim: SimulatorSpec, engine: SearchEngine, items: Sequence[EvalItem], reader: Reader,
                        topk: int, batch_size: int, word_range: tuple[int, int], progress: bool,
                        samples: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": sim.name, "kind": "simulated", "spec": sim.spec, "mode": sim.mode}
    for label, noisy in ((USEFUL, False), (NOISY, True)):
        results = _search_all(engine, items, noisy, topk, batch_size, f"{sim.name} {label}", progress)
        row[label] = {**containment(items, results), **format_stats(results, topk, word_range)}
        predictions = [""] * len(items)
        if not noisy:  # the reader reads what the policy is meant to learn from: useful documents
            row[label]["reader"], predictions = reader.scores(items, results)
        samples.extend(_sample_rows(sim.name, label, items, results, predictions))
    return row


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def results_table(results: dict[str, Any]) -> str:
    """The evaluation as a markdown table (percentages; the real engine has no noisy mode)."""
    low, high = results["word_range"]
    header = ("| engine | useful: has answer | noisy: parsed, no answer | parsed | exactly "
              f"{results['topk']} docs | words/doc | docs {low}-{high} words | valid sets | sets without repeats "
              "| reader EM | reader F1 | reader cover EM |")
    lines = [header, "|" + "---|" * 12]
    for row in results["engines"]:
        useful, noisy = row["useful"], row["noisy"]
        words = useful["words_per_doc"]
        lines.append(
            f"| {row['name']} | {_pct(useful['contains_share'])} | "
            f"{_pct(noisy['parsed_clean_share']) if noisy else 'n/a'} | {_pct(useful['parsed'])} | "
            f"{_pct(useful['exact_topk'])} | {'n/a' if words is None else f'{words:.1f}'} | "
            f"{_pct(useful['docs_in_range'])} | {_pct(useful['valid'])} | {_pct(useful.get('no_repeats'))} | "
            f"{_pct(useful['reader'].get('em'))} | "
            f"{_pct(useful['reader'].get('f1'))} | {_pct(useful['reader'].get('cover_em'))} |"
        )
    judged = results["engines"][0]["useful"]["judged"] if results["engines"] else 0
    lines.append("")
    lines.append(f"{results['items']} items ({judged} judged by answer containment; yes/no answers are not), "
                 f"top-{results['topk']}, reader {results['reader']}; format columns are useful mode.")
    return "\n".join(lines)
