"""What an evaluation is: which questions, how they are answered, against which engine, sampled or not.

Torch-free, so that the training config, the evaluation cache (:mod:`zerosearch.compare`), the pool and the
command line build an evaluation without loading a model; :func:`zerosearch.evaluate.evaluate` runs it.

* :class:`EvalSettings`: everything that changes what the model generates (a resumed evaluation must keep it).
  The turn budgets are the rollout's settings, declared once in :class:`~zerosearch.config.RolloutSettings`
  (range and meaning) and copied here with the evaluation's own defaults where Search-R1's evaluation differs
  from training. ``zerosearch eval``'s flags are made from these fields (:mod:`zerosearch.commands.flags`).
* :class:`SamplingSettings`: K sampled answers per question besides the greedy one.
* :class:`DataSelection`: the QA files, their split into datasets (:func:`split_datasets`, named as the papers
  name them), the seeded sample and the limit (:func:`select_rows`).
* :class:`EvalSpec`: the three together with the engine and where the model runs: an evaluation of any model,
  the unit the evaluation cache keys on.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zerosearch.config import EVAL_METHODS, RolloutSettings, TrainConfig, carries_kv_cache
from zerosearch.data import QARow, load_qa_file
from zerosearch.policy_info import resolve_doc_format
from zerosearch.settings import check_settings, same_as, setting

__all__ = ["DataSelection", "EvalSettings", "EvalSpec", "MAX_DEFAULT_CONTEXT", "METHODS", "NEEDS_ENGINE",
           "SamplingSettings", "default_topk", "paper_source_name", "select_rows", "split_datasets"]

METHODS = EVAL_METHODS
NEEDS_ENGINE = ("agent", "rag")
MAX_DEFAULT_CONTEXT = 8192
GOOGLE_TOPK = 5  # the ZeroSearch paper's documents per Google search
SEARCH_R1_TOPK = 3  # Search-R1's documents per search of its wiki corpus


def default_topk(engine_spec: str | None) -> int:
    """Documents per search: 5 for Google (the ZeroSearch paper), else 3 (Search-R1's wiki setting)."""
    return GOOGLE_TOPK if (engine_spec or "").strip() == "google" else SEARCH_R1_TOPK


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes what the model generates (a resumed evaluation must keep it).

    ``topk`` None: :func:`default_topk` of the engine; ``doc_format`` None: the format the model was trained with
    (:mod:`zerosearch.policy_info`); ``max_context_tokens`` None: the model's context length, at most 8192.
    :meth:`resolved` fills in the first two, :meth:`rollout` gives the runner's settings, :meth:`of_run` a
    training run's evaluation. Raises ConfigError (a ValueError) naming the setting.
    """

    method: str = setting("agent", choices=METHODS, help="how to answer (default: {default})")
    max_turns: int = same_as(RolloutSettings, "max_turns", default=4,
                             help="agent: searches before the forced answer turn (default: {default}; training "
                                  f"used {RolloutSettings.max_turns})")
    topk: int | None = same_as(RolloutSettings, "topk", default=None,
                               help=f"documents per search (default: {GOOGLE_TOPK} for google as in the paper, else "
                                    f"{SEARCH_R1_TOPK} as Search-R1)")
    max_turn_tokens: int = same_as(RolloutSettings, "max_turn_tokens")
    max_obs_tokens: int = same_as(RolloutSettings, "max_obs_tokens",
                                  help="tokens of the documents shown after a search at most (default: {default}; a "
                                       "training run's final evaluation uses the run's max_obs_tokens)")
    max_context_tokens: int | None = same_as(RolloutSettings, "max_context_tokens", default=None,
                                             help="prompt + response length limit (default: the model's, at most "
                                                  f"{MAX_DEFAULT_CONTEXT})")
    batch_size: int = setting(16, low=1, metavar="N", help="questions per generation batch (default: {default})")
    prompt_template: str | None = setting(None, metavar="NAME_OR_FILE", help="prompt template (default: policy for "
                                          "the agent, eval_<method> for baselines)")
    prompt_style: str = same_as(TrainConfig, "prompt_style",
                                help="auto: the chat template when the tokenizer has one (default)")
    autocast: str = same_as(TrainConfig, "autocast",
                            help="bf16 mixed precision over fp32 weights; auto: on CPUs with bf16 instructions "
                                 "(avx512_bf16, AMX), ~1.5x faster generation there (default: {default})")
    kv_cache: str = same_as(RolloutSettings, "kv_cache",
                            help="static: a preallocated KV cache per generate call; it decodes faster on CPU but "
                                 "re-encodes the whole context every turn, so on multi-turn evaluation the default "
                                 "(dynamic, continuing from the turn before's cache) is faster (default: {default})")
    doc_format: str | None = same_as(RolloutSettings, "doc_format", default=None,
                                     help="how documents are shown: zerosearch 'Doc 1: text' (web results: title "
                                          "then snippet), or search_r1 'Doc 1(Title: \"t\") text' (default: the "
                                          "format the model was trained with, recorded in its zerosearch.json; "
                                          "else zerosearch)")
    # with kv_cache=dynamic, a later turn continues from the turn before's KV cache (zerosearch.turn_cache)
    kv_reuse: bool = same_as(RolloutSettings, "kv_reuse",
                             help="with --kv-cache dynamic, re-encode the whole context at every turn instead of "
                                  "continuing from the turn before's KV cache (the same answers in fp32; resumes an "
                                  "evaluation written before kv_reuse existed)")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def of_run(cls, cfg: TrainConfig, method: str = "agent", batch_size: int = 16) -> EvalSettings:
        """A training run's settings, greedy: its rollout budgets (:attr:`TrainConfig.rollout`), document format,
        prompt style and precision; the run's prompt template for the agent (the baselines keep their own)."""
        rollout = cfg.rollout
        return cls(method=method, max_turns=rollout.max_turns, topk=rollout.topk,
                   max_turn_tokens=rollout.max_turn_tokens, max_obs_tokens=rollout.max_obs_tokens,
                   max_context_tokens=rollout.max_context_tokens, batch_size=batch_size,
                   prompt_template=cfg.prompt_template if method == "agent" else None, prompt_style=cfg.prompt_style,
                   autocast=cfg.autocast, kv_cache=rollout.kv_cache, doc_format=rollout.doc_format,
                   kv_reuse=rollout.kv_reuse)

    def resolved(self, model: str, engine_spec: str | None = None) -> EvalSettings:
        """These settings with the defaults that depend on the model and the engine filled in: ``topk`` by the
        engine (:func:`default_topk`), ``doc_format`` as ``model`` records it (ValueError naming its file when
        that record is bad)."""
        return replace(self, topk=self.topk or default_topk(engine_spec),
                       doc_format=resolve_doc_format(self.doc_format, model))

    def rollout(self, max_context_tokens: int) -> RolloutSettings:
        """The runner's settings: greedy, ``max_turns`` searches for the agent and one forced answer turn for a
        baseline, a generate call per ``batch_size`` questions, the given context budget (the model's when
        ``max_context_tokens`` is None). ValueError unless the settings are :meth:`resolved`."""
        if self.topk is None or self.doc_format is None:
            raise ValueError("the runner needs resolved settings: EvalSettings.resolved(model, engine_spec)")
        return RolloutSettings(
            max_turns=self.max_turns if self.method == "agent" else 0, topk=self.topk,
            max_turn_tokens=self.max_turn_tokens, max_obs_tokens=self.max_obs_tokens,
            max_context_tokens=max_context_tokens, temperature=0.0, batch_size=self.batch_size,
            kv_cache=self.kv_cache, doc_format=self.doc_format, kv_reuse=self.kv_reuse,
        )

    @property
    def template_name(self) -> str:
        if self.prompt_template is not None:
            return self.prompt_template
        return "policy" if self.method == "agent" else f"eval_{self.method}"

    def generation_key(self) -> dict[str, Any]:
        """The settings that decide the outputs (batch size only regroups the same questions)."""
        key = asdict(self)
        del key["batch_size"], key["method"]  # the method is recorded on its own
        # Recorded only where the turn cache is carried: the same tokens in fp32, but not bit for bit in bf16.
        # Evaluations written before kv_reuse existed re-encoded every turn and recorded no key, so they
        # resume under kv_cache=static or kv_reuse=False, and refuse to mix with carried turns.
        if not self.carries_kv_cache:
            del key["kv_reuse"]
        return key

    @property
    def carries_kv_cache(self) -> bool:
        """Whether a later turn continues from the turn before's KV cache (``kv_reuse`` with a dynamic cache)."""
        return carries_kv_cache(self.kv_cache, self.kv_reuse)


@dataclass(frozen=True)
class SamplingSettings:
    """K answers sampled per question besides the greedy one (a resumed evaluation must keep them).

    ``samples``: K, 0 = greedy only (nothing about sampling is recorded). ``temperature``: > 0, the
    distribution ``softmax(logits / T)`` with no top-k/top-p (1.0 = the training rollouts'). ``seed``: the
    root of every row's seed (:meth:`row_seed`).
    """

    samples: int = 0
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0 (0: greedy only), got {self.samples}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"the sampling temperature must be a number > 0, got {self.temperature}")

    @property
    def enabled(self) -> bool:
        return self.samples > 0

    @property
    def pass_ks(self) -> list[int]:
        """The k of the pass@k reported: the powers of two below K, then K (K=8: 1, 2, 4, 8)."""
        ks = [1 << i for i in range(self.samples.bit_length()) if 1 << i < self.samples]
        return ks + [self.samples] if self.samples else []

    def row_seed(self, dataset: str, key: str, index: int) -> int:
        """The seed of sample ``index`` of question ``key`` in ``dataset`` (independent of batching)."""
        from zerosearch.llm.seeded_sampling import derive_seed  # inside: that module imports torch, this one not

        return derive_seed(self.seed, dataset, key, index)


@dataclass(frozen=True)
class DataSelection:
    """The questions of an evaluation: ``files`` (QA files: jsonl / json / parquet), each one dataset named after
    its stem, or several, one per value of ``group_by`` (see :func:`split_datasets`); per
    dataset a seeded sample of ``sample`` rows (drawn with ``seed``), then the first ``limit``. ``names``: one
    dataset name per file instead of the stems."""

    files: Sequence[str]
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    names: Sequence[str] | None = None
    group_by: str | None = "data_source"

    def __post_init__(self) -> None:
        # kept as tuples: the selection is a value (the evaluation cache keys on it), not a list to append to
        object.__setattr__(self, "files", tuple(str(f) for f in self.files))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))

    def datasets(self) -> list[tuple[str, str, list[QARow]]]:
        """``(name, file, rows)`` per dataset, the rows selected. Raises ValueError / DataError as
        :func:`split_datasets` and :func:`select_rows` do."""
        return [(name, path, select_rows(rows, self.limit, self.sample, self.seed))
                for name, path, rows in split_datasets(self.files, self.names, self.group_by)]

    def record(self) -> dict[str, Any]:
        """What ``results.json`` records of the selection (``selection``)."""
        return {"limit": self.limit, "sample": self.sample, "seed": self.seed, "group_by": self.group_by}


# ---------------------------------------------------------------------------------------------
# Choosing the questions


def select_rows(rows: Sequence[QARow], limit: int | None = None, sample: int | None = None,
                seed: int = 0) -> list[QARow]:
    """``sample`` rows drawn with ``seed`` (all if fewer; file order kept), then the first ``limit``."""
    chosen = list(rows)
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be >= 1, got {sample}")
        if sample < len(chosen):
            picked = np.random.default_rng(seed).choice(len(chosen), size=sample, replace=False)
            chosen = [chosen[i] for i in sorted(picked.tolist())]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        chosen = chosen[:limit]
    return chosen


# The names the papers' tables use (Search-R1, ZeroSearch), keyed by spellings found in the wild
# (lowercase, without "_", "-", " "); any other source keeps its own name.
PAPER_SOURCE_NAMES = {
    "nq": "nq", "naturalquestions": "nq", "naturalquestion": "nq",
    "triviaqa": "triviaqa", "tqa": "triviaqa",
    "popqa": "popqa",
    "hotpotqa": "hotpotqa", "hotpot": "hotpotqa",
    "2wikimultihopqa": "2wikimultihopqa", "2wiki": "2wikimultihopqa", "2wikimqa": "2wikimultihopqa",
    "wikimultihopqa": "2wikimultihopqa",
    "musique": "musique",
    "bamboogle": "bamboogle",
}


def paper_source_name(source: str) -> str:
    """The papers' name for a dataset source (``natural_questions`` -> ``nq``), else the source as given."""
    key = re.sub(r"[\s_\-]+", "", source.strip().lower())
    return PAPER_SOURCE_NAMES.get(key, source.strip())


def _group_value(row: QARow, group_by: str) -> str:
    if group_by == "data_source":
        return row.data_source
    value = row.get(group_by)
    if value is None or isinstance(value, (dict, list)) or (isinstance(value, str) and not value.strip()):
        raise row.error(group_by, "a value to group the rows by (--group-by)", value)
    return str(value).strip()


def split_datasets(data_files: Sequence[str], names: Sequence[str] | None = None,
                   group_by: str | None = "data_source") -> list[tuple[str, str, list[QARow]]]:
    """``(name, file, rows)`` per dataset: each file split by ``group_by``, as the papers' tables list them.

    The published test files (Search-R1 / ZeroSearch parquet) hold several datasets in one file with a
    ``data_source`` column, so by default (``group_by="data_source"``) a file whose rows name their source
    is split into one dataset per source, named as the papers name them (:func:`paper_source_name`); a
    file without that column (its rows' source is the file stem) is one dataset. ``group_by=FIELD``
    splits by any (dotted) field of the rows; None keeps every file whole. ``names``, one per file, name
    files that are not split. Raises ValueError for repeated dataset names and DataError (file, row,
    field) for a row without the field.
    """
    if not data_files:
        raise ValueError("no data files given: pass at least one QA file (--data FILE[,FILE...])")
    if names is not None and len(names) != len(data_files):
        raise ValueError(f"{len(names)} name(s) for {len(data_files)} data file(s); give one name per file")
    out: list[tuple[str, str, list[QARow]]] = []
    for i, path in enumerate(data_files):
        label = names[i] if names is not None else Path(path).stem
        rows = load_qa_file(path)
        groups: dict[str, list[QARow]] = {}
        for row in rows if group_by is not None else ():
            groups.setdefault(_group_value(row, group_by), []).append(row)
        # rows without a data_source of their own carry the file stem: such a file is one dataset, as is
        # a file of a single group that --names names
        unsplit = group_by == "data_source" and set(groups) == {Path(path).stem}
        if not groups or unsplit or (len(groups) == 1 and names is not None):
            out.append((label, str(path), rows))
        else:
            out.extend((paper_source_name(value), str(path), group) for value, group in groups.items())
    labels = [name for name, _, _ in out]
    repeated = sorted({n for n in labels if labels.count(n) > 1})
    if repeated:
        raise ValueError(f"dataset name(s) {repeated} repeat; name the files apart with --names "
                         f"(or split them differently with --group-by)")
    return out


@dataclass(frozen=True)
class EvalSpec:
    """An evaluation of any model: the questions, the settings, the engine spec (``example``, ``bm25:FILE``,
    ``http://...``, ``google``; needed by ``agent`` and ``rag``), the sampled answers and where the model runs.

    ``zerosearch eval`` builds one from its flags, :func:`zerosearch.compare.eval_spec` from a training run's
    config, :func:`zerosearch.pool.pool_eval_spec` for the pool's scoring; :func:`zerosearch.evaluate.evaluate`
    runs it and the evaluation cache keys on it.
    """

    data: DataSelection
    settings: EvalSettings = field(default_factory=EvalSettings)
    engine: str | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    device: str = same_as(TrainConfig, "device", help="torch device (default: cuda if available, else cpu)")
    dtype: str = same_as(TrainConfig, "dtype", help="model dtype (default: bfloat16 on GPU, float32 on CPU)")

    def __post_init__(self) -> None:
        check_settings(self)
