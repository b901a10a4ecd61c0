"""Stage 1 of simulator tuning: collect.

:func:`collect` runs a policy against a *real* engine (:class:`~zerosearch.rollout.RolloutRunner`) over QA
rows and appends one JSON line per row to a jsonl file: the row, the trajectory's outcome and every search
call it made (query + the documents the engine returned). Resumable. With ``query_source="question"`` it
instead issues one search per row with the question itself as the query (for a weak policy), plus one per
sub-query read from the rows at ``extra_query_field``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosearch.config import GREEDY_ROLLOUT, RolloutSettings
from zerosearch.data import QARow, load_qa_files, policy_prompt
from zerosearch.llm.models import check_model_spec
from zerosearch.rewards import answer_metrics, extract_answer
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.simulator_tuning.records import QUERY_SOURCES, PathLike, _doc_dict, _progress, _read_jsonl

__all__ = [
    "CollectSummary",
    "check_settings",
    "collect",
    "collect_settings",
    "done_row_ids",
]


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


def _row_record(row: QARow, source: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"row_id": row.id, "question": row.question, "golden_answers": list(row.golden_answers),
            "query_source": source, "settings": settings}


# The settings that shape a collected row, and the option that sets each (what a mismatch is reported as).
# Left out on purpose: --data and --limit (a rerun may add rows), --batch-size, --device, --no-progress.
SETTING_OPTIONS = {
    "query_source": "--query-source", "extra_query_field": "--extra-queries", "engine": "--engine",
    "topk": "--topk", "policy": "--policy", "max_turns": "--max-turns", "temperature": "--temperature",
    "max_turn_tokens": "--max-turn-tokens", "policy_template": "--prompt-template", "doc_format": "--doc-format",
    "seed": "--seed",
}


_POLICY_ONLY = ("policy", "max_turns", "temperature", "max_turn_tokens", "policy_template", "doc_format", "seed")


def collect_settings(query_source: str, engine: str | SearchEngine, rollout: RolloutSettings = GREEDY_ROLLOUT, *,
                     extra_query_field: str | None = None, policy_model: str | None = None,
                     policy_template: str | None = None, seed: int = 0) -> dict[str, Any]:
    """What a collected row depends on, stored in each row so that a resume with other settings is refused.

    Question mode runs no policy, so the policy's settings are None there (changing them changes nothing).
    """
    settings: dict[str, Any] = {
        "query_source": query_source, "extra_query_field": extra_query_field or None,
        "engine": engine if isinstance(engine, str) else engine.name, "topk": rollout.topk,
    }
    policy = query_source == "policy"
    template = (hashlib.sha256(policy_template.encode("utf-8")).hexdigest()[:12]
                if policy and policy_template is not None else None)  # the text is long: its digest
    settings.update(
        policy=policy_model if policy else None, max_turns=rollout.max_turns if policy else None,
        temperature=rollout.temperature if policy else None,
        max_turn_tokens=rollout.max_turn_tokens if policy else None, policy_template=template,
        doc_format=rollout.doc_format if policy else None, seed=seed if policy else None,
    )
    return settings


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "the default" if key == "policy_template" else "none"
    return f"template {value}" if key == "policy_template" else str(value)


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to append rows collected with other settings than the rows already in ``path``.

    Rows written before settings were recorded carry only their ``query_source``, which is compared.
    """
    if not path.exists():
        return
    for row in _read_jsonl(path):
        old = row.get("settings") or {"query_source": row.get("query_source", "policy")}
        changed = [k for k in SETTING_OPTIONS if k in old and old[k] != settings.get(k)]
        if "query_source" in changed:  # then the policy's settings differ too, as a matter of course
            changed = [k for k in changed if k not in _POLICY_ONLY]
        if changed:
            details = "; ".join(f"{SETTING_OPTIONS[k]}: {_shown(k, old[k])} there, {_shown(k, settings.get(k))} now"
                                for k in changed)
            raise ValueError(
                f"{path} holds rows collected with other settings ({details}); rerun with the settings it was "
                "made with to add to it, or pass another --out"
            )


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
                      settings: dict[str, Any], extra_query_field: str | None = None) -> list[dict[str, Any]]:
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
        record = _row_record(row, "question", settings)
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
    settings: dict[str, Any]  # what each row records it was collected with (collect_settings)

    def records(self, rows: Sequence[QARow], summary: CollectSummary) -> list[dict[str, Any]]:
        from zerosearch.policy import encode_prompt
        from zerosearch.rollout import SEARCH_FAILED, Trajectory

        trajectories = [
            Trajectory(question=r.question, golden_answers=r.golden_answers,
                       prompt_ids=encode_prompt(self.tokenizer, policy_prompt(r.question, self.template), self.chat))
            for r in rows
        ]
        self.runner.run(trajectories)  # a real engine: no curriculum, nothing drawn (noisy logs null)
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
        record = _row_record(row, "policy", self.settings)
        record.update(status=traj.status, prediction=prediction, scores=scores,
                      correct=scores["cover_em"] == 1.0, searches=searches)
        return record


def _policy_runner(policy_model: str, engine: SearchEngine, rollout: RolloutSettings, *, template: str | None,
                   device: str, recorded: dict[str, Any]) -> _PolicyRunner:
    from zerosearch.policy import load_policy
    from zerosearch.rollout import RolloutRunner

    policy = load_policy(policy_model, device=device)
    recording = _RecordingEngine(engine)
    runner = RolloutRunner(policy.model, policy.tokenizer, recording, rollout, policy.device)
    return _PolicyRunner(runner, recording, policy.tokenizer, policy.chat, template, recorded)


def _check_arguments(policy_model: str | None, query_source: str, extra_query_field: str | None,
                     limit: int | None, batch_size: int, rollout: RolloutSettings) -> None:
    """Arguments collect cannot run with (the CLI names its options before it calls; these are the API's)."""
    if query_source not in QUERY_SOURCES:
        raise ValueError(f"query_source must be one of {QUERY_SOURCES}, got {query_source!r}")
    if query_source == "policy" and not policy_model:
        raise ValueError("query_source='policy' needs a policy model; or use query_source='question'")
    if query_source == "policy":
        check_model_spec(policy_model)  # before --out's folder is made: a wrong model leaves nothing behind
    if limit is not None and limit < 1:  # a slice would read -1 as "all but the last" and 0 as "none"
        raise ValueError(f"limit must be >= 1 or None (all rows), got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if query_source == "policy" and rollout.max_turns < 1:  # the range itself is RolloutSettings' own check
        raise ValueError("collecting records a policy's searches, but rollout.max_turns=0 allows none; give "
                         "max_turns >= 1")
    if extra_query_field and query_source != "question":
        raise ValueError("extra_query_field works with query_source='question' only (a policy writes its own)")


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
    rollout: RolloutSettings = GREEDY_ROLLOUT,
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
    written (the next run retries them). Each line also holds the ``settings`` it was collected with
    (:func:`collect_settings`); appending to a file made with other settings is refused (ValueError).

    Args:
        policy_model: the policy (path, hub id, ``zerosearch:*``); unused for ``query_source="question"``.
        engine: a real engine or its spec (``bm25:FILE``, ``http://.../retrieve``, ``google``, ...).
        qa_files: QA files (any layout :func:`~zerosearch.data.load_qa_files` reads).
        query_source: ``"policy"`` (the paper: the policy's own searches, labelled by its outcome) or
            ``"question"`` (one search per row with the question as the query; for weak policies).
        extra_query_field: with ``query_source="question"``, a field of the rows (dotted, e.g.
            ``metadata.supporting_titles`` in HotpotQA) holding more queries, a string or a list: each is
            searched too, standing in for the sub-queries a capable policy would issue for a multi-hop question.
        limit: use only the first ``limit`` rows of the files (>= 1; None: all).
        batch_size: rows per rollout batch (and per engine call).
        rollout: the policy's turn settings (:class:`~zerosearch.config.RolloutSettings`; by default
            :data:`~zerosearch.config.GREEDY_ROLLOUT`, the paper's 2 turns, 5 documents and 500 tokens per turn,
            greedy); its ``topk`` applies to question mode too.
        policy_template: the policy prompt template *text* (``{question}``); default the built-in one.
        seed: torch seed for a sampling policy.
    """
    _check_arguments(policy_model, query_source, extra_query_field, limit, batch_size, rollout)
    started = time.perf_counter()
    settings = collect_settings(query_source, engine, rollout, extra_query_field=extra_query_field,
                                policy_model=policy_model, policy_template=policy_template, seed=seed)
    rows = load_qa_files(qa_files)[:limit]
    _unique_ids(rows)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = done_row_ids(out_path)
    check_settings(out_path, settings)
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
        policy = _policy_runner(policy_model, engine, rollout, template=policy_template,  # type: ignore[arg-type]
                                device=device, recorded=settings)
    with out_path.open("a", encoding="utf-8") as handle, _progress(len(todo), "collect", progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            records = (policy.records(batch, summary) if policy is not None
                       else _question_records(engine, batch, rollout.topk, summary, settings, extra_query_field))
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.written += 1
                summary.search_calls += len(record["searches"])
                summary.correct += bool(record["correct"])
            handle.flush()
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary
