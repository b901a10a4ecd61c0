"""ZeroSearch's rollout as a verl agent loop (verl 0.9.x, unmodified): registered as ``zerosearch_agent``.

verl runs one agent loop per trajectory (``AgentLoopWorker._run_agent_loop`` in
``verl/experimental/agent_loop/agent_loop.py``), hands it the dataset row and its rollout server
(``LLMServerClient``: vLLM or SGLang), and trains on the ``AgentLoopOutput`` it returns. This loop plays
zerosearch's protocol through that server, with zerosearch's own turn logic
(:class:`zerosearch.rollout.SearchEnvironment`, the same object :class:`~zerosearch.rollout.RolloutRunner`
drives in process):

* each turn is one ``server_manager.generate`` call on prompt + response so far, limited to
  ``max_turn_tokens`` (less near the context budget) and stopped at ``</search>`` / ``</answer>``
  (``stop`` in the sampling params; the tokens are trimmed at the first stop or EOS here as well, so a
  server that returns more is cut exactly where zerosearch cuts);
* a search calls a zerosearch engine; its documents go in as the ``<information>`` block
  (:func:`zerosearch.rollout.fit_observation`) with ``response_mask = 0``; an invalid action gets the
  corrective message (mask 0); after ``max_turns`` turns one final turn must answer;
* the context budget is ``max_context_tokens``, and never more than prompt + verl's
  ``rollout.response_length``, so verl never has to cut a response;
* with a simulated engine each search is useful or noisy, drawn with probability
  ``curriculum.probability(step, total_steps)`` (:mod:`zerosearch.curriculum`) from a generator seeded by
  ``(seed, step, row index, priority)``; a real engine draws nothing.

**The step.** verl tells a rollout its step through the rollout server: every ``TokenOutput`` carries
``extra_fields["global_steps"]``, the trainer step whose weights the server holds (``update_weights(k)``
after the update of step k; 0 before training). The rollout of verl's step k thus sees k - 1, and this
loop uses ``step = global_steps + 1`` from its first turn: verl's own 1-based ``global_steps``, the step
the original ZeroSearch (a verl fork) passed to its curriculum and the step zerosearch's trainer uses.

**A failed search** (the engine's call failed after its retries) ends the trajectory, as in zerosearch's
trainer, and the trajectory does not train: its ``response_mask`` is all 0, so no token of it enters the
policy loss, the KL or entropy terms or the critic's loss (verl's ``agg_loss`` leaves fully masked
sequences out of its ``seq-mean-*`` means and adds nothing for them in ``token-mean``). It is flagged in
``extra_fields`` (``zerosearch_search_failed``, ``zerosearch_search_failures``) and counted in the output's
metrics (``search_failures``). verl keeps it in the batch, where zerosearch's own trainer removes it: under
``algorithm.adv_estimator=zerosearch_grpo`` or ``zerosearch_rloo`` (:mod:`zerosearch.verl.advantage`, what
``configs/verl`` uses) it also stays out of its group's baseline; under verl's own ``grpo`` or ``rloo`` its
reward (0: it never answered) still enters it.

Settings come from the agent loop's entry in ``actor_rollout_ref.rollout.agent.agent_loop_config_path``
(``configs/verl/agent_loops.yaml``); see :class:`ZeroSearchAgentLoop`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import inspect
import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from uuid import uuid4

import numpy as np
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op

from zerosearch.config import RolloutSettings
from zerosearch.curriculum import Curriculum, draw_noisy
from zerosearch.policy import encode_prompt, use_chat_template
from zerosearch.protocol import STOP_STRINGS, well_formed
from zerosearch.rollout import SEARCH_FAILED, SearchEnvironment, Trajectory, eos_token_ids
from zerosearch.search.base import SearchEngine
from zerosearch.search.factory import build_engine
from zerosearch.search.factory import engine_kind as spec_kind  # engine_kind is a setting of this loop
from zerosearch.verl import (
    AGENT_NAME,
    ANSWER_TURN_KEY,
    NOISE_PROBABILITY_KEY,
    NOISY_SEARCHES_KEY,
    SEARCH_FAILED_KEY,
    SEARCH_FAILURES_KEY,
    SEARCHES_KEY,
    STATUS_KEY,
    STEP_KEY,
    WELL_FORMED_KEY,
)
from zerosearch.verl.reward import gold_answers

__all__ = ["ZeroSearchAgentLoop", "ZeroSearchLoopMetrics"]

logger = logging.getLogger(__name__)

# RolloutSettings fields an agent loop entry may set; temperature comes from verl's sampling params, and
# batching and the KV cache are the rollout server's business
_ROLLOUT_KEYS = {f.name for f in dataclasses.fields(RolloutSettings)} - {"temperature", "batch_size", "kv_cache",
                                                                        "kv_reuse"}
_ENGINES: dict[tuple[str, str], SearchEngine] = {}  # one engine per (spec, options) in a worker process


class ZeroSearchLoopMetrics(AgentLoopMetrics):
    """verl's per-trajectory metrics with the trajectory's search counts."""

    search_calls: int = 0
    search_failures: int = 0
    noisy_calls: int = 0


def _engine(spec: str, options: Mapping[str, Any]) -> SearchEngine:
    """The engine ``spec`` names, built once per worker process (verl makes a loop per trajectory)."""
    key = (spec, json.dumps(options, sort_keys=True, default=str))
    if key not in _ENGINES:
        _ENGINES[key] = build_engine(spec, **options)
    return _ENGINES[key]


@lru_cache(maxsize=8)
def _generation_config(model_path: str) -> Any:
    """The policy's ``generation_config`` (its EOS ids end a turn, as on the rollout server), if readable."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """A config value (OmegaConf containers included) as plain Python."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [_plain(v) for v in value]
    return value


# what verl itself passes to an agent loop's constructor (AgentLoopWorker._run_agent_loop)
_VERL_KEYS = {name for name in inspect.signature(AgentLoopBase.__init__).parameters if name not in ("self", "kwargs")}


def _check_keys(name: str | None, kwargs: Mapping[str, Any]) -> None:
    """A setting this loop does not know (a typo in the agent loop config file) is an error, not ignored."""
    unknown = sorted(set(kwargs) - _VERL_KEYS)
    if unknown:
        own = set(inspect.signature(ZeroSearchAgentLoop.__init__).parameters)
        own -= {"self", "args", "kwargs", "tools", "name"}
        known = sorted(_ROLLOUT_KEYS | own)
        hints = [f"{key} (did you mean {', '.join(difflib.get_close_matches(key, known, 2)) or 'none of them'}?)"
                 for key in unknown]
        raise ValueError(f"agent loop {name or AGENT_NAME!r}: unknown setting(s) {'; '.join(hints)}; "
                         f"known: {', '.join(known)}")


@register(AGENT_NAME)
class ZeroSearchAgentLoop(AgentLoopBase):
    """ZeroSearch's multi-turn search rollout as a verl agent loop.

    Settings (keys of the loop's entry in the agent loop config file, beside ``name`` and ``_target_``):

    Args:
        engine: the search engine: a zerosearch engine spec (``simulated:http://HOST:PORT/v1``, ``example``,
            ``bm25:FILE``, ``http://HOST:PORT/retrieve``, ``google``, ...; see
            :data:`zerosearch.search.factory.ENGINE_SPECS`) or an engine object. Required.
        engine_options: options for the engine (``mode: finetuned``, ``served_model``, ``max_tokens``, ...).
        engine_kind: ``simulated`` (the curriculum draws useful/noisy) or ``real`` (no draw); default:
            ``simulated`` for a ``simulated:`` spec or an engine named so, else ``real``.
        curriculum: ``{start, end, base}`` of the noise ramp (zerosearch's defaults: 0, 0.5, 4).
        total_steps: the m of the curriculum; default ``trainer.total_training_steps``. Required for a
            simulated engine when the trainer config does not set it.
        seed: seeds the useful/noisy draws.
        prompt_style: ``auto`` | ``chat`` | ``raw``, as zerosearch's ``prompt_style``: how the row's policy
            prompt becomes token ids (``auto``: the chat template where the tokenizer has one).
        max_turns, topk, max_turn_tokens, max_obs_tokens, max_context_tokens, doc_format: as in
            zerosearch's config (:class:`zerosearch.config.RolloutSettings`: same defaults and ranges).
    """

    def __init__(self, *args: Any, engine: str | SearchEngine | None = None,
                 engine_options: Mapping[str, Any] | None = None, engine_kind: str | None = None,
                 curriculum: Mapping[str, Any] | None = None, total_steps: int | None = None, seed: int = 0,
                 prompt_style: str = "auto", name: str | None = None, tools: Any = None, **kwargs: Any):
        rollout = {key: kwargs.pop(key) for key in list(kwargs) if key in _ROLLOUT_KEYS}
        _check_keys(name, kwargs)
        super().__init__(*args, **kwargs)
        if engine is None:
            raise ValueError(f"agent loop {name or AGENT_NAME!r} has no engine: give it one in the agent loop config "
                             "file (actor_rollout_ref.rollout.agent.agent_loop_config_path, e.g. "
                             "configs/verl/agent_loops.yaml), e.g. engine: simulated:http://HOST:PORT/v1")
        self.settings = RolloutSettings(**_plain(rollout))
        options = _plain(engine_options or {})
        self.engine = _engine(engine, options) if isinstance(engine, str) else engine
        if engine_kind is None:
            simulated = ((spec_kind(engine) or "").startswith("simulated") if isinstance(engine, str)
                         else self.engine.name == "simulated")
            engine_kind = "simulated" if simulated else "real"
        if engine_kind not in ("simulated", "real"):
            raise ValueError(f"engine_kind must be simulated or real, got {engine_kind!r}")
        self.curriculum = Curriculum(**_plain(curriculum or {})) if engine_kind == "simulated" else None
        self.total_steps = total_steps or self.config.get("trainer", {}).get("total_training_steps")
        if self.curriculum is not None and not self.total_steps:
            raise ValueError("a simulated engine needs total_steps for its noise curriculum: set it in the agent "
                             "loop config, or set trainer.total_training_steps")
        self.seed = int(seed)
        self.chat = use_chat_template(self.tokenizer, prompt_style)
        self.response_length = self.rollout_config.response_length
        model_path = self.config.get("actor_rollout_ref", {}).get("model", {}).get("path")
        self.eos_ids = eos_token_ids(self.tokenizer, _generation_config(str(model_path)) if model_path else None)

    # ------------------------------------------------------------------------------------------
    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> AgentLoopOutput:
        """Roll out one row (``kwargs``: the dataset row, as ``RLHFDataset`` gives it) to the end."""
        priority = int(priority)
        question, golds, prompt_ids = self._row(kwargs)
        traj = Trajectory(question=question, golden_answers=tuple(golds), prompt_ids=prompt_ids)
        budget = min(self.settings.max_context_tokens, len(prompt_ids) + self.response_length)
        env = SearchEnvironment(self.tokenizer, dataclasses.replace(self.settings, max_context_tokens=budget),
                                self.eos_ids)
        full_determinism = getattr(self.rollout_config, "full_determinism", False)
        request_id = f"det-{priority}" if full_determinism else uuid4().hex
        timing: dict[str, float] = {}
        extra: dict[str, Any] = {}
        turn_logprobs: list[list[float] | None] = []  # per turn, the log-probs of the tokens kept
        step = p = rng = None
        counts = {"search_calls": 0, "search_failures": 0, "noisy_calls": 0, "num_preempted": 0}
        for turn_index in range(self.settings.max_turns + 1):
            if env.out_of_room(traj):
                break
            params = {**sampling_params, "max_tokens": env.turn_budget(traj), "stop": list(STOP_STRINGS)}
            with simple_timer("generate_sequences", timing):
                out = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=traj.prompt_ids + traj.response_ids,
                    sampling_params=params, priority=priority)
            self._merge_extra(extra, out.extra_fields)
            counts["num_preempted"] += out.num_preempted or 0
            turn = env.take_turn(traj, out.token_ids[: params["max_tokens"]], turn_index == self.settings.max_turns)
            kept = traj.turns[-1].n_tokens
            turn_logprobs.append(list(out.log_probs[:kept]) if out.log_probs else None)
            if turn is None:
                continue
            if step is None:
                step, p, rng = self._noise(extra, kwargs, priority)
            noisy = False if p is None else draw_noisy(rng, p, 1)[0]
            with simple_timer("tool_calls", timing):  # engines block: the worker's other trajectories go on
                result = (await asyncio.get_running_loop().run_in_executor(
                    None, self.engine.search, env.requests([(traj, turn)], [noisy]), self.settings.topk))[0]
            env.observe(traj, turn, result, None if p is None else noisy)
            counts["search_calls"] += 1
            counts["search_failures"] += not result.ok
            counts["noisy_calls"] += bool(noisy)
        return self._output(traj, timing, extra, turn_logprobs, counts, step, p)

    # ------------------------------------------------------------------------------------------
    def _row(self, row: Mapping[str, Any]) -> tuple[str, list[str], list[int]]:
        """The question, its gold answers and the prompt ids of a dataset row (``zerosearch export-verl``'s
        layout; Search-R1 parquet works too: the answers from ``reward_model``)."""
        messages = list(row["raw_prompt"])
        if len(messages) != 1 or messages[0].get("role") != "user":
            raise ValueError("a zerosearch row's prompt is one user message holding the policy prompt "
                             f"(zerosearch export-verl writes it so); got {len(messages)} message(s)")
        content = messages[0]["content"]
        extra_info = row.get("extra_info") or {}
        question = extra_info.get("question") or row.get("question")
        if not question:
            question = content.rsplit("Question: ", 1)[-1].strip()
        golds = extra_info.get("golden_answers")
        golds = gold_answers(row["reward_model"]["ground_truth"]) if golds is None else [str(g) for g in golds]
        prompt_ids = self._cap_text_prompt_length(encode_prompt(self.tokenizer, content, self.chat))
        return str(question), golds, prompt_ids

    def _noise(self, extra: Mapping[str, Any], row: Mapping[str, Any], priority: int):
        """``(step, noise probability or None, generator)`` for this trajectory's searches."""
        weights = extra.get("global_steps")
        if weights is None:
            logger.warning("the rollout server reports no global_steps; the noise curriculum uses step 1")
            weights = 0
        step = int(weights) + 1
        if self.curriculum is None:
            return step, None, None
        p = self.curriculum.probability(step, int(self.total_steps))
        index = abs(int(row.get("index", 0) or 0))
        return step, p, np.random.default_rng([self.seed, step, index, abs(priority)])

    @staticmethod
    def _merge_extra(extra: dict[str, Any], fields: Mapping[str, Any]) -> None:
        """Keep the server's extra fields of the first turn; later turns only raise ``max_global_steps``
        (as verl's ToolAgentLoop does)."""
        if not extra:
            extra.update(fields)
        elif fields.get("max_global_steps") is not None:
            extra["max_global_steps"] = fields["max_global_steps"]

    @staticmethod
    def _response_logprobs(loss_mask: list[int], turn_logprobs: list[list[float] | None]) -> list[float] | None:
        """The server's log-probs at the policy's tokens, 0.0 at the environment's; None unless every turn
        came with log-probs (verl's ``rollout.calculate_log_probs``)."""
        if not turn_logprobs or any(lp is None for lp in turn_logprobs):
            return None
        generated = iter([x for lp in turn_logprobs for x in lp])
        return [next(generated) if m else 0.0 for m in loss_mask]

    def _output(self, traj: Trajectory, timing: dict[str, float], extra: dict[str, Any],
                turn_logprobs: list[list[float] | None], counts: dict[str, int], step: int | None,
                p: float | None) -> AgentLoopOutput:
        failed = traj.status == SEARCH_FAILED
        mask = [0] * len(traj.loss_mask) if failed else list(traj.loss_mask)
        # messages: the prompt, then one per run of policy tokens (assistant) or inserted text (environment)
        runs = sum(1 for i, m in enumerate(traj.loss_mask) if i == 0 or m != traj.loss_mask[i - 1])
        if step is None and extra.get("global_steps") is not None:
            step = int(extra["global_steps"]) + 1
        extra.update({
            ANSWER_TURN_KEY: traj.answer_text,
            WELL_FORMED_KEY: well_formed([t.text for t in traj.turns]),
            # searches the engine answered (Trajectory.n_searches counts the same)
            SEARCHES_KEY: traj.n_searches,
            SEARCH_FAILURES_KEY: counts["search_failures"],
            NOISY_SEARCHES_KEY: counts["noisy_calls"],
            SEARCH_FAILED_KEY: failed,
            STATUS_KEY: traj.status,
            NOISE_PROBABILITY_KEY: p,
            STEP_KEY: step,
            "turn_scores": [],
            "tool_rewards": [],
        })
        return AgentLoopOutput(
            prompt_ids=traj.prompt_ids,
            response_ids=traj.response_ids,
            response_mask=mask,
            response_logprobs=self._response_logprobs(traj.loss_mask, turn_logprobs),
            num_turns=1 + runs,
            metrics=ZeroSearchLoopMetrics(**timing, **counts),  # num_preempted: summed over the turns
            extra_fields=extra,
        )

