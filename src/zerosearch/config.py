"""Configs are dataclasses: one per component, validated in ``__post_init__``.

A YAML file is a saved config; ``key=value`` overrides (dotted for nested sections, values parsed as
YAML: ``lr=1e-5``, ``curriculum.end=0.75``, ``train_files=[a.jsonl,b.parquet]``) are applied on top.
Unknown keys are errors that list the close matches, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zerosearch.curriculum import Curriculum
from zerosearch.protocol import DEFAULT_DOC_FORMAT, DOC_FORMATS
from zerosearch.settings import ConfigError, check_settings, same_as, setting
from zerosearch.settings import check_choice as _check_choice
from zerosearch.settings import check_range as _check_range


def check_lora_rank_alpha(r_key: str, r: int, alpha_key: str, alpha: float) -> None:
    """The two numbers every LoRA adapter has, wherever they are set (``lora.*``, ``warmup.lora_*``, the SFT
    settings of simulator tuning). Raises ConfigError naming the key.

    peft scales the adapter's output by ``alpha / r`` (rsLoRA: ``alpha / sqrt(r)``): ``alpha = 0`` makes that
    scale 0, so every adapter gradient is 0 and a whole run trains nothing without a word; a negative alpha
    flips the update's sign. ``r`` is the adapter's rank, at least 1.
    """
    _check_range(r_key, r, 1)
    if not alpha > 0:
        raise ConfigError(f"{alpha_key}={alpha!r} must be > 0: the adapter's output is scaled by alpha/r, so "
                          f"{alpha!r} {'zeroes every LoRA gradient' if alpha == 0 else 'reverses the update'} "
                          f"(a common choice is alpha = 2 * r, e.g. {r_key}=16 {alpha_key}=32)")


@dataclass
class LoraConfig:
    """LoRA adapters (peft). ``enabled=false`` means full fine-tuning.

    r: the adapter rank (>= 1). alpha: the scale numerator (> 0; the adapter's output is scaled by
    ``alpha / r``). dropout: peft's ``lora_dropout``, which must be 0: every model is trained with dropout
    off (:func:`zerosearch.llm.models.disable_dropout`), so that the log ratio and the KL compare the sampling
    policy with itself; the key stays so that saved configs load. target_modules: peft's ``target_modules``,
    ``all-linear`` or a list of module names (not empty; names the model lacks are a ConfigError when it
    loads). Every value is checked, ``enabled`` or not.
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        check_lora_rank_alpha("lora.r", self.r, "lora.alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout={self.dropout!r} must lie in [0, 1)")
        if self.dropout > 0:
            raise ConfigError(
                f"lora.dropout={self.dropout!r}: zerosearch trains with every dropout off (the passes that sample, "
                "score and train the policy must be one network, or the PPO ratio and the KL measure dropout noise; "
                "TRL's disable_dropout_in_model), so an adapter dropout would do nothing; set lora.dropout=0")
        modules = [self.target_modules] if isinstance(self.target_modules, str) else list(self.target_modules)
        if not modules or any(not isinstance(m, str) or not m.strip() for m in modules):
            raise ConfigError(f"lora.target_modules={self.target_modules!r} must name the modules to adapt: "
                              "all-linear (every linear layer but the output head) or a list such as "
                              "[q_proj,k_proj,v_proj,o_proj]")


KV_CACHES = ("dynamic", "static")
PROMPT_STYLES = ("auto", "chat", "raw")  # auto: the chat template where the tokenizer has one
DTYPES = ("auto", "float32", "bfloat16", "float16")
AUTOCAST_CHOICES = ("auto", "bf16", "off")  # bf16 mixed precision over fp32 weights (zerosearch.runtime)


@dataclass(frozen=True)
class RolloutSettings:
    """The rollout's turn settings (:mod:`zerosearch.rollout`): the home of each one's default, range and meaning.

    The train config exposes them as top-level keys (``max_turns``, ``topk``, ..., ``rollout_batch_size`` for
    ``batch_size``) and gathers them here in :attr:`TrainConfig.rollout`; the evaluation declares its own
    defaults for some (:class:`zerosearch.eval_settings.EvalSettings`); the verl agent loop takes them as keys of its
    entry. Each copies these fields (:func:`~zerosearch.settings.same_as`), so a range is written once. Raises
    ConfigError naming the key.
    """

    max_turns: int = setting(2, low=0, metavar="N", help="search turns before the forced answer turn (default: "
                             "{default}, the paper's)")
    topk: int = setting(5, low=1, metavar="K", help="documents per search (default: {default})")
    max_turn_tokens: int = setting(500, low=1, metavar="N", help="tokens generated per turn at most (default: "
                                   "{default})")
    max_obs_tokens: int = setting(2048, low=1, metavar="N", help="tokens of the documents shown after a search at "
                                  "most; documents are dropped from the end to fit (default: {default})")
    max_context_tokens: int = setting(8192, low=1, metavar="N", help="prompt + response length limit (default: "
                                      "{default})")
    temperature: float = setting(1.0, low=0.0, help="sampling temperature; 0 is greedy (default: {default})")
    batch_size: int = setting(0, low=0, metavar="N", help="sequences per generate call; 0 = all at once")
    # The default grows the cache by concatenation at every token, which was a third of a decode step's time on
    # a 2-core CPU (SmolLM2-135M).
    kv_cache: str = setting("dynamic", choices=KV_CACHES, help="static: a preallocated KV cache per generate call "
                            "(faster decoding on CPU)")
    doc_format: str = setting(DEFAULT_DOC_FORMAT, choices=DOC_FORMATS, help="how documents are shown in "
                              "<information>: zerosearch (the original's 'Doc i: text') or search_r1 ('Doc i(Title: "
                              "\"t\") text'); recorded with every saved policy, and eval uses it by default")
    kv_reuse: bool = setting(True, flag="--no-kv-reuse", help="a later turn continues from the KV cache of the turn "
                             "before and runs only the environment's new tokens (same rollouts; "
                             "zerosearch/turn_cache.py); applies with kv_cache=dynamic and one generate call per "
                             "turn (batch_size 0)")

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def carries_kv_cache(self) -> bool:
        """Whether the settings let a later turn continue from the turn before's KV cache (``kv_reuse`` with a
        dynamic cache; the runner also needs one generate call per turn and a model whose cache allows it)."""
        return carries_kv_cache(self.kv_cache, self.kv_reuse)


# the paper's budgets, greedy: what a rerun must reproduce (simulator tuning's collection, by default)
GREEDY_ROLLOUT = RolloutSettings(temperature=0.0)


def carries_kv_cache(kv_cache: str, kv_reuse: bool) -> bool:
    """The settings' half of the turn cache's rule: ``kv_reuse`` on and ``kv_cache`` dynamic (a static cache is
    preallocated per ``generate`` call and cannot be carried)."""
    return kv_reuse and kv_cache == "dynamic"


@dataclass
class SimulatorConfig:
    """The LLM that writes the simulated documents.

    backend: ``transformers`` (in-process; all search calls of a turn batched into one generate) or
    ``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp; needs ``base_url``).
    model: path / hub id, or ``policy`` for the run's base ``model`` (a frozen copy; with the format
    warm-up on, the model *before* the warm-up, since the warm-up trains the policy protocol, not the
    simulator's).
    mode: ``finetuned`` (prompt of the published Simulation_LLM_* checkpoints) or ``prompt`` (few-shot
    prompt for an off-the-shelf instruct model).
    prefix_cache: (``transformers`` backend, ``kv_cache: dynamic``) the prompts' constant start (chat header,
    instructions, few-shot example: everything before the first per-request field) is run once and its KV cache
    reused by every request (:mod:`zerosearch.llm.prefix_cache`); the same tokens reach the model, so the same
    documents come back, up to float rounding. A server does this itself (vLLM's prefix caching).
    """

    backend: str = "transformers"
    model: str = "policy"
    mode: str = "prompt"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int = 600
    max_concurrency: int = 16
    timeout: float = 60.0
    max_retries: int = 3
    max_batch_size: int = 32
    prefix_cache: bool = True

    def __post_init__(self) -> None:
        _check_choice("engine.simulator.backend", self.backend, ("transformers", "openai"))
        _check_choice("engine.simulator.mode", self.mode, ("finetuned", "prompt"))
        if self.backend == "openai" and not self.base_url:
            raise ConfigError(
                "engine.simulator.backend=openai needs engine.simulator.base_url, "
                "e.g. engine.simulator.base_url=http://localhost:8000/v1"
            )
        _check_range("engine.simulator.max_tokens", self.max_tokens, 1)
        _check_range("engine.simulator.temperature", self.temperature, 0.0)
        _check_range("engine.simulator.max_concurrency", self.max_concurrency, 1)
        _check_range("engine.simulator.max_batch_size", self.max_batch_size, 1)
        _check_range("engine.simulator.max_retries", self.max_retries, 0)
        if not self.timeout > 0:
            raise ConfigError(f"engine.simulator.timeout={self.timeout} must be > 0 (seconds per request)")


@dataclass
class EngineConfig:
    """The search engine used during training.

    kind: ``simulated`` (the ZeroSearch way: an LLM writes the documents, ``simulator`` below, with the
    noise curriculum) or ``real`` (Search-R1's way, the paper's baseline: the engine ``spec`` answers,
    any spec the other commands take: ``example``, ``bm25:FILE``, ``dense:FILE``, ``http://HOST:PORT``,
    ``google``). With ``real`` the curriculum does not apply (the engine decides what comes back): the
    metrics log ``noise_probability`` and ``noisy_share`` as null. Failed searches are counted and left
    out of the update either way.
    """

    kind: str = "simulated"
    spec: str = ""  # kind=real only
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)

    def __post_init__(self) -> None:
        _check_choice("engine.kind", self.kind, ("simulated", "real"))
        if self.kind == "real" and not self.spec:
            raise ConfigError("engine.kind=real needs engine.spec, the engine to train against, e.g. "
                              "engine.spec=example (BM25 over the bundled paragraphs), engine.spec=bm25:FILE, "
                              "engine.spec=http://127.0.0.1:8000 or engine.spec=google")
        if self.kind == "simulated" and self.spec:
            raise ConfigError(f"engine.spec={self.spec!r} applies to engine.kind=real; the simulated engine is "
                              "set by engine.simulator.* (or set engine.kind=real)")
        if self.kind == "real" and self.spec.startswith("simulated:"):
            raise ConfigError(f"engine.spec={self.spec!r} is a simulated engine: use engine.kind=simulated and "
                              "engine.simulator.model=... (with the noise curriculum)")


@dataclass
class WarmupConfig:
    """The format warm-up ("cold start"): supervised training on demonstrations in the policy protocol
    before RL, for models too small to find the protocol by themselves (see :mod:`zerosearch.warmup`).

    Demonstrations are built from the run's ``train_files`` (never the evaluation questions) with a real
    ``engine``: the question as the first query, a sub-query from ``subquery_field`` (HotpotQA's
    supporting titles) as the second where the first search did not show the answer, and the gold answer.
    The result is cached by every setting that shapes it, so a second run skips it.
    """

    enabled: bool = False
    engine: str = "example"  # any engine spec: example, bm25:FILE, dense:FILE, http://...
    subquery_field: str = "metadata.supporting_titles"  # a row field listing sub-queries ("" = none)
    max_examples: int = 0  # demonstrations to train on (a seeded sample of the rows); 0 = every row
    max_doc_words: int = 40  # documents are cut to search-snippet length around the answer (0 = whole)
    require_grounded: bool = True  # leave out rows whose shown documents never contain the answer
    epochs: float = 2.0
    lr: float = 1e-4
    batch_size: int = 4
    max_length: int = 1024
    lora: bool = False  # LoRA adapters (merged when saved) instead of all weights
    lora_r: int = 16  # >= 1
    lora_alpha: int = 32  # > 0 (the adapter is scaled by lora_alpha / lora_r)

    def __post_init__(self) -> None:
        _check_range("warmup.max_examples", self.max_examples, 0)
        _check_range("warmup.max_doc_words", self.max_doc_words, 0)
        _check_range("warmup.epochs", self.epochs, 0.0)
        _check_range("warmup.lr", self.lr, 0.0)
        for name in ("batch_size", "max_length"):
            _check_range(f"warmup.{name}", getattr(self, name), 1)
        check_lora_rank_alpha("warmup.lora_r", self.lora_r, "warmup.lora_alpha", self.lora_alpha)
        if self.epochs == 0 or self.lr == 0:
            raise ConfigError("warmup.epochs and warmup.lr must be > 0")


EVAL_METHODS = ("agent", "direct", "cot", "rag")  # the search agent and the paper's three baselines


@dataclass
class FinalEvalConfig:
    """Evaluate the trained policy with a real engine when training ends (results in ``<run>/eval``)."""

    enabled: bool = False
    engine: str = "example"  # engine spec: example (BM25 over the bundled corpus), bm25:FILE, http://..., google
    files: list[str] = field(default_factory=list)  # default: the bundled HotpotQA dev questions
    method: str = "agent"
    limit: int = 0  # 0 = every question
    batch_size: int = 16
    # also evaluate, on the same questions, the model before training and (with warmup.enabled) after the
    # warm-up: results in eval/untrained and eval/warmup, a before/after table in the report
    baselines: bool = False

    def __post_init__(self) -> None:
        _check_choice("final_eval.method", self.method, EVAL_METHODS)
        _check_range("final_eval.limit", self.limit, 0)
        _check_range("final_eval.batch_size", self.batch_size, 1)


WARMUP_QUESTIONS = ("exclude", "keep")


@dataclass
class PoolConfig:
    """A difficulty-filtered training pool (see :mod:`zerosearch.pool`): before RL, the starting policy (after
    the warm-up) answers each candidate question ``samples`` times through the agent loop against a real
    ``engine``, with the run's rollout budgets and ``temperature``; the run then trains only on the questions
    with between ``min_correct`` and ``max_correct`` right answers by EM (default: mixed outcomes,
    0 < right < K, the questions whose rollouts disagree and so carry a group baseline's signal). The scoring
    is cached like an evaluation; the pool is stored in the run directory (``pool.jsonl``, ``pool.json``) and a
    resumed run trains on the same pool.

    warmup_questions: the training questions the warm-up demonstrated with their gold answers: ``exclude``
    (default) leaves them out of the pool, so RL trains on questions whose answers the policy never saw as a
    target and a gain on the pool is one of answering, not of recalling (it costs ``warmup.max_examples``
    candidates); ``keep`` keeps them. ``pool.json`` reports the two groups' pass rates either way.
    """

    enabled: bool = False
    samples: int = 8  # K answers sampled per candidate
    min_correct: int = 1  # keep questions with at least this many of K right (by EM)
    max_correct: int = 0  # ... and at most this many; 0 = samples - 1
    engine: str = "example"  # a real engine (the documents must not know the answer): example, bm25:FILE, http://...
    warmup_questions: str = "exclude"  # exclude | keep: the questions the warm-up demonstrated
    files: list[str] = field(default_factory=list)  # candidate questions; default: the run's train_files
    limit: int = 0  # the first N candidates of each file are scored; 0 = all
    batch_size: int = 16  # rows per generate call while scoring (a question's K samples side by side)

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ConfigError(f"pool.samples={self.samples}: a question's outcomes can be mixed only among K >= 2 "
                              "samples (8 is a good start)")
        _check_range("pool.min_correct", self.min_correct, 0, self.samples)
        _check_range("pool.max_correct", self.max_correct, 0, self.samples)
        _check_range("pool.limit", self.limit, 0)
        _check_range("pool.batch_size", self.batch_size, 1)
        _check_choice("pool.warmup_questions", self.warmup_questions, WARMUP_QUESTIONS)
        if self.min_correct > self.upper:
            raise ConfigError(f"pool.min_correct={self.min_correct} is above pool.max_correct={self.upper}"
                              f"{' (0: samples - 1)' if not self.max_correct else ''}: no question could be kept")
        if not self.engine.strip() or self.engine.strip().startswith("simulated"):
            raise ConfigError(f"pool.engine={self.engine!r}: the pool is scored against a real engine, whose "
                              "documents do not know the answer (example, bm25:FILE, dense:FILE, http://HOST:PORT)")
        if isinstance(self.files, str):
            self.files = [p for p in self.files.split(",") if p]

    @property
    def upper(self) -> int:
        """The most right answers a kept question may have (``max_correct``, 0 meaning ``samples - 1``)."""
        return self.max_correct or self.samples - 1


ALGORITHMS = ("reinforce", "grpo", "rloo", "ppo")
GROUP_BASELINES = ("grpo", "rloo")  # advantages compare the rollouts of one prompt

NO_SEARCH_TO_DEMONSTRATE = ("the warm-up demonstrates searching, but max_turns=0 allows no search; set max_turns >= 1 "
                            "or warmup.enabled=false")


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper where it has one (see METHOD.md)."""

    # model and prompt
    model: str = "zerosearch:smollm2-135m-instruct"
    prompt_style: str = setting("auto", choices=PROMPT_STYLES, help="auto: the chat template if the tokenizer has "
                                "one, else the raw prompt")
    prompt_template: str = "policy"
    train_files: list[str] = field(default_factory=list)

    # algorithm
    algorithm: str = "reinforce"
    reward: str = "f1"
    # format bonus lambda_f (Jin et al. 2025, "An Empirical Study on RL for Reasoning-Search Interleaved LLM
    # Agents"): reward = (1 - lambda_f) * score + lambda_f * well_formed; 0 = the paper's reward exactly
    format_reward: float = 0.0
    baseline: str = "none"  # reinforce only: none (the paper) | mean
    # grpo only: the advantage of a prompt left with one rollout (its others failed to search, or
    # rollouts_per_prompt=1): verl = its raw reward (verl's mean 0 / std 1 rule), zero = 0 (no comparison)
    grpo_singleton: str = "verl"
    # grpo only: divide by the group's std (GRPO) or not (Dr. GRPO, Liu et al. 2025; verl's
    # algorithm.norm_adv_by_std_in_grpo=False)
    grpo_scale_by_std: bool = True
    # dynamic sampling (DAPO, Yu et al. 2025, section 3.2; grpo and rloo only): a group whose rewards are all
    # equal gets advantage 0 under a group baseline, so it is dropped and further prompts are drawn, in at most
    # max_sampling_rounds rollout rounds a step, until prompts_per_step informative groups are in hand
    drop_uniform_groups: bool = False
    max_sampling_rounds: int = 4
    total_steps: int = 200
    prompts_per_step: int = 64
    rollouts_per_prompt: int = 5
    ppo_epochs: int = 1
    mini_batch_size: int = 0  # trajectories per optimizer step; 0 = the whole rollout batch
    micro_batch_tokens: int = 4096  # padded tokens per forward/backward (the memory knob)
    # the update's forward passes run each distinct prompt once per micro-batch, its keys/values shared by its
    # rollouts (same log-probs and gradients; zerosearch/shared_prefix.py). Off, or with a critic, gradient
    # checkpointing or a model without a plain head: every row runs in full
    shared_prefix: bool = True
    clip_ratio: float = 0.2
    kl_coef: float = 0.001
    kl_estimator: str = "low_var_kl"
    entropy_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 1.0
    critic: str = "model"  # ppo: model (separate trunk + head) | value_head (head on the policy trunk)
    value_clip: float = 0.5

    # optimisation
    lr: float = 1e-6
    critic_lr: float = 1e-5
    warmup_ratio: float = 0.95
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lora: LoraConfig = field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False
    dtype: str = setting("auto", choices=DTYPES, help="the model's dtype; auto: bf16 on GPU, fp32 on CPU")
    device: str = setting("auto", help="torch device; auto: cuda if available, else cpu")
    autocast: str = setting("off", choices=AUTOCAST_CHOICES, help="bf16 mixed precision (fp32 weights) for "
                            "rollouts, log-probs and the update: auto = on CPUs with bf16 instructions (avx512_bf16, "
                            "AMX), off elsewhere; bf16 | off to force")
    num_threads: int = 0  # torch threads; 0 = $ZEROSEARCH_NUM_THREADS, else the CPUs this process may use

    # rollout: the turn settings, whose defaults, ranges and meaning are RolloutSettings' (``rollout`` gathers them)
    max_turns: int = same_as(RolloutSettings, "max_turns")
    topk: int = same_as(RolloutSettings, "topk")
    temperature: float = same_as(RolloutSettings, "temperature")
    max_turn_tokens: int = same_as(RolloutSettings, "max_turn_tokens")
    max_obs_tokens: int = same_as(RolloutSettings, "max_obs_tokens")
    max_context_tokens: int = same_as(RolloutSettings, "max_context_tokens")
    rollout_batch_size: int = same_as(RolloutSettings, "batch_size")
    kv_cache: str = same_as(RolloutSettings, "kv_cache")
    kv_reuse: bool = same_as(RolloutSettings, "kv_reuse")
    doc_format: str = same_as(RolloutSettings, "doc_format")
    curriculum: Curriculum = field(default_factory=Curriculum)
    engine: EngineConfig = field(default_factory=EngineConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)

    # run directory and logging
    seed: int = 0
    output_dir: str | None = None
    run_name: str | None = None
    save_every: int = 1
    keep_checkpoints: int = 2
    log_rollouts: int = 8
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "zerosearch"
    report: bool = True  # write <run>/report/index.html when training ends
    final_eval: FinalEvalConfig = field(default_factory=FinalEvalConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self) -> None:
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_choice("reward", self.reward, ("f1", "em", "cover_em"))
        _check_choice("baseline", self.baseline, ("none", "mean"))
        _check_choice("grpo_singleton", self.grpo_singleton, ("verl", "zero"))
        _check_choice("kl_estimator", self.kl_estimator, ("kl", "abs", "mse", "low_var_kl"))
        _check_choice("critic", self.critic, ("model", "value_head"))
        _check_range("format_reward", self.format_reward, 0.0, 1.0)
        _check_range("num_threads", self.num_threads, 0)
        check_settings(self)  # the settings declared with their check: the rollout's, prompt_style, dtype, autocast
        for name in ("total_steps", "prompts_per_step", "rollouts_per_prompt", "ppo_epochs", "micro_batch_tokens",
                     "save_every", "keep_checkpoints", "max_sampling_rounds"):
            _check_range(name, getattr(self, name), 1)
        _check_range("mini_batch_size", self.mini_batch_size, 0)
        _check_range("log_rollouts", self.log_rollouts, 0)
        _check_range("lr", self.lr, 0.0)
        for name in ("critic_lr", "weight_decay", "clip_ratio", "entropy_coef", "value_clip"):
            _check_range(name, getattr(self, name), 0.0)
        if not self.grad_clip > 0:
            raise ConfigError(f"grad_clip={self.grad_clip} must be > 0 (the largest gradient norm kept)")
        _check_range("kl_coef", self.kl_coef, 0.0)
        _check_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        _check_range("gamma", self.gamma, 0.0, 1.0)
        _check_range("lam", self.lam, 0.0, 1.0)
        if self.algorithm in GROUP_BASELINES and self.rollouts_per_prompt < 2:
            what = "normalises within" if self.algorithm == "grpo" else "compares each rollout with the rest of"
            raise ConfigError(f"algorithm={self.algorithm} {what} a group: set rollouts_per_prompt >= 2")
        if self.drop_uniform_groups and self.algorithm not in GROUP_BASELINES:
            why = ("its advantage is the reward itself, or its distance from the batch mean"
                   if self.algorithm == "reinforce" else "the critic, not the group, sets the baseline")
            raise ConfigError(f"drop_uniform_groups=true drops the groups whose equal rewards a group baseline turns "
                              f"into advantage 0, but under algorithm={self.algorithm} such a group still has a "
                              f"gradient ({why}): use algorithm=grpo or rloo, or drop_uniform_groups=false")
        if self.warmup.enabled and self.max_turns < 1:  # said before a run directory or a model exists
            raise ConfigError(NO_SEARCH_TO_DEMONSTRATE)
        if self.pool.enabled and self.temperature == 0:
            raise ConfigError("pool.enabled scores the candidates by sampling at the run's temperature, but "
                              "temperature=0 is greedy: K samples would be one answer K times; set temperature > 0 "
                              "(1.0, the paper's) or pool.enabled=false")
        if isinstance(self.train_files, str):
            self.train_files = [p for p in self.train_files.split(",") if p]

    @property
    def batch_size(self) -> int:
        """Trajectories per step."""
        return self.prompts_per_step * self.rollouts_per_prompt

    @property
    def rollout(self) -> RolloutSettings:
        """The rollout's turn settings, gathered from the top-level keys: the one place they are."""
        return RolloutSettings(
            max_turns=self.max_turns, topk=self.topk, max_turn_tokens=self.max_turn_tokens,
            max_obs_tokens=self.max_obs_tokens, max_context_tokens=self.max_context_tokens,
            temperature=self.temperature, batch_size=self.rollout_batch_size, kv_cache=self.kv_cache,
            doc_format=self.doc_format, kv_reuse=self.kv_reuse,
        )


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, YAML and overrides


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise with close matches."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    types = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {prefix + key!r}{hint} (valid: {', '.join(names)})")
        ftype = types[key]
        if dataclasses.is_dataclass(ftype):
            kwargs[key] = from_dict(ftype, value or {}, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, ftype)
    return cls(**kwargs)


class _ConfigLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans and numbers.

    PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` are booleans, ``12:30``
    is the number 750 (base 60) and ``1_000`` is 1000, so ``autocast: off`` or ``autocast=off`` (a
    documented choice) arrived as False and was refused, and ``run_name=12:30`` became "750". Here only
    true / false are booleans and numbers are plain decimals (``1e-6`` included); the rest stay text. A
    bool setting still accepts yes / no / on / off (see :func:`_coerce`).
    """


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping whose keys are each given once: PyYAML keeps the last of two silently, so a config that
    sets ``lr`` twice trained with whichever came second."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_REPLACED_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))

_BOOL_WORDS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}


def yaml_load(text: str) -> Any:
    """Parse config YAML (a file's text or an override's value) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def _coerce(name: str, value: Any, ftype: Any) -> Any:
    """Light type checking: ints for floats are fine, numbers in strings are parsed, a number given to a
    text setting is its text (``run_name=2024``), yes/no/on/off given to a bool setting are booleans;
    else error."""
    if typing.get_origin(ftype) is list:
        if isinstance(value, str):
            return [p for p in value.split(",") if p]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{name}={value!r} must be a list of strings (or one comma-separated string)")
    args = typing.get_args(ftype)
    allowed = set(args) if args else {ftype}
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{name} may not be null")
    if float in allowed and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)  # YAML reads 1e-6 as a string
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):  # nan passes every range check, and inf none meaningfully
                raise ConfigError(f"{name}={value!r} must be a finite number")
            return number
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value
    if bool in allowed and isinstance(value, bool):
        return value
    if bool in allowed and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    if str in allowed and isinstance(value, str):
        return value
    if str in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if list[str] in allowed and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{name}={value!r} has the wrong type (expected {_type_words(ftype)})")


def _type_words(ftype: Any) -> str:
    """``bool | None`` as "true/false or null": what a user can write, not Python's ``<class 'bool'>``."""
    words = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             list[str]: "a list of strings"}
    args = typing.get_args(ftype) or (ftype,)
    return " or ".join(words.get(a, getattr(a, "__name__", str(a))) for a in args)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flat_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"settings": {"topk": 3}}`` as ``{"settings.topk": 3}`` (dotted keys, as overrides spell them)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flat_keys(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=1e-6)")
        key, raw = item.split("=", 1)
        value = yaml_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a YAML config file (e.g. configs/tiny.yaml, or a run's "
                          "config.yaml)")
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); is it a YAML config?") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


EMBEDDED_DEFAULT = Path(__file__).resolve().parent / "configs" / "default.yaml"


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Class defaults (the paper's settings) <- YAML file (if any) <- ``key=value`` overrides.

    The command line passes :data:`EMBEDDED_DEFAULT` when the user names no file.
    """
    file_data = load_yaml(path) if path else {}
    try:
        return from_dict(TrainConfig, deep_merge(file_data, parse_overrides(overrides or [])))
    except ConfigError as exc:
        error = exc
    # Name what to fix: the overrides where the file alone is valid (a typo in `lr=abc` is not in
    # default.yaml), else the file. Checked in this order because an override may mend the file.
    blame_overrides = bool(overrides)
    if blame_overrides and path:
        try:
            from_dict(TrainConfig, file_data)
        except ConfigError:
            blame_overrides = False
    where = ("the key=value overrides" if blame_overrides else f"{path} with the key=value overrides" if overrides
             and path else str(path) if path else "")
    raise ConfigError(f"{where}: {error}" if where else str(error)) from None


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
