"""Stage 2 of simulator tuning: build.

:func:`build` reads collect's jsonl files, cuts documents to search-snippet length, labels every search call
useful or noisy (the rules are in the package docstring), drops what the rule cannot decide, removes
duplicates, splits by question and balances the classes, then writes chat-format SFT data to a directory:
``train.jsonl`` / ``val.jsonl``, ``train_calls.jsonl`` / ``val_calls.jsonl`` and ``stats.json``.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from zerosearch.rewards import normalize_answer
from zerosearch.search.base import Document, SearchRequest
from zerosearch.search.documents import render_documents
from zerosearch.search.simulated import SimulatorPrompts
from zerosearch.simulator_tuning.records import (
    CORRECT_METRICS,
    NOISY,
    USEFUL,
    PathLike,
    _doc_dict,
    _doc_from_dict,
    _read_jsonl,
    _write_jsonl,
    contains_answer,
    snippet,
)

__all__ = [
    "BALANCE_MODES",
    "BuildStats",
    "SearchCall",
    "balance",
    "build",
    "dedupe",
    "label_call",
    "read_collected",
    "search_calls",
    "simulator_messages",
    "split_by_question",
]


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
    """``"useful"``, ``"noisy"`` or None (ambiguous or undecidable); the rules are in the package docstring."""
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
def _finetuned_prompts() -> SimulatorPrompts:
    """The finetuned mode's prompts (the ones the engine sends a tuned simulator), read once."""
    return SimulatorPrompts("finetuned")


def simulator_messages(call: SearchCall, label: str) -> list[dict[str, str]]:
    """The training conversation: the finetuned-mode prompt the engine sends, then the real documents.

    The target is written ``Doc 1: text`` (the ``zerosearch`` rendering), as the original simulators
    write; whatever a simulator writes is parsed and re-rendered in the policy's ``doc_format``.
    """
    request = SearchRequest(query=call.query, question=call.question, golden_answers=call.golden_answers,
                            noisy=label == NOISY)
    target = render_documents(call.documents, "zerosearch")
    return [*_finetuned_prompts().conversation_for(request), {"role": "assistant", "content": target}]


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
            "both classes are needed; collect more rows, or (with a weak policy) collect with --query-source "
            "question --extra-queries FIELD, whose sub-queries give both classes"
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
