"""A difficulty-filtered training pool: the candidate questions on which the starting policy's answers disagree.

Under a group baseline (``grpo``, ``rloo``) a question whose rollouts are all right, or all wrong, gives every
rollout advantage 0: its rollouts cost time and teach nothing. The questions the starting policy sometimes gets
right are where RL has room. So before RL the starting policy (after the warm-up) answers every candidate K
times, and the pool keeps the questions with ``min_correct <= right <= max_correct`` by EM (default
``0 < right < K``, mixed outcomes). Bae et al. 2025 ("Online Difficulty Filtering for Reasoning Oriented RL",
arXiv 2504.03380) show that the expected improvement is bounded below by the variance of a question's success
probability, largest at intermediate difficulty; DAPO's dynamic sampling (``drop_uniform_groups``) is the same
idea online, per step. This module is the offline filter, done once with the starting policy: a question that
becomes easy or hard during training stays in the pool (dynamic sampling drops its groups then).

Scoring is a sampled evaluation (:func:`zerosearch.evaluate.evaluate` with ``samples=K``) through the agent
loop, with the run's rollout budgets (``max_turns``, ``topk``, ``max_turn_tokens``, ``max_obs_tokens``,
``max_context_tokens``), prompt, document format and sampling temperature, against a real engine
(``pool.engine``; training may use the simulated engine, but that one writes documents from the gold answer,
which would make every question look answerable). Each candidate file is one dataset (never split by source);
``limit`` scores the first N rows of each. The evaluation is cached by content like the run's baselines
(:func:`zerosearch.compare.evaluate_cached`: the model's files, the candidate files' bytes, every setting and the
scoring code), so the same pool asked again, by ``zerosearch pool`` or by a run, is not scored twice; an
edited candidate file is scored again.

The warm-up demonstrated some training questions with their gold answers as the target
(:func:`zerosearch.warmup.demonstrated_questions`). ``warmup_questions=exclude`` (the default) leaves those out
of the pool, so that RL trains on questions whose answers the policy never saw as a target, and a gain on the
pool is one of answering with search rather than of recalling; ``keep`` keeps them. Either way they are
scored, and the statistics give their pass rates beside the others' (``by_warmup``), which says whether it
matters.

Files (a run writes them into its directory; ``zerosearch pool --out POOL.jsonl`` beside ``--out``):

    pool.jsonl       the kept rows, in candidate order, FlashRAG layout: ``id``, ``question``,
                     ``golden_answers``, every other field of the row (e.g. ``metadata.supporting_titles``,
                     which the warm-up uses), and ``pool: {"correct", "samples"}``; any ``train_files=`` reads it
    pool.json        the statistics (:func:`pool_statistics`) and the settings
    pool-scoring/    the sampled evaluation (a copy of the cached one): ``zerosearch compare`` and
                     ``zerosearch pool --from-eval`` read it
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Iterable, Sequence

from zerosearch.config import ConfigError, PoolConfig, TrainConfig
from zerosearch.data import QARow, load_qa_file, load_qa_files
from zerosearch.eval_settings import DataSelection, EvalSettings, EvalSpec, SamplingSettings
from zerosearch.rewards import normalize_answer

if TYPE_CHECKING:
    from zerosearch.evaluate import SampleCount

__all__ = [
    "POOL_INFO", "POOL_ROWS", "SCORING_DIR", "Bounds", "EmptyPoolError", "Pool", "build_pool", "dataset_names",
    "empty_pool_message", "filter_counts", "make_pool", "pass_rates", "pool_eval_spec", "pool_row", "pool_statistics", "pool_summary", "pool_table", "question_key",
    "read_questions", "score_candidates", "stored_pool", "training_pool", "write_pool",
]

POOL_ROWS = "pool.jsonl"
POOL_INFO = "pool.json"
SCORING_DIR = "pool-scoring"
# the fields of the verl layouts (Search-R1 parquet, Agentic-RAG): left out of a pool row, which is FlashRAG's
# layout (a row with reward_model would be read as a verl row again, and its prompt holds the old template)
_VERL_FIELDS = ("prompt", "reward_model", "extra_info", "ability")


class EmptyPoolError(ConfigError):
    """No candidate fell within the bounds; the message says what to change."""


@dataclass(frozen=True)
class Bounds:
    """Keep a question with ``low <= right <= high`` of ``samples`` sampled answers right by EM."""

    samples: int
    low: int
    high: int

    @classmethod
    def of(cls, pool: PoolConfig) -> Bounds:
        return cls(pool.samples, pool.min_correct, pool.upper)

    def keeps(self, correct: int) -> bool:
        return self.low <= correct <= self.high


@dataclass
class Pool:
    """The kept rows (dicts in the pool.jsonl layout) and the statistics (:func:`pool_statistics`)."""

    rows: list[dict[str, Any]]
    stats: dict[str, Any]


def question_key(question: str) -> str:
    """What identifies a question across files: its text normalised as answers are (the warm-up's rule)."""
    return normalize_answer(question)


def filter_counts(counts: Sequence[SampleCount], bounds: Bounds) -> list[SampleCount]:
    """The questions whose number of right samples lies within ``bounds`` (order kept).

    Raises:
        ValueError: a count was sampled with another K than ``bounds.samples``.
    """
    other = sorted({c.samples for c in counts} - {bounds.samples})
    if other:
        raise ValueError(f"the counts were sampled with K={other[0]}, the bounds are for K={bounds.samples}")
    return [c for c in counts if bounds.keeps(c.correct)]


def pass_rates(counts: Sequence[SampleCount]) -> dict[str, Any]:
    """``{"n", "mean_at_k", "pass_at_k", "mixed_rate"}`` over ``counts`` (fractions; None when empty):
    mean@K the share of samples right, pass@K the share of questions with any sample right, and the share with
    mixed outcomes (0 < right < K), as ``zerosearch eval --samples`` defines them."""
    n = len(counts)
    if not n:
        return {"n": 0, "mean_at_k": None, "pass_at_k": None, "mixed_rate": None}
    return {"n": n, "mean_at_k": sum(c.correct / c.samples for c in counts) / n,
            "pass_at_k": sum(c.correct > 0 for c in counts) / n,
            "mixed_rate": sum(0 < c.correct < c.samples for c in counts) / n}


def pool_statistics(counts: Sequence[SampleCount], bounds: Bounds, kept: Sequence[SampleCount],
                    seen: AbstractSet[str] | None, exclude_seen: bool,
                    excluded: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    """What a pool is made of: the candidates scored, their outcomes, how many fell within the bounds, how many
    of those were left out (seen by the warm-up, or listed), the pool's size, and the starting pass rates.

    ``seen``: the questions the warm-up demonstrated (:func:`question_key`), None without a warm-up.
    Returns ``{"samples", "bounds": {"min_correct", "max_correct"}, "candidates", "outcomes": {"all_wrong",
    "mixed", "all_correct"}, "in_bounds", "excluded": {"warmup", "listed"}, "size", "warmup_questions",
    "warmup_seen": {"candidates", "in_bounds", "kept"} | None, "pass_rates": {"candidates", "pool"},
    "by_warmup": {"seen", "unseen"} | None}`` where each pass-rate entry is :func:`pass_rates`.
    """
    k = bounds.samples
    in_bounds = [c for c in counts if bounds.keeps(c.correct)]
    is_seen = (lambda c: question_key(c.question) in seen) if seen is not None else (lambda c: False)
    listed = [c for c in in_bounds if question_key(c.question) in excluded]
    stats: dict[str, Any] = {
        "samples": k, "bounds": {"min_correct": bounds.low, "max_correct": bounds.high},
        "candidates": len(counts),
        "outcomes": {"all_wrong": sum(c.correct == 0 for c in counts),
                     "mixed": sum(0 < c.correct < k for c in counts),
                     "all_correct": sum(c.correct == k for c in counts)},
        "in_bounds": len(in_bounds),
        "excluded": {"warmup": sum(is_seen(c) for c in in_bounds) if exclude_seen else 0,
                     "listed": len([c for c in listed if not (exclude_seen and is_seen(c))])},
        "size": len(kept),
        "warmup_questions": None if seen is None else ("exclude" if exclude_seen else "keep"),
        "warmup_seen": None if seen is None else {
            "candidates": sum(is_seen(c) for c in counts), "in_bounds": sum(is_seen(c) for c in in_bounds),
            "kept": sum(is_seen(c) for c in kept)},
        "pass_rates": {"candidates": pass_rates(counts), "pool": pass_rates(kept)},
        "by_warmup": None if seen is None else {"seen": pass_rates([c for c in counts if is_seen(c)]),
                                               "unseen": pass_rates([c for c in counts if not is_seen(c)])},
    }
    return stats


def _raw_id(key: str) -> str:
    """The row id of an evaluation record's key (a repeated id gets ``#2``, ``#3``... appended)."""
    match = re.fullmatch(r"(.*)#\d+", key)
    return match.group(1) if match else key


def _match_rows(counts: Sequence[SampleCount], rows: Sequence[QARow]) -> list[QARow | None]:
    """The candidate row of each count: the first unused row with its id and question (None: not found)."""
    index: dict[tuple[str, str], list[QARow]] = {}
    for row in rows:
        index.setdefault((row.id, row.question), []).append(row)
    found: list[QARow | None] = []
    for count in counts:
        options = index.get((_raw_id(count.id), count.question)) or index.get((count.id, count.question)) or []
        found.append(options.pop(0) if options else None)
    return found


def pool_row(count: SampleCount, row: QARow | None) -> dict[str, Any]:
    """A kept question as a pool.jsonl row: the FlashRAG fields, the row's other fields, and its count."""
    record = row.record if row is not None else {}
    extra = {k: v for k, v in record.items() if k not in ("id", "question", "golden_answers", "pool", *_VERL_FIELDS)}
    return {"id": row.id if row is not None else _raw_id(count.id),
            "question": row.question if row is not None else count.question,
            "golden_answers": list(row.golden_answers if row is not None else count.golden_answers),
            **extra, "pool": {"correct": count.correct, "samples": count.samples}}


def build_pool(counts: Sequence[SampleCount], rows: Sequence[QARow], bounds: Bounds, *,
               seen: AbstractSet[str] | None = None,
               exclude_seen: bool = True, excluded: Iterable[str] = ()) -> Pool:
    """The pool of ``counts`` (a sampled evaluation's, :func:`zerosearch.evaluate.read_sample_counts`).

    ``rows``: the candidate rows, whose other fields the pool rows keep (a count whose row is not among them
    keeps only the evaluation's id, question and gold answers). ``seen``: the questions the warm-up
    demonstrated (:func:`question_key`), left out when ``exclude_seen``; ``excluded``: questions left out
    whatever the bounds say. Raises ValueError when the counts were sampled with another K.
    """
    listed = {question_key(q) for q in excluded}
    drop = listed | (seen if seen is not None and exclude_seen else set())
    kept = [c for c in filter_counts(counts, bounds) if question_key(c.question) not in drop]
    matched = dict(zip(map(id, kept), _match_rows(kept, rows)))
    stats = pool_statistics(counts, bounds, kept, seen, exclude_seen, listed)
    stats["rows_without_source"] = sum(row is None for row in matched.values())
    return Pool([pool_row(c, matched[id(c)]) for c in kept], stats)


def empty_pool_message(stats: dict[str, Any], names: dict[str, str]) -> str:
    """Why the pool is empty and what to change; ``names`` spells the settings (config keys or flags):
    ``candidates``, ``bounds``, ``samples`` and ``keep``."""
    o, k, b = stats["outcomes"], stats["samples"], stats["bounds"]
    left_out = stats["excluded"]["warmup"] + stats["excluded"]["listed"]
    why = (f"none of the {stats['candidates']} candidates had {b['min_correct']} to {b['max_correct']} of {k} sampled "
           f"answers right ({o['all_wrong']} all wrong, {o['mixed']} mixed, {o['all_correct']} all right"
           + (f"; {left_out} within the bounds were left out as seen by the warm-up or listed" if left_out else "")
           + ")")
    hints = [f"score more candidates ({names['candidates']})", f"widen the bounds ({names['bounds']})",
             f"sample more answers ({names['samples']})"]
    if stats["excluded"]["warmup"]:
        hints.append(f"keep the warm-up's questions ({names['keep']})")
    return f"the training pool is empty: {why}; " + ", ".join(hints[:-1]) + " or " + hints[-1]


def write_pool(pool: Pool, rows_path: Path, info_path: Path, info: dict[str, Any]) -> None:
    """Write the rows (jsonl) and ``{**info, **stats}`` (json), each atomically, the rows first."""
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = rows_path.with_name(f"{rows_path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in pool.rows),
                   encoding="utf-8")
    os.replace(tmp, rows_path)
    tmp = info_path.with_name(f"{info_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({**info, **pool.stats}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, info_path)


def read_questions(source: str | os.PathLike[str]) -> set[str]:
    """The questions (:func:`question_key`) of a warm-up directory (its ``demonstrations.jsonl``) or of a QA
    file in any layout :func:`zerosearch.data.load_qa_file` reads (a demonstrations.jsonl is one).

    Raises:
        FileNotFoundError: nothing there, or a directory that is not a warm-up's.
    """
    from zerosearch.warmup import DEMOS_FILE, demonstrated_questions

    path = Path(source)
    if path.is_dir():
        questions = demonstrated_questions(path)
        if questions is None:
            raise FileNotFoundError(f"{path} is not a warm-up directory (it has no {DEMOS_FILE}); give a warm-up's "
                                    "directory or a QA file of the questions to leave out")
        return questions
    return {question_key(row.question) for row in load_qa_file(path)}


# ---------------------------------------------------------------------------------------------
# scoring with a run's settings


def pool_eval_spec(cfg: TrainConfig) -> EvalSpec:
    """The sampled evaluation that scores a run's candidates: the run's rollout budgets, prompt, document format
    and precision (:meth:`EvalSettings.of_run`), the agent loop, ``pool.engine``, K = ``pool.samples`` at the
    run's temperature, seeded by the run's seed, each candidate file one dataset (named by its stem, numbered
    where stems repeat), the first ``pool.limit`` rows of each."""
    from zerosearch.datasets import default_train_files

    pool = cfg.pool
    files = list(pool.files) or list(cfg.train_files) or default_train_files()
    return EvalSpec(
        data=DataSelection(files, limit=pool.limit or None, seed=cfg.seed, names=dataset_names(files), group_by=None),
        settings=EvalSettings.of_run(cfg, batch_size=pool.batch_size), engine=pool.engine,
        sampling=SamplingSettings(samples=pool.samples, temperature=cfg.temperature, seed=cfg.seed),
        device=cfg.device, dtype=cfg.dtype)


def dataset_names(files: Sequence[str]) -> list[str] | None:
    """A dataset name per file where two files share a stem (the stem, then ``-2``, ``-3``...); None otherwise,
    so that each file is named by its stem, as ``zerosearch eval`` names it."""
    stems = [Path(f).stem for f in files]
    if len(set(stems)) == len(stems):
        return None
    return [stem if stems[:i].count(stem) == 0 else f"{stem}-{stems[:i].count(stem) + 1}" for i, stem in enumerate(stems)]


def score_candidates(model: str, spec: EvalSpec, scoring_dir: Path,
                     progress: bool) -> tuple[list[SampleCount], dict[str, Any]]:
    """Score the candidates: a sampled evaluation, from the evaluation cache or run now (resumed if partly
    there), copied to ``scoring_dir``. Returns the counts per question and the evaluation's results."""
    from zerosearch.compare import evaluate_cached
    from zerosearch.evaluate import read_sample_counts

    results = evaluate_cached(model, spec, scoring_dir, progress)
    return read_sample_counts(scoring_dir), results


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"[zerosearch] {message}", file=sys.stderr)


CONFIG_NAMES = {"candidates": "pool.files=..., pool.limit=0", "bounds": "pool.min_correct, pool.max_correct",
                "samples": "pool.samples", "keep": "pool.warmup_questions=keep"}


def make_pool(cfg: TrainConfig, model: str, rows_path: Path, info_path: Path, scoring_dir: Path, *,
              progress: bool = True, excluded: Iterable[str] = (), names: dict[str, str] = CONFIG_NAMES) -> Pool:
    """Score ``cfg``'s candidates with ``model`` (:func:`pool_eval_spec`), filter them by ``cfg.pool`` and write
    the pool. The warm-up's questions are those of ``model``'s warm-up directory, if it is one.

    Raises:
        EmptyPoolError: no candidate was kept (pool.json is written all the same, saying why).
    """
    from zerosearch.warmup import demonstrated_questions

    spec = pool_eval_spec(cfg)
    files = list(spec.data.files)
    _say(f"training pool: scoring the candidates of {', '.join(files)} with {model}, {cfg.pool.samples} sampled "
         f"answers each at temperature {cfg.temperature:g} (engine {cfg.pool.engine}; cached)", progress)
    counts, results = score_candidates(model, spec, scoring_dir, progress)
    if results.get("search_failures"):
        _say(f"warning: {results['search_failures']} search call(s) failed while scoring; those questions are not "
             "candidates (scoring again, e.g. by the same command, retries them)", True)
    seen = demonstrated_questions(model)
    pool = build_pool(counts, load_qa_files(files), Bounds.of(cfg.pool), seen=seen,
                      exclude_seen=cfg.pool.warmup_questions == "exclude", excluded=excluded)
    info = {"model": model, "engine": cfg.pool.engine, "files": files, "limit": cfg.pool.limit,
            "temperature": cfg.temperature, "seed": cfg.seed, "scoring_dir": str(scoring_dir)}
    write_pool(pool, rows_path, info_path, info)
    if not pool.rows:
        raise EmptyPoolError(empty_pool_message(pool.stats, names))
    _say(pool_summary(pool.stats), progress)
    return pool


def training_pool(cfg: TrainConfig, model: str, run_dir: Path, progress: bool = True) -> list[QARow]:
    """The rows a run with ``pool.enabled`` trains on: the candidates scored with ``model`` (its starting policy)
    and filtered, written to ``run_dir/pool.jsonl`` and ``pool.json`` (the sampled evaluation in
    ``run_dir/pool-scoring``). Raises :class:`EmptyPoolError` before any RL step when none is kept."""
    make_pool(cfg, model, run_dir / POOL_ROWS, run_dir / POOL_INFO, run_dir / SCORING_DIR, progress=progress)
    return load_qa_file(run_dir / POOL_ROWS)


def stored_pool(run_dir: Path) -> list[QARow]:
    """The pool a run stored (a resumed run trains on it, never scoring again: the candidate files or the cache
    may have changed since). Raises FileNotFoundError when the run has none."""
    path = run_dir / POOL_ROWS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {run_dir} trained on a difficulty-filtered pool (pool.enabled) "
                                "stored there, and a resumed run must train on the same rows; restore the file")
    return load_qa_file(path)


# ---------------------------------------------------------------------------------------------
# reading it


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def pool_summary(stats: dict[str, Any]) -> str:
    """One line: the pool's size of the candidates, the outcomes, the warm-up's share, the starting pass rates."""
    k, o = stats["samples"], stats["outcomes"]
    pool, every = stats["pass_rates"]["pool"], stats["pass_rates"]["candidates"]
    seen = stats.get("warmup_seen")
    warm = ""
    if seen is not None:
        warm = (f"; the warm-up saw {seen['candidates']} candidates, {seen['in_bounds']} of them within the bounds, "
                + (f"{stats['excluded']['warmup']} left out" if stats["warmup_questions"] == "exclude"
                   else f"{seen['kept']} kept"))
    listed = f"; {stats['excluded']['listed']} left out as listed" if stats["excluded"]["listed"] else ""
    return (f"training pool: {stats['size']} of {stats['candidates']} candidates ({o['all_wrong']} all wrong, "
            f"{o['mixed']} mixed, {o['all_correct']} all right of {k}{warm}{listed}); starting mean@{k} "
            f"{_pct(pool['mean_at_k'])}, pass@{k} {_pct(pool['pass_at_k'])} on the pool, "
            f"{_pct(every['mean_at_k'])} and {_pct(every['pass_at_k'])} on all candidates")


def pool_table(stats: dict[str, Any]) -> str:
    """The starting pass rates as markdown: a row per group (the pool, every candidate, and the candidates the
    warm-up saw and did not see), with questions, mean@K, pass@K and the share with mixed outcomes."""
    k = stats["samples"]
    groups = [("training pool", stats["pass_rates"]["pool"]), ("all candidates", stats["pass_rates"]["candidates"])]
    if stats.get("by_warmup"):
        groups += [("candidates the warm-up saw", stats["by_warmup"]["seen"]),
                   ("candidates it did not see", stats["by_warmup"]["unseen"])]
    lines = [f"| questions | n | mean@{k} | pass@{k} | mixed (0 < right < {k}) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {r['n']} | {_pct(r['mean_at_k'])} | {_pct(r['pass_at_k'])} | {_pct(r['mixed_rate'])} |"
              for label, r in groups]
    return "\n".join(lines) + "\n"
