"""The format warm-up ("cold start"): teach a small model the search protocol before RL.

SmolLM2-135M, given the policy prompt, answers in prose and never writes a well-formed ``<search>`` or
``<answer>``: every reward is 0 and the policy gradient is 0, so RL cannot start. The warm-up trains it
first, by supervised learning, on demonstration trajectories in the exact protocol:

    <think> I will search for the question. </think>
    <search> {question} </search>
    <information>Doc 1(Title: ...) ...</information>            <- a real engine's documents, loss_mask 0
    <think> I need to know more about {sub-query}. </think>      <- only when the first search missed
    <search> {sub-query} </search>
    <information>...</information>
    <think> The answer is in the documents. </think>
    <answer> {gold answer} </answer>

* Queries: the question itself, then, where the documents it returned do not contain a gold answer, a
  sub-query the row lists (``warmup.subquery_field``; HotpotQA's supporting titles, the two pages a
  multi-hop question needs) that the first search did not already return, preferring one whose documents
  contain the answer. So demonstrations show one and two searches. Rows whose shown documents never
  contain the answer are left out (``warmup.require_grounded``; yes/no answers cannot be judged this way
  and are kept), so the demonstrations teach reading the answer from the documents, not guessing it.
* Documents come from a real engine (default: BM25 over the bundled HotpotQA paragraphs) and are cut to
  search-snippet length around the answer (``warmup.max_doc_words``, the ~30-word documents the simulator
  writes during RL), then rendered and fitted to ``max_obs_tokens`` by the rollout's own
  :func:`~zerosearch.rollout.fit_observation`.
* Every piece is appended with :meth:`Trajectory.append <zerosearch.rollout.Trajectory.append>`, the
  rollout's own path: the policy's text with ``loss_mask = 1``, the ``<information>`` block (documents and
  tags) with ``loss_mask = 0``. The prompt is the policy prompt as the trainer encodes it. The loss is on
  the policy's tokens only (:mod:`zerosearch.sft`, the same SFT path as simulator tuning).
* Only training questions: the run's ``train_files``, minus any row whose question is also among the
  questions the run evaluates on (``final_eval.files``, default the bundled dev set).
* The trained model is cached under ``$ZEROSEARCH_CACHE/warmup/<key>`` (see :func:`warmup_key`) as a
  plain Hugging Face directory, with ``demonstrations.jsonl`` and ``warmup.json`` (settings, counts,
  losses, seconds; written last). Any command that takes a model path loads it.

Not in the paper: ZeroSearch and Search-R1 start RL from 3B-7B models that follow the format from the
prompt alone. Their follow-ups (e.g. R1-Searcher's two stages) and DeepSeek-R1 use a cold start of this
kind for weaker models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zerosearch import __version__
from zerosearch.config import NO_SEARCH_TO_DEMONSTRATE, ConfigError, TrainConfig
from zerosearch.data import QARow, load_qa_files, policy_prompt
from zerosearch.datasets import default_dev_files, default_train_files
from zerosearch.jsonio import read_jsonl
from zerosearch.llm.models import model_fingerprint, resolve_model_path
from zerosearch.paths import cache_dir, cache_key, file_digest
from zerosearch.policy import load_policy
from zerosearch.policy_info import write_policy_info
from zerosearch.prompts import load_template
from zerosearch.rewards import normalize_answer
from zerosearch.rollout import Trajectory, Turn, fit_observation, logged_documents
from zerosearch.runtime import pick_device, resolve_autocast
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.search.factory import build_configured_engine, engine_fingerprint, naming_key
from zerosearch.search.snippets import contains_answer, snippet
from zerosearch.sft import NoExampleFitsError, SFTExample, SFTSettings, train_sft

__all__ = [
    "WARMUP_VERSION",
    "DemoSettings",
    "DemoStats",
    "WarmupResult",
    "build_demonstrations",
    "demonstrated_questions",
    "demonstration_example",
    "run_warmup",
    "warmup_key",
]

# Bump when the demonstrations or how they are trained change: it is part of the cache key.
WARMUP_VERSION = 2
INFO_FILE = "warmup.json"
DEMOS_FILE = "demonstrations.jsonl"

FIRST_SEARCH = "<think> I will search for the question. </think>\n<search> {query} </search>"
NEXT_SEARCH = "<think> I need to know more about {query}. </think>\n<search> {query} </search>"
ANSWER = "<think> The answer is in the documents. </think>\n<answer> {answer} </answer>"


@dataclass(frozen=True)
class DemoSettings:
    """What shapes a demonstration (the rollout's budgets, so demonstrations fit what RL will see)."""

    topk: int = 3
    max_searches: int = 2  # the run's max_turns
    max_obs_tokens: int = 512
    max_context_tokens: int = 2048
    max_doc_words: int = 40
    require_grounded: bool = True
    subquery_field: str = "metadata.supporting_titles"
    doc_format: str = "zerosearch"  # the run's: demonstrations show documents as RL will


@dataclass
class DemoStats:
    """Counts of what happened to the rows (every row ends in exactly one of the last five)."""

    rows: int = 0
    one_search: int = 0
    two_searches: int = 0
    ungrounded_dropped: int = 0  # the documents shown never contained a gold answer
    search_failed_dropped: int = 0  # the engine reported an error for the row's first search
    too_long_dropped: int = 0  # over max_context_tokens
    grounded: int = 0  # kept demonstrations whose documents contain a gold answer
    closed_answers: int = 0  # kept yes/no demonstrations (containment cannot judge them)


# ---------------------------------------------------------------------------------------------
# demonstrations


def _subqueries(row: QARow, field_name: str) -> list[str]:
    if not field_name:
        return []
    value = row.get(field_name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise row.error(field_name, "a list of sub-query strings (or leave warmup.subquery_field empty)", value)
    return [v.strip() for v in value if v.strip()]


def _shown(result: SearchResult, topk: int, max_words: int, answers: Sequence[str]) -> list[Document]:
    """The documents a demonstration shows: the top ``topk``, each cut to a snippet around the answer."""
    return [dataclasses.replace(d, text=snippet(d.text, max_words, answers))
            for d in result.documents[:topk]]


def _search(engine: SearchEngine, queries: Sequence[tuple[str, str]], topk: int) -> list[SearchResult]:
    """One batched call for ``(query, question)`` pairs; checks the engine's answer count."""
    if not queries:
        return []
    results = engine.search([SearchRequest(query=q, question=question) for q, question in queries], topk)
    if len(results) != len(queries):
        raise RuntimeError(f"engine {getattr(engine, 'name', '?')!r} returned {len(results)} results "
                           f"for {len(queries)} requests")
    return results


@dataclass
class _Plan:
    row: QARow
    searches: list[tuple[str, list[Document]]] = field(default_factory=list)  # (query, documents shown)

    def documents(self) -> list[Document]:
        return [d for _, docs in self.searches for d in docs]


def _plan_searches(rows: Sequence[QARow], engine: SearchEngine, settings: DemoSettings,
                   stats: DemoStats) -> list[_Plan]:
    """Run the searches the demonstrations show: all first queries in one batch, then the sub-queries."""
    s = settings
    plans = []
    for row, result in zip(rows, _search(engine, [(r.question, r.question) for r in rows], s.topk)):
        if not result.ok:
            stats.search_failed_dropped += 1
            continue
        plans.append(_Plan(row, [(row.question, _shown(result, s.topk, s.max_doc_words, row.golden_answers))]))
    if s.max_searches < 2:
        return plans
    # rows whose first documents do not show the answer (or cannot be judged: yes/no) try a sub-query
    wanted: list[tuple[_Plan, list[str]]] = []
    for plan in plans:
        if contains_answer(plan.documents(), plan.row.golden_answers):
            continue
        seen = {d.title for d in plan.documents()}
        candidates = [q for q in _subqueries(plan.row, s.subquery_field) if q not in seen]
        if candidates:
            wanted.append((plan, candidates))
    flat = [(q, plan.row.question) for plan, candidates in wanted for q in candidates]
    results = iter(_search(engine, flat, s.topk))
    for plan, candidates in wanted:
        options = []
        for query in candidates:
            result = next(results)
            if result.ok:
                options.append((query, _shown(result, s.topk, s.max_doc_words, plan.row.golden_answers)))
        grounded = [o for o in options if contains_answer(o[1], plan.row.golden_answers)]
        if grounded or options:
            plan.searches.append((grounded or options)[0])
    return plans


def _trajectory(plan: _Plan, prompt_ids: list[int], tokenizer: Any, settings: DemoSettings) -> Trajectory:
    """The demonstration as a trajectory, built through the rollout's own append path."""
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    row = plan.row
    traj = Trajectory(question=row.question, golden_answers=row.golden_answers, prompt_ids=list(prompt_ids))
    for i, (query, docs) in enumerate(plan.searches):
        text = (FIRST_SEARCH if i == 0 else NEXT_SEARCH).format(query=query)
        traj.append(encode(text), 1, text)
        info_text, info_ids, shown = fit_observation(docs, tokenizer, settings.max_obs_tokens, settings.doc_format)
        traj.turns.append(Turn(action="search", text=text, n_tokens=len(encode(text)), query=query,
                               documents=logged_documents(shown)))
        traj.append(info_ids, 0, info_text)
    answer = ANSWER.format(answer=row.golden_answers[0])
    traj.append(encode(answer), 1, answer)
    traj.turns.append(Turn(action="answer", text=answer, n_tokens=len(encode(answer))))
    traj.answer_text, traj.status = answer, "answered"
    return traj


def build_demonstrations(rows: Sequence[QARow], engine: SearchEngine, tokenizer: Any, prompt_ids: Sequence[list[int]],
                         settings: DemoSettings) -> tuple[list[Trajectory], DemoStats]:
    """One demonstration trajectory per usable row; ``prompt_ids[i]`` is row i's encoded policy prompt.

    Returns the trajectories (``loss_mask`` 1 on the policy's text, 0 on the ``<information>`` blocks)
    and the counts of what happened to every row.
    """
    stats = DemoStats(rows=len(rows))
    prompts = {id(row): ids for row, ids in zip(rows, prompt_ids)}
    demos = []
    for plan in _plan_searches(rows, engine, settings, stats):
        grounded = contains_answer(plan.documents(), plan.row.golden_answers)
        if grounded is False and settings.require_grounded:
            stats.ungrounded_dropped += 1
            continue
        traj = _trajectory(plan, prompts[id(plan.row)], tokenizer, settings)
        if len(traj.prompt_ids) + len(traj.response_ids) > settings.max_context_tokens:
            stats.too_long_dropped += 1
            continue
        demos.append(traj)
        stats.grounded += grounded is True
        stats.closed_answers += grounded is None
        if len(plan.searches) == 1:
            stats.one_search += 1
        else:
            stats.two_searches += 1
    return demos, stats


def demonstration_example(traj: Trajectory) -> SFTExample:
    """The SFT example of a demonstration: the prompt (no loss), then the response with its ``loss_mask``."""
    return SFTExample(traj.prompt_ids + traj.response_ids, [0] * len(traj.prompt_ids) + traj.loss_mask)


# ---------------------------------------------------------------------------------------------
# the cached warm-up of a run


@dataclass
class WarmupResult:
    """Where the warmed-up policy is (a Hugging Face directory) and its ``warmup.json`` record."""

    model_dir: Path
    info: dict[str, Any]
    cached: bool  # True when an earlier run had already trained it


def warmup_key(cfg: TrainConfig, model_path: str, train_files: Sequence[str], eval_files: Sequence[str],
               template: str, bf16: bool) -> str:
    """The cache key: a hash of everything that shapes the warmed-up model, files by content.

    The base model (its files: :func:`~zerosearch.llm.models.model_fingerprint`), the training and excluded
    evaluation files, the documents' engine (``warmup.engine``: a ``bm25:FILE`` corpus by its bytes, see
    :func:`~zerosearch.search.factory.engine_fingerprint`; a retrieval server by its address only), the prompt
    template's text, the warm-up settings, the rollout budgets the demonstrations must fit, the seed, the
    precision, and :data:`WARMUP_VERSION` with the package version (the code: bump WARMUP_VERSION when a
    change alters the demonstrations or the training).
    """
    # whether the run turns the warm-up on does not shape it (`zerosearch warmup` runs it either way)
    settings = {k: v for k, v in dataclasses.asdict(cfg.warmup).items() if k != "enabled"}
    with naming_key("warmup.engine", cfg.warmup.engine):
        settings["engine"] = engine_fingerprint(cfg.warmup.engine)
    payload = {
        "demo_version": WARMUP_VERSION, "zerosearch": __version__, "model": model_fingerprint(model_path),
        "train_files": [file_digest(f) for f in train_files],
        "eval_files": [file_digest(f) for f in eval_files],
        "template": template, "prompt_style": cfg.prompt_style,
        "warmup": settings,
        "budgets": [cfg.topk, cfg.max_turns, cfg.max_obs_tokens, cfg.max_context_tokens],
        "doc_format": cfg.doc_format,
        "seed": cfg.seed, "bf16": bf16,
    }
    return cache_key(payload)


def _eval_questions(files: Sequence[str]) -> set[str]:
    return {normalize_answer(row.question) for row in load_qa_files(list(files))} if files else set()


def _select_rows(rows: list[QARow], excluded: set[str], max_examples: int, seed: int) -> tuple[list[QARow], int]:
    """Rows not among the evaluated questions, then a seeded sample of ``max_examples`` (0 = all)."""
    kept = [r for r in rows if normalize_answer(r.question) not in excluded]
    overlap = len(rows) - len(kept)
    if max_examples and max_examples < len(kept):
        picked = np.random.default_rng([seed, 3]).choice(len(kept), size=max_examples, replace=False)
        kept = [kept[i] for i in sorted(picked.tolist())]
    return kept, overlap


def _record(traj: Trajectory) -> dict[str, Any]:
    return {**traj.to_record(), "answer": traj.golden_answers[0]}


def demonstrated_questions(model_dir: str | os.PathLike[str]) -> set[str] | None:
    """The training questions a warm-up demonstrated with their gold answers as the target: the question of every
    record of ``model_dir``'s ``demonstrations.jsonl``, normalised as answers are
    (:func:`~zerosearch.rewards.normalize_answer`, the rule that keeps evaluation questions out of the warm-up).
    None when ``model_dir`` is not a warm-up's directory (no such file: a base model, a hub id, an RL checkpoint).
    Demonstrations longer than ``warmup.max_length`` were built but not trained on; they count as seen.
    """
    path = Path(model_dir) / DEMOS_FILE
    if not path.is_file():
        return None
    return {normalize_answer(record["question"]) for record in read_jsonl(path)}


def run_warmup(cfg: TrainConfig, *, force: bool = False, progress: bool = True,
               engine: SearchEngine | None = None) -> WarmupResult:
    """The warmed-up policy for ``cfg`` (``cfg.model`` after ``cfg.warmup``): from the cache, or trained now.

    ``force``: train again even when the cache holds it. ``engine``: use this engine object instead of
    building ``cfg.warmup.engine``. Raises ValueError when no demonstration could be built (the message
    gives the counts) and ConfigError-derived errors for bad settings.
    """
    w = cfg.warmup
    train_files = list(cfg.train_files) or default_train_files()
    eval_files = list(cfg.final_eval.files) or default_dev_files()
    model_path = resolve_model_path(cfg.model)
    template = load_template(cfg.prompt_template)
    bf16 = resolve_autocast(cfg.autocast, pick_device(cfg.device)) is not None
    key = warmup_key(cfg, model_path, train_files, eval_files, template, bf16)
    final = cache_dir() / "warmup" / key
    if (final / INFO_FILE).exists() and not force:
        return WarmupResult(final, json.loads((final / INFO_FILE).read_text(encoding="utf-8")), cached=True)

    if cfg.max_turns < 1:
        raise ConfigError(NO_SEARCH_TO_DEMONSTRATE)
    started = time.perf_counter()
    _say(f"format warm-up of {cfg.model} (first run only; cached as {final})", progress)
    rows, overlap = _select_rows(load_qa_files(train_files), _eval_questions(eval_files), w.max_examples, cfg.seed)
    policy = load_policy(cfg.model, prompt_style=cfg.prompt_style, weights=False)  # the SFT loads the weights
    tokenizer = policy.tokenizer
    prompt_ids = [policy.encode(policy_prompt(r.question, template)) for r in rows]
    if engine is None:
        engine = build_configured_engine(w.engine, "warmup.engine")
    settings = DemoSettings(topk=cfg.topk, max_searches=cfg.max_turns, max_obs_tokens=cfg.max_obs_tokens,
                            max_context_tokens=cfg.max_context_tokens, max_doc_words=w.max_doc_words,
                            require_grounded=w.require_grounded, subquery_field=w.subquery_field,
                            doc_format=cfg.doc_format)
    demos, stats = build_demonstrations(rows, engine, tokenizer, prompt_ids, settings)
    if not demos:
        why = (f"; every search through warmup.engine={w.engine} failed: the warm-up needs a real engine that "
               "answers without gold answers (example, bm25:FILE, dense:FILE, retrieval:URL)"
               if stats.rows and stats.search_failed_dropped == stats.rows else "")
        raise ValueError(f"no warm-up demonstration could be built from {', '.join(train_files)}: "
                         f"{dataclasses.asdict(stats)}{why}")
    _say(f"{len(demos)} demonstrations ({stats.one_search} with one search, {stats.two_searches} with two) "
         f"from {stats.rows} training rows", progress)

    work = final.with_name(final.name + ".partial")  # a rerun after a kill resumes the SFT checkpoints here
    work.mkdir(parents=True, exist_ok=True)
    with (work / DEMOS_FILE).open("w", encoding="utf-8") as handle:
        for traj in demos:
            handle.write(json.dumps(_record(traj), ensure_ascii=False) + "\n")
    sft = SFTSettings(lr=w.lr, epochs=w.epochs, batch_size=w.batch_size, max_length=w.max_length, seed=cfg.seed,
                      save_steps=25, lora=w.lora, lora_r=w.lora_r, lora_alpha=w.lora_alpha,
                      bf16=bf16 or None, logging_steps=1)
    try:
        trained = train_sft(cfg.model, [demonstration_example(t) for t in demos], [], work, sft,
                            device=cfg.device, progress=progress)
    except NoExampleFitsError as exc:
        shutil.rmtree(work, ignore_errors=True)  # nothing was trained: no checkpoint to resume
        raise ConfigError(f"none of the {exc.too_long} warm-up demonstrations fits warmup.max_length="
                          f"{exc.max_length} tokens; raise warmup.max_length") from None
    except KeyboardInterrupt:
        print(f"[zerosearch] warm-up interrupted: its checkpoints (every {sft.save_steps} steps) are kept in "
              f"{work}; the same command goes on from the newest", file=sys.stderr)
        raise
    if trained["too_long_dropped"]:
        _say(f"{trained['too_long_dropped']} of {len(demos)} demonstrations are longer than warmup.max_length="
             f"{w.max_length} tokens and were left out", progress)
    info = {
        "base_model": cfg.model, "base_model_path": model_path, "key": key, "engine": w.engine,
        "train_files": train_files, "excluded_eval_files": eval_files, "eval_overlap_dropped": overlap,
        "demonstrations": dataclasses.asdict(stats), "demo_settings": dataclasses.asdict(settings),
        "sft": trained, "seconds": time.perf_counter() - started,
    }
    (work / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    write_policy_info(work, doc_format=cfg.doc_format)
    if final.exists():  # --force, or a concurrent run finished first
        shutil.rmtree(final)
    os.replace(work, final)
    return WarmupResult(final, info, cached=False)


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"[zerosearch] {message}", file=sys.stderr)
