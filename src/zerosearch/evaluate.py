"""Evaluate a policy, or a baseline with the same model, on QA files: EM, cover-EM, F1, search behaviour.

Methods (all greedy, temperature 0, batched; see *Sampling* below for K sampled answers beside the greedy one):

* ``agent``: the training protocol (``<think>`` / ``<search>`` / ``<information>`` / ``<answer>``) run
  by :class:`~zerosearch.rollout.RolloutRunner` against a real engine, with the policy prompt
  (``prompts/policy.txt``) and up to ``max_turns`` searches before the forced answer turn.
* ``direct``: answer at once (``prompts/eval_direct.txt``).
* ``cot``: reason step by step inside ``<think>``, then answer (``prompts/eval_cot.txt``).
* ``rag``: retrieve the top-k documents for the question, put them before the question, then answer
  (``prompts/eval_rag.txt``; documents rendered ``Doc i(Title: …) text`` as FlashRAG and Search-R1 do).

The baselines are one forced-answer turn of the same runner (``max_turns=0``): the same model object,
the same prompt encoding (chat template for instruct models, raw text for base models), generation
stopping at ``</answer>``, and the same token accounting as the agent.

Scoring, the same for every method: the prediction is the last ``<answer>…</answer>`` of the generated
text (:func:`~zerosearch.rewards.extract_answer`); a reply without one scores 0 on every metric, as a
missing answer does for the agent in the paper (no fallback to the raw text: that would reward the
baselines for ignoring the format the agent is held to). ``answered`` reports how often the format was
followed. ``em`` is the paper's exact match; ``cover_em`` what the original code computed under the
name EM; ``f1`` the training reward.

The gold answers are used for scoring only: the engine is never told them (a simulated engine, which
writes documents from the answer, is refused).

Sampling (``samples=K``, ``zerosearch eval --samples K``): besides the greedy answer, K answers per question
are sampled at ``temperature`` (default 1.0, the training temperature) through the same method, loop and
scoring, to measure how much room RL has (pass@K against greedy EM). The K rows of a question are batched
together, so its prompt is prefilled once (:func:`zerosearch.shared_prefix.shared_prefill`); a batch holds
``batch_size // K`` questions (at least one). Each row has its own seed, derived from ``seed``, the dataset,
the question's id and the sample's index (:mod:`zerosearch.llm.seeded_sampling`): the samples do not depend
on the batching, so a resumed evaluation draws the same samples as an uninterrupted one. The checkpoint's
``generation_config`` (top_k, top_p...) never applies (:func:`zerosearch.llm.sampling.plain_generation`).
Each record keeps every sample (``samples``: prediction, scores, status, searches and turns) and
``correct_samples``, the number right by EM (:func:`read_sample_counts` reads them back). The summary adds
pass@K (any sample right by EM), mean@K (the mean EM of a sample), the mean F1 of a sample, pass@k for the
powers of two k < K (the unbiased estimator of Chen et al. 2021, :func:`zerosearch.stats.pass_at_k`) and the
share of questions with mixed outcomes (0 < right < K). Without samples nothing of this is written.

Engine failures are never scored as something else: an example whose search failed is recorded with
status ``search_failed``, scores 0, is counted in ``search_failures``, and is run again on resume.

Output directory::

    eval_config.json         model, method, engine, generation settings and, when sampled, ``sampling``
                             (samples, temperature, seed): a resume must match them
    examples/<dataset>.jsonl one record per question: golds, prediction, scores, every turn with its
                             query and documents (resumable: finished ids are not re-run)
    results.json             per-dataset and average metrics (fractions in [0, 1])
    results.md               the same as a markdown table (percentages), datasets as columns

Determinism: greedy decoding on the same hardware gives the same outputs for the same batches. Batch
composition changes the left padding and therefore, very slightly, the numerics: a resumed run
batches the remaining questions differently and may, rarely, differ from an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from zerosearch.config import flat_keys
from zerosearch.data import QARow
from zerosearch.eval_files import CONFIG_FILE, EXAMPLES_DIR, RESULTS_JSON, RESULTS_MD, read_examples
from zerosearch.eval_settings import (
    MAX_DEFAULT_CONTEXT, METHODS, NEEDS_ENGINE, DataSelection, EvalSettings, EvalSpec, SamplingSettings, default_topk,
    paper_source_name, select_rows, split_datasets,
)
from zerosearch.jsonio import json_safe
from zerosearch.llm.models import check_model_spec
from zerosearch.prompts import load_template, render
from zerosearch.rewards import answer_metrics, extract_answer
from zerosearch.rollout import ANSWERED, SEARCH_FAILED, RolloutRunner, Trajectory, Turn
from zerosearch.search.base import Document, SearchEngine, SearchRequest
from zerosearch.search.documents import render_documents
from zerosearch.stats import pass_at_k

__all__ = [
    "METHODS",
    "Answerer",
    "DataSelection",
    "EvalSettings",
    "EvalSpec",
    "SampleCount",
    "SamplingSettings",
    "average_over_datasets",
    "default_output_dir",
    "default_topk",
    "evaluate",
    "format_results_table",
    "paper_source_name",
    "read_examples",
    "read_sample_counts",
    "score_response",
    "select_rows",
    "split_datasets",
    "summarize",
]

# (key in a summary, row label, scale for display, decimals, summed over datasets instead of averaged)
_TABLE_ROWS: tuple[tuple[str, str, float, int, bool], ...] = (
    ("em", "EM (exact match, %)", 100.0, 2, False),
    ("cover_em", "cover-EM (gold in prediction, %)", 100.0, 2, False),
    ("f1", "F1 (%)", 100.0, 2, False),
    ("answered_rate", "answered (%)", 100.0, 1, False),
    ("searches_per_question", "searches / question", 1.0, 2, False),
    ("turns_per_question", "turns / question", 1.0, 2, False),
    ("invalid_action_rate", "invalid actions (% of turns)", 100.0, 1, False),
    ("response_tokens", "response tokens", 1.0, 1, False),
    ("seconds_per_question", "seconds / question", 1.0, 2, False),
    ("search_failures", "search failures", 1.0, 0, True),
    ("n", "questions", 1.0, 0, True),
)


def default_output_dir(model: str, method: str) -> Path:
    """``runs/eval-<model>-<method>-<YYYYmmdd-HHMMSS>`` (the model name reduced to a safe slug)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/")).name or model).strip("-") or "model"
    return Path("runs") / f"eval-{slug}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---------------------------------------------------------------------------------------------
# Answering questions


def _question_text(question: str) -> str:
    """The question as the prompts show it: stripped, ``?`` appended if missing (as the original)."""
    question = question.strip()
    if not question:
        raise ValueError("cannot answer an empty question")
    return question if question.endswith("?") else question + "?"


def _document_text(doc: Document) -> str:
    return doc.text if not doc.title else f"({doc.title}) {doc.text}"


class Answerer:
    """A loaded model (and engine) that answers batches of questions by one method, greedily
    (:meth:`answer`) or sampled (:meth:`sample`).

    Args:
        model: a model path, hub id or built-in name (``zerosearch:tiny``, ...).
        engine: the search engine (agent and rag); ``None`` for direct and cot.
        settings: the method and generation settings; those the model decides (:meth:`EvalSettings.resolved`)
            are filled in here (a ``topk`` left None is then 3: give the engine's, as :func:`evaluate` does).
        device, dtype: ``auto`` or a torch device / dtype name.
    """

    def __init__(self, model: str, engine: SearchEngine | None, settings: EvalSettings,
                 device: str = "auto", dtype: str = "auto") -> None:
        from zerosearch.policy import load_policy

        if settings.method in NEEDS_ENGINE and engine is None:
            raise ValueError(f"method {settings.method!r} needs a search engine (--engine SPEC)")
        if engine is not None and getattr(engine, "name", "") == "simulated":
            raise ValueError("a simulated engine writes its documents from the gold answer, which an evaluation "
                             "must not reveal; evaluate with a real engine (example, bm25:FILE, http://..., google)")
        self.settings = settings = settings.resolved(model)
        self.engine = engine
        self.template = load_template(settings.template_name)
        policy = load_policy(model, device=device, dtype=dtype, autocast=settings.autocast,
                             prompt_style=settings.prompt_style)
        self.device, self.tokenizer, self.chat, self.model = policy.device, policy.tokenizer, policy.chat, policy.model
        self.model.eval()
        context = settings.max_context_tokens or min(
            MAX_DEFAULT_CONTEXT, getattr(self.model.config, "max_position_embeddings", MAX_DEFAULT_CONTEXT))
        self.runner = RolloutRunner(self.model, self.tokenizer, engine, settings.rollout(context), self.device,
                                    autocast=policy.autocast)
        self._samplers: dict[float, RolloutRunner] = {}

    def answer(self, questions: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, Any]]:
        """Answer ``(question, golden answers)`` pairs; one scored record each (see :func:`_record`).

        The gold answers are used for scoring only; neither the model nor the engine sees them.
        """
        if not questions:
            return []
        start = time.perf_counter()
        trajectories, retrievals = self._prepare([q for q, _ in questions])
        active = [t for t in trajectories if t.status is None]
        if active:
            self.runner.run(active)  # a real engine: no curriculum, so nothing is drawn and noisy logs null
        seconds = (time.perf_counter() - start) / len(questions)
        return [_record(t, r, tuple(golds), self.settings.method, seconds)
                for t, r, (_, golds) in zip(trajectories, retrievals, questions)]

    def sample(self, questions: Sequence[tuple[str, Sequence[str]]], seeds: Sequence[Sequence[int]],
               temperature: float = 1.0) -> list[list[dict[str, Any]]]:
        """``len(seeds[i])`` answers to question ``i`` sampled at ``temperature``, row ``j`` with seed
        ``seeds[i][j]``; the scored records per question (:func:`_record` without the question, the golds,
        the method and the response text, which the turns hold).

        Every row runs in one batch (the caller sizes it), a question's rows side by side: they share the
        prompt's prefill at the first turn. A rag question retrieves once for all its samples.
        """
        if len(seeds) != len(questions):
            raise ValueError(f"{len(seeds)} seed lists for {len(questions)} questions")
        if not questions:
            return []
        start = time.perf_counter()
        trajectories, retrievals = self._prepare([q for q, _ in questions])
        groups = [[Trajectory(t.question, (), list(t.prompt_ids), status=t.status, sample_seed=seed)
                   for seed in row_seeds] for t, row_seeds in zip(trajectories, seeds)]
        active = [t for group in groups for t in group if t.status is None]
        if active:
            self._sampler(temperature).run(active)  # a real engine: nothing drawn, noisy logs null
        seconds = (time.perf_counter() - start) / max(1, sum(len(g) for g in groups))
        return [[_sample_record(t, r, tuple(golds), self.settings.method, seconds) for t in group]
                for group, r, (_, golds) in zip(groups, retrievals, questions)]

    def _sampler(self, temperature: float) -> RolloutRunner:
        """The greedy runner's settings at ``temperature``, every row in one generate call per turn (the caller
        sizes the batch), so that the turn cache carries and a question's rows share its prefill."""
        if temperature not in self._samplers:
            greedy = self.runner
            self._samplers[temperature] = RolloutRunner(
                greedy.model, greedy.tokenizer, greedy.engine,
                replace(greedy.settings, temperature=temperature, batch_size=0), greedy.device,
                autocast=greedy.autocast)
        return self._samplers[temperature]

    def _encode(self, prompt: str) -> list[int]:
        from zerosearch.policy import encode_prompt

        return encode_prompt(self.tokenizer, prompt, self.chat)

    def _prepare(self, questions: list[str]) -> tuple[list[Trajectory], list[Turn | None]]:
        """A trajectory per question (already finished when the rag retrieval failed) and its retrieval."""
        texts = [_question_text(q) for q in questions]
        if self.settings.method != "rag":
            prompts = [render(self.template, question=text) for text in texts]
            return [Trajectory(q, (), self._encode(p)) for q, p in zip(questions, prompts)], [None] * len(texts)
        requests = [SearchRequest(query=q.strip(), question=q) for q in questions]
        results = self.engine.search(requests, self.settings.topk)
        if len(results) != len(requests):
            raise RuntimeError(
                f"engine {self.engine.name!r} returned {len(results)} results for {len(requests)} requests")
        trajectories, retrievals = [], []
        for question, text, request, result in zip(questions, texts, requests, results):
            docs = list(result.documents[: self.settings.topk])
            turn = Turn(action="retrieve", text="", n_tokens=0, query=request.query,
                        documents=[_document_text(d) for d in docs], error=result.error)
            prompt_ids = [] if not result.ok else self._encode(
                render(self.template, question=text, documents=render_documents(docs, self.settings.doc_format)))
            traj = Trajectory(question, (), prompt_ids)
            if not result.ok:
                traj.status = SEARCH_FAILED
            trajectories.append(traj)
            retrievals.append(turn)
        return trajectories, retrievals


def score_response(text: str | None, golden_answers: Sequence[str]) -> tuple[str | None, dict[str, float]]:
    """The prediction in generated ``text`` (its last ``<answer>`` block) and its EM, cover-EM and F1.

    ``None`` text (no answer, or a failed search) and text without an answer block score 0.
    """
    prediction = extract_answer(text) if text else None
    return prediction, answer_metrics(prediction, golden_answers)


def _record(traj: Trajectory, retrieval: Turn | None, golden_answers: tuple[str, ...], method: str,
            seconds: float) -> dict[str, Any]:
    """The scored, JSON-ready record of one answered (or failed) question."""
    # never score an example whose search failed, whatever it wrote before
    answered = traj.answer_text if traj.status != SEARCH_FAILED else None
    prediction, scores = score_response(answered, golden_answers)
    turns = ([retrieval] if retrieval is not None else []) + traj.turns
    generated = traj.turns
    return {
        "question": traj.question,
        "golden_answers": list(golden_answers),
        "method": method,
        "status": traj.status,
        "prediction": prediction,
        **scores,
        "n_searches": sum(1 for t in turns if t.searched),
        "n_turns": len(generated),
        "n_invalid": sum(1 for t in generated if t.action == "invalid"),
        "search_failures": sum(1 for t in turns if t.error is not None),
        "response_tokens": len(traj.response_ids),
        "seconds": seconds,
        "turns": [dict(t.__dict__) for t in turns],
        "response": traj.response_text,
    }


# what a sample's record leaves out: the question's (kept once per question) and the response text (its turns)
_SAMPLE_OMITS = ("question", "golden_answers", "method", "response")


def _sample_record(traj: Trajectory, retrieval: Turn | None, golden_answers: tuple[str, ...], method: str,
                   seconds: float) -> dict[str, Any]:
    record = _record(traj, retrieval, golden_answers, method, seconds)
    return {k: v for k, v in record.items() if k not in _SAMPLE_OMITS}


# ---------------------------------------------------------------------------------------------
# Data selection


def _example_keys(rows: Sequence[QARow]) -> list[str]:
    """A unique key per row: its id, with ``#2``, ``#3``... appended to repeated ids."""
    seen: dict[str, int] = {}
    keys = []
    for row in rows:
        seen[row.id] = seen.get(row.id, 0) + 1
        keys.append(row.id if seen[row.id] == 1 else f"{row.id}#{seen[row.id]}")
    return keys


# ---------------------------------------------------------------------------------------------
# Example files (resumable)


def _write_examples(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Rewrite an examples file atomically (drops torn and duplicate lines before appending more)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _ordered(existing: dict[str, dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The selected records in selection order, then any others the file held (from a larger run)."""
    wanted = set(keys)
    return [existing[k] for k in keys if k in existing] + [r for k, r in existing.items() if k not in wanted]


# ---------------------------------------------------------------------------------------------
# Summaries and tables


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarize(records: Sequence[dict[str, Any]], samples: int = 0) -> dict[str, Any]:
    """Metrics over one dataset's records (scores are fractions; rates per question or per turn).

    With ``samples`` (K > 0; every record holds K ``samples``) also the sampled metrics (see the module
    docstring): ``samples``, ``pass_at_k`` (pass@K), ``mean_at_k`` (mean@K), ``sample_f1``, ``mixed_rate``
    and ``pass_at`` (``{"k": pass@k}`` for :attr:`SamplingSettings.pass_ks`); ``search_failures`` then
    counts the samples' too.
    """
    turns = sum(r["n_turns"] for r in records)
    summary = {
        "n": len(records),
        "em": _mean([r["em"] for r in records]),
        "cover_em": _mean([r["cover_em"] for r in records]),
        "f1": _mean([r["f1"] for r in records]),
        "answered_rate": _mean([float(r["status"] == ANSWERED) for r in records]),
        "searches_per_question": _mean([r["n_searches"] for r in records]),
        "turns_per_question": _mean([r["n_turns"] for r in records]),
        "invalid_action_rate": sum(r["n_invalid"] for r in records) / turns if turns else float("nan"),
        "response_tokens": _mean([r["response_tokens"] for r in records]),
        "seconds_per_question": _mean([r["seconds"] for r in records]),
        "search_failures": sum(r["search_failures"] for r in records),
        "statuses": {s: sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records})},
    }
    if samples:
        summary.update(_summarize_samples(records, samples))
    return summary


def _summarize_samples(records: Sequence[dict[str, Any]], samples: int) -> dict[str, Any]:
    for r in records:
        if len(r.get("samples") or ()) != samples:
            raise ValueError(f"record {r.get('id')!r} holds {len(r.get('samples') or ())} samples, not {samples}")
    correct = [sum(s["em"] == 1 for s in r["samples"]) for r in records]
    return {
        "samples": samples,
        "pass_at_k": _mean([float(c > 0) for c in correct]),
        "mean_at_k": _mean([s["em"] for r in records for s in r["samples"]]),
        "sample_f1": _mean([s["f1"] for r in records for s in r["samples"]]),
        "mixed_rate": _mean([float(0 < c < samples) for c in correct]),
        "pass_at": {str(k): _mean([pass_at_k(samples, c, k) for c in correct])
                    for k in SamplingSettings(samples).pass_ks},
        "search_failures": sum(r["search_failures"] + sum(s["search_failures"] for s in r["samples"])
                               for r in records),
    }


def average_over_datasets(per_dataset: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean over datasets (as the paper averages); counts are summed. The sampled metrics too, when every
    dataset has them."""
    average: dict[str, Any] = {}
    for key, _, _, _, summed in _TABLE_ROWS:
        values = [d[key] for d in per_dataset.values()]
        average[key] = sum(values) if summed else _mean([v for v in values if not math.isnan(v)])
    if per_dataset and all("pass_at_k" in d for d in per_dataset.values()):
        first = next(iter(per_dataset.values()))
        average["samples"] = first["samples"]
        for key in _SAMPLED_KEYS:
            average[key] = _mean([d[key] for d in per_dataset.values()])
        average["pass_at"] = {k: _mean([d["pass_at"][k] for d in per_dataset.values()]) for k in first["pass_at"]}
    return average


def _cell(value: float, scale: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{decimals}f}"


def format_results_table(results: dict[str, Any]) -> str:
    """The results as a markdown table: a row per metric, a column per dataset and the average; the sampled
    metrics' rows only when the evaluation sampled (``results["sampling"]``)."""
    names = list(results["datasets"])
    header = f"| metric | {' | '.join(names)} | average |"
    sampling = results.get("sampling")
    title = f"**{results['method']}** with `{results['model']}`, engine `{results['engine'] or 'none'}`"
    if sampling:
        title += (f"; greedy, and {sampling['samples']} sampled answers per question at temperature "
                  f"{sampling['temperature']:g} (seed {sampling['seed']})")
    lines = [title, "", header, "|---|" + "---:|" * (len(names) + 1)]
    columns = [results["datasets"][n] for n in names] + [results["average"]]
    for key, label, scale, decimals, _ in _TABLE_ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(c[key], scale, decimals) for c in columns) + " |")
    if sampling:
        lines += [f"| {label} | " + " | ".join(_cell(value(c), 100.0, 2) for c in columns) + " |"
                  for label, value in _sampled_rows(sampling["samples"])]
    lines += ["", "Average: the mean over datasets, as the paper reports it; counts are totals. "
                  "EM is the paper's exact match; cover-EM is what the original code computed."]
    if sampling:
        lines.append("The rows above the sampled ones are greedy. pass@k for k < K: the unbiased estimator of "
                     "Chen et al. (2021) from the K samples; search failures count the samples' too.")
    return "\n".join(lines) + "\n"


# the sampled metrics averaged over datasets (pass_at, a dict, apart)
_SAMPLED_KEYS = ("pass_at_k", "mean_at_k", "sample_f1", "mixed_rate")


def _sampled_rows(k: int) -> list[tuple[str, Any]]:
    """(label, value of a summary) of the sampled rows of the results table (fractions, shown in %)."""
    rows: list[tuple[str, Any]] = [
        (f"pass@{k} (any of {k} samples right by EM, %)", lambda c: c["pass_at_k"]),
        (f"mean@{k} (EM of a sample, %)", lambda c: c["mean_at_k"]),
        ("F1 of a sample (%)", lambda c: c["sample_f1"]),
    ]
    rows += [(f"pass@{j} (%)", lambda c, j=j: c["pass_at"][str(j)]) for j in SamplingSettings(k).pass_ks[1:-1]]
    rows.append((f"mixed outcomes (0 < right < {k}, % of questions)", lambda c: c["mixed_rate"]))
    return rows


# ---------------------------------------------------------------------------------------------
# The evaluation


def _holds_results(output_dir: Path) -> bool:
    """Whether an evaluation directory holds any answered example (a line in one of its examples files)."""
    return any(line.strip() for file in (output_dir / EXAMPLES_DIR).glob("*.jsonl")
               for line in file.read_text(encoding="utf-8").splitlines())


def _shown(key: str, value: Any) -> str:
    """A recorded setting as the error shows it; a missing one says what its absence means."""
    if value is None and key == "settings.kv_reuse":
        return "not recorded (every turn re-encoded)"
    return "not recorded" if value is None else repr(value)


def _resume_hint(old: dict[str, Any], changed: list[str]) -> str:
    if "settings.kv_reuse" not in changed:
        return ""
    if old.get("settings.kv_reuse") is None:
        return "; it re-encoded every turn: --no-kv-reuse (or kv_reuse=False) resumes it"
    return "; it carried the turn cache: --kv-cache dynamic without --no-kv-reuse resumes it"


def _check_config(output_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to resume an evaluation made with another model, method, engine or settings.

    A directory whose configuration was written but which holds no answered example (a run that failed
    before its first batch: a wrong engine spec, a missing model) is taken over, not refused: there is
    nothing in it to protect.
    """
    if (output_dir / "config.yaml").is_file() and (output_dir / "metrics.jsonl").is_file():
        # a training run's own directory: results.json, examples/ ... would mix into its files
        raise ValueError(f"{output_dir} is a training run's directory; evaluate into a folder of its own, "
                         f"e.g. --output-dir {output_dir / 'eval' / 'mine'}")
    path = output_dir / CONFIG_FILE
    if path.exists():
        old, new = flat_keys(json.loads(path.read_text(encoding="utf-8"))), flat_keys(config)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if not changed:
            return
        if _holds_results(output_dir):
            details = "; ".join(f"{k}: {_shown(k, old.get(k))} there, {_shown(k, new.get(k))} now" for k in changed)
            raise ValueError(
                f"{output_dir} holds an evaluation with different {', '.join(changed)} ({details}); "
                f"resume it with the same options, or pass another --output-dir{_resume_hint(old, changed)}"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def evaluate(model: str, spec: EvalSpec, output_dir: str | Path | None = None, *,
             engine: SearchEngine | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` as ``spec`` says on each of its datasets; write the output directory; return the results.

    Args:
        model: a model path, hub id or built-in name.
        spec: the questions (:class:`DataSelection`: files split into datasets, sampled, limited), the
            settings (:class:`EvalSettings`; ``topk`` and ``doc_format`` left None are resolved for the engine
            and the model, :meth:`EvalSettings.resolved`), the engine spec (``example``, ``bm25:FILE``,
            ``http://...``, ``google``...; needed by ``agent`` and ``rag``), the sampled answers
            (:class:`SamplingSettings`, see *Sampling* in the module docstring) and the device and dtype.
        output_dir: where to write; default :func:`default_output_dir`. An existing one is resumed.
        engine: an engine object to search with instead of building ``spec.engine``.
        progress: show a tqdm progress bar.

    Returns:
        The dict written to ``results.json`` (see the module docstring).

    Raises:
        ModelNotFoundError: ``model`` names no model (checked before anything is written).
        ValueError: a method that searches without an engine, a simulated engine, a directory holding another
            evaluation (see :func:`_check_config`); DataError for a bad QA row.
    """
    started = time.perf_counter()
    check_model_spec(model)  # before the output directory is made: a wrong model leaves nothing behind
    settings, sampling = spec.settings.resolved(model, spec.engine), spec.sampling
    method = settings.method
    if method in NEEDS_ENGINE and engine is None and not spec.engine:
        raise ValueError(f"method {method!r} needs a search engine: pass --engine SPEC (e.g. example, bm25:FILE)")
    engine_label = spec.engine or (engine.name if engine is not None else None)
    if method not in NEEDS_ENGINE:
        engine, engine_label = None, None
    datasets = spec.data.datasets()
    out = Path(output_dir) if output_dir is not None else default_output_dir(model, method)
    config = {"model": model, "method": method, "engine": engine_label, "settings": settings.generation_key()}
    if sampling.enabled:  # recorded only when sampled: a greedy evaluation's config is as before
        config["sampling"] = asdict(sampling)
    _check_config(out, config)
    (out / EXAMPLES_DIR).mkdir(parents=True, exist_ok=True)

    answerer: Answerer | None = None
    per_dataset: dict[str, dict[str, Any]] = {}
    for name, path, rows in datasets:
        keys = _example_keys(rows)
        file = out / EXAMPLES_DIR / f"{name}.jsonl"
        existing = read_examples(file)
        _write_examples(file, _ordered(existing, keys))
        pending = [(k, r) for k, r in zip(keys, rows) if _to_answer(existing.get(k), sampling)]
        if pending and answerer is None:
            if engine is None and method in NEEDS_ENGINE:
                from zerosearch.search.factory import build_engine

                engine = build_engine(spec.engine)
            answerer = Answerer(model, engine, settings, device=spec.device, dtype=spec.dtype)
        existing.update(_run_pending(answerer, name, pending, file, len(rows), progress, sampling))
        _write_examples(file, _ordered(existing, keys))
        per_dataset[name] = {"file": path, **summarize([existing[k] for k in keys], sampling.samples)}

    results = {
        "model": model,
        "method": method,
        "engine": engine_label,
        "settings": asdict(settings),
        "selection": spec.data.record(),
        **({"sampling": asdict(sampling)} if sampling.enabled else {}),
        "datasets": per_dataset,
        "average": average_over_datasets(per_dataset),
        "search_failures": sum(d["search_failures"] for d in per_dataset.values()),
        "wall_seconds": time.perf_counter() - started,
        "output_dir": str(out),
    }
    (out / RESULTS_JSON).write_text(json.dumps(json_safe(results), indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (out / RESULTS_MD).write_text(format_results_table(results), encoding="utf-8")
    return results


def _to_answer(record: dict[str, Any] | None, sampling: SamplingSettings) -> bool:
    """Whether a question is (re-)run: not answered yet, or a search failed (greedy or in a sample)."""
    if record is None or record.get("status") in (None, SEARCH_FAILED):
        return True
    if not sampling.enabled:
        return False
    samples = record.get("samples")
    return (not isinstance(samples, list) or len(samples) != sampling.samples
            or any(s.get("status") == SEARCH_FAILED for s in samples))


def _sample_chunk(answerer: Answerer, name: str, chunk: list[tuple[str, QARow]],
                  sampling: SamplingSettings) -> list[list[dict[str, Any]]]:
    """The K sampled records of each question of ``chunk``, ``batch_size // K`` questions (at least one) per
    batch, so that a generate call holds about ``batch_size`` rows, a question's K side by side."""
    per_batch = max(1, answerer.settings.batch_size // sampling.samples)
    sampled: list[list[dict[str, Any]]] = []
    for start in range(0, len(chunk), per_batch):
        part = chunk[start : start + per_batch]
        seeds = [[sampling.row_seed(name, key, j) for j in range(sampling.samples)] for key, _ in part]
        sampled += answerer.sample([(row.question, row.golden_answers) for _, row in part], seeds,
                                   sampling.temperature)
    return sampled


def _run_pending(answerer: Answerer | None, name: str, pending: list[tuple[str, QARow]], file: Path,
                 total: int, progress: bool, sampling: SamplingSettings = SamplingSettings()
                 ) -> dict[str, dict[str, Any]]:
    """Answer the pending rows batch by batch, appending each batch's records to ``file`` as it ends."""
    from tqdm.auto import tqdm

    done: dict[str, dict[str, Any]] = {}
    if not pending or answerer is None:
        return done
    size = answerer.settings.batch_size
    with tqdm(total=total, initial=total - len(pending), desc=f"eval {name}", unit="q",
              disable=not progress, dynamic_ncols=True) as bar, file.open("a", encoding="utf-8") as handle:
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            records = answerer.answer([(row.question, row.golden_answers) for _, row in chunk])
            if sampling.enabled:
                records = [{**record, "correct_samples": sum(s["em"] == 1 for s in sampled), "samples": sampled}
                           for record, sampled in zip(records, _sample_chunk(answerer, name, chunk, sampling))]
            for (key, row), record in zip(chunk, records):
                record = {"id": key, "dataset": name, **record}
                done[key] = record
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(chunk))
            bar.set_postfix(em=f"{_mean([r['em'] for r in done.values()]):.3f}")
    return done


# ---------------------------------------------------------------------------------------------
# Reading a sampled evaluation back


@dataclass(frozen=True)
class SampleCount:
    """How many of a question's K sampled answers were right by EM (a record of a sampled evaluation)."""

    dataset: str
    id: str
    question: str
    golden_answers: tuple[str, ...]
    correct: int  # samples right by EM, 0..samples
    samples: int  # K


def read_sample_counts(output_dir: str | Path) -> list[SampleCount]:
    """Per question of a sampled evaluation (``samples`` > 0): its id, question, golds and ``correct`` of K.

    Every record of every ``examples/<dataset>.jsonl`` is read (datasets in name order, records in file
    order); a question still to be run again on resume (a search failed, greedy or in a sample) is left
    out, as its count would be too low.

    Raises:
        ValueError: ``output_dir`` is not an evaluation directory (no ``eval_config.json``), or was
            evaluated without samples.
    """
    out = Path(output_dir)
    path = out / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{out} is not an evaluation directory: it has no {CONFIG_FILE} "
                         "(pass the --output-dir of a `zerosearch eval`)")
    sampling = json.loads(path.read_text(encoding="utf-8")).get("sampling") or {}
    k = int(sampling.get("samples") or 0)
    if k < 1:
        raise ValueError(f"{out} was evaluated without sampled answers; evaluate with --samples K")
    settings = SamplingSettings(samples=k)
    counts: list[SampleCount] = []
    for file in sorted((out / EXAMPLES_DIR).glob("*.jsonl")):
        for record in read_examples(file).values():
            if _to_answer(record, settings):
                continue
            counts.append(SampleCount(dataset=file.stem, id=str(record["id"]), question=record["question"],
                                      golden_answers=tuple(record["golden_answers"]),
                                      correct=int(record["correct_samples"]), samples=k))
    return counts
