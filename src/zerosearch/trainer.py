"""One training step: rollout -> reward -> advantage -> policy (and critic) update; plus the run loop.

All four algorithms go through the same PPO-clip loss with KL to a frozen reference as a loss term:

- ``reinforce`` (the paper's default): advantage = outcome reward on every policy token (optional
  batch-mean baseline).
- ``grpo``: reward normalised within the ``rollouts_per_prompt`` group of each prompt (``grpo_scale_by_std``
  false: centred only, Dr. GRPO).
- ``rloo``: reward minus the mean reward of the other rollouts of its prompt (the leave-one-out baseline).
- ``ppo``: a critic and GAE over the policy tokens only (environment tokens are skipped, not zeroed),
  advantages whitened over the batch as verl does.

``format_reward`` (off by default, as in the paper) mixes in a bonus for a trajectory in the protocol's
exact format (:func:`~zerosearch.rewards.format_shaped_reward`).

Departures from the paper's verl setup: PPO's KL is a loss term here too (verl puts it in the reward for
PPO); a trajectory whose search call failed is left out of the update and counted in
``search_failures``; with LoRA the reference policy is the base model with the adapter disabled (no
second copy in memory). Every dropout of the policy, the reference and the critic is off
(:func:`~zerosearch.llm.models.disable_dropout`, as TRL's RL trainers do), whatever a config or a checkpoint
carries: sampling and the old/reference scoring run in eval mode and the update in train mode (which gradient
checkpointing needs), and all of them must be one deterministic network.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zerosearch import checkpoint as ckpt
from zerosearch.config import TrainConfig, from_dict, save_config, to_dict
from zerosearch.data import PromptSampler, QARow, load_qa_files, policy_prompt
from zerosearch.llm.models import check_model_spec
from zerosearch.policy import (
    ValueModel, Window, build_window, check_lora_targets, encode_prompt, frozen_copy, load_policy, micro_batches,
    plain_head, right_align, selected_logprobs, unalign,
)
from zerosearch.policy_info import write_policy_info
from zerosearch.prompts import load_template
from zerosearch.protocol import well_formed
from zerosearch.rewards import answer_metrics, extract_answer, format_shaped_reward
from zerosearch.rl.advantages import (
    gae_advantages, grpo_advantages, informative_groups, reinforce_advantages, rloo_advantages, whiten,
)
from zerosearch.rl.losses import aggregate_token_loss, kl_estimate, ppo_clip_loss, value_loss
from zerosearch.rollout import SEARCH_FAILED, RolloutRunner, RolloutStats, Trajectory
from zerosearch.runtime import adamw, autocast_context, configure_threads, pick_device, resolve_autocast
from zerosearch.shared_prefix import build_shared_prefix_window, shared_prefix_batches, shares_cache
from zerosearch.search.base import SearchEngine


def default_run_dir(cfg: TrainConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    name = cfg.run_name or f"{cfg.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path("runs") / name


class NoSearch:
    """The engine of a run that cannot search (``max_turns=0``: one answer turn): nothing is loaded for it
    (a simulator would be a second copy of a model in memory). A call is a bug, so it raises."""

    name = "none"

    def search(self, requests, topk):  # noqa: ARG002 (the SearchEngine signature)
        raise RuntimeError("max_turns=0 allows no search, yet the rollout asked for one")


def build_engine(cfg: TrainConfig, device: torch.device, dtype: torch.dtype) -> SearchEngine:
    """The training-time search engine: the LLM-simulated one (:func:`zerosearch.search.factory.build_simulator`),
    or with ``engine.kind=real`` the engine ``engine.spec`` names; :class:`NoSearch` when ``max_turns=0``."""
    from zerosearch.search.factory import build_configured_engine, build_simulator

    if cfg.max_turns == 0:
        return NoSearch()
    if cfg.engine.kind == "real":
        return build_configured_engine(cfg.engine.spec, "engine.spec")
    return build_simulator(cfg.engine.simulator, policy_model=cfg.model, device=device, dtype=dtype,
                           autocast=resolve_autocast(cfg.autocast, device), kv_cache=cfg.kv_cache)


@dataclass
class SampledStep:
    """What one training step sampled, over all its rounds, in the order drawn: trajectories with their
    rewards, answer scores (F1 / EM / cover-EM) and format flags, the round (1-based) each came from, the
    summed rollout counts and seconds, and how many rounds ran and groups (prompts) were drawn."""

    trajectories: list[Trajectory] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)
    formats: list[bool] = field(default_factory=list)
    round_of: list[int] = field(default_factory=list)
    stats: RolloutStats = field(default_factory=RolloutStats)
    rollout_seconds: float = 0.0
    rounds: int = 0
    groups: int = 0

    def add(self, trajectories: list[Trajectory], rewards: list[float], scores: list[dict[str, float]],
            formats: list[bool], stats: RolloutStats) -> None:
        """Append one round (``rounds`` already counts it)."""
        self.trajectories += trajectories
        self.rewards += rewards
        self.scores += scores
        self.formats += formats
        self.round_of += [self.rounds] * len(trajectories)
        for f in fields(RolloutStats):
            setattr(self.stats, f.name, getattr(self.stats, f.name) + getattr(stats, f.name))


class Trainer:
    """Owns the models, optimizers, data position and RNGs of one run directory."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, engine: SearchEngine | None = None,
                 rows: list[QARow] | None = None, progress: bool = True, init_model: str | None = None):
        """``init_model``: where the policy starts (a model path); default ``cfg.model``, or the warmed-up
        model when ``cfg.warmup.enabled`` (trained now, or taken from the cache)."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.step = 0
        self.resume_changes: dict[str, tuple[Any, Any]] = {}  # {key: (old, new)} that a resume's overrides set
        configure_threads(cfg.num_threads)
        self.device = pick_device(cfg.device)  # a bad device is said now, not after the warm-up and the pool
        self.warmup_seconds, self.warmup_cached = 0.0, False
        if init_model is None and cfg.warmup.enabled:
            init_model = self._warm_up()
        self.init_model = init_model or cfg.model
        started = time.perf_counter()
        # with pool.enabled, the starting policy scores the candidates here (zerosearch.pool; cached)
        self.rows = rows if rows is not None else self._load_rows()
        self.pool_seconds = time.perf_counter() - started if cfg.pool.enabled and rows is None else 0.0
        # seeded after the warm-up and the pool, which draw from the same generators only when they run: a run
        # whose warm-up (or pool) came from the cache samples exactly what the run that made it did
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        self.sampler = PromptSampler(len(self.rows), seed=cfg.seed)
        self.noise_rng = np.random.default_rng([cfg.seed, 1])
        self.shuffle_rng = np.random.default_rng([cfg.seed, 2])

        self.template = load_template(cfg.prompt_template)
        loaded = load_policy(self.init_model, device=self.device, dtype=cfg.dtype, autocast=cfg.autocast,
                             prompt_style=cfg.prompt_style, lora=cfg.lora,
                             gradient_checkpointing=cfg.gradient_checkpointing)
        self.policy, self.tokenizer, self.chat = loaded.model, loaded.tokenizer, loaded.chat
        self.dtype, self.autocast = loaded.dtype, loaded.autocast
        self.reference = self._build_reference()
        self.critic = self._build_critic()
        self.optimizer = adamw([p for p in self.policy.parameters() if p.requires_grad], self.device, lr=cfg.lr,
                               weight_decay=cfg.weight_decay)
        warmup = max(1, int(cfg.warmup_ratio * cfg.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.critic_optimizer = (
            adamw(list(self._critic_parameters()), self.device, lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
            if self.critic is not None else None
        )
        self.engine = engine if engine is not None else build_engine(cfg, self.device, self.dtype)
        self.runner = RolloutRunner(self.policy, self.tokenizer, self.engine, cfg.rollout, self.device,
                                    autocast=self.autocast)
        self._prompt_cache: dict[int, list[int]] = {}

    # ------------------------------------------------------------------------------------------ setup
    def _load_rows(self) -> list[QARow]:
        if not self.cfg.train_files:
            from zerosearch.datasets import default_train_files

            self.cfg.train_files = default_train_files()
        if self.cfg.pool.enabled:  # the candidates the starting policy answers neither always nor never right
            from zerosearch.pool import training_pool

            return training_pool(self.cfg, self.init_model, self.run_dir, progress=self.progress)
        return load_qa_files(self.cfg.train_files)

    def _warm_up(self) -> str:
        """The format warm-up (cached); records where the policy started in ``run_dir/warmup.json``."""
        from zerosearch.warmup import run_warmup

        started = time.perf_counter()
        result = run_warmup(self.cfg, progress=self.progress)
        self.warmup_seconds = time.perf_counter() - started
        self.warmup_cached = result.cached
        ckpt.write_json(self.run_dir / "warmup.json", {"model_dir": str(result.model_dir),
                                                        "cached": result.cached, **result.info})
        return str(result.model_dir)

    def _build_reference(self):
        if self.cfg.kl_coef == 0 or self.cfg.lora.enabled:
            return None  # no KL, or LoRA: the reference is the policy with its adapter disabled
        return frozen_copy(self.policy)

    def _build_critic(self) -> ValueModel | None:
        if self.cfg.algorithm != "ppo":
            return None
        hidden = self.policy.config.hidden_size
        if self.cfg.critic == "value_head":
            # the head alone is trained by the critic optimizer; the trunk belongs to the policy optimizer
            return ValueModel(self.policy, hidden, detach_trunk=True).to(self.device)
        trunk = load_policy(self.init_model, device=self.device, dtype=self.cfg.dtype, tokenizer=self.tokenizer).model
        return ValueModel(trunk, hidden).to(self.device)

    def _critic_parameters(self):
        if self.critic is None:
            return []
        if self.critic.detach_trunk:
            return list(self.critic.head.parameters())
        return [p for p in self.critic.parameters() if p.requires_grad]

    # ------------------------------------------------------------------------------------------ loop
    def train(self) -> list[dict[str, Any]]:
        """Run from the current step to ``total_steps``; returns this invocation's metrics."""
        from tqdm.auto import tqdm

        from zerosearch.metrics import MetricsLogger

        logger = MetricsLogger(self.run_dir, self.cfg, resume_step=self.step)
        history = []
        bar = tqdm(total=self.cfg.total_steps, initial=self.step, desc=f"train {self.cfg.algorithm}",
                   unit="step", disable=not self.progress, dynamic_ncols=True)
        try:
            while self.step < self.cfg.total_steps:
                metrics, records = self.train_step()
                logger.log(metrics, records)
                history.append(metrics)
                if self.step % self.cfg.save_every == 0 or self.step == self.cfg.total_steps:
                    self.save()
                bar.update(1)
                p = metrics["noise_probability"]
                groups = ({"groups": f"{metrics['groups_trained']}/{self.cfg.prompts_per_step}"}
                          if self.cfg.drop_uniform_groups else {})  # informative groups trained on / wanted
                bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", p_noisy="-" if p is None else f"{p:.2f}",
                                searches=f"{metrics['searches_per_rollout']:.2f}", **groups)
        finally:
            bar.close()
            logger.close()
        return history

    def _prompt_ids(self, index: int) -> list[int]:
        if index not in self._prompt_cache:
            text = policy_prompt(self.rows[index].question, self.template)
            self._prompt_cache[index] = encode_prompt(self.tokenizer, text, self.chat)
        return self._prompt_cache[index]

    def train_step(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One step: sample (:meth:`_sample`), score, update on what is kept; returns the step's metrics and
        its rollout records.

        Kept for the update: every trajectory whose search did not fail; with ``drop_uniform_groups`` only
        those of informative groups (:func:`~zerosearch.rl.advantages.informative_groups`). The rollout
        metrics (``reward_mean``, ``f1_mean``, ``em_mean``, searches, turns, rates, lengths, search counts) are
        over *every* trajectory sampled in the step, in every round, dropped and failed ones included: they
        measure the policy on the questions drawn, not on the subset that happened to be informative
        (verl's DAPO recipe reports the kept batch). What reached the update is counted apart:
        ``trajectories_updated``, ``groups_trained``; and the sampling: ``sampling_rounds``,
        ``groups_sampled`` (prompts drawn, each a group of ``rollouts_per_prompt``), ``groups_uniform`` (groups
        with no contrast: fewer than two trajectories left after failed searches, or all rewards equal;
        counted whether or not they are dropped) and ``groups_dropped`` (those left out, 0 unless
        ``drop_uniform_groups``). A step with ``groups_trained < prompts_per_step`` ran out of rounds (or
        lost groups to failed searches) and trained on what it had.
        """
        cfg = self.cfg
        self.step += 1
        t_step = time.perf_counter()
        # The original computed p from the 1-based global step: step 1 of m already moved by 1/m.
        # a real engine decides what comes back: no curriculum, no noisy flags (null in the metrics)
        p = None if cfg.engine.kind == "real" else cfg.curriculum.probability(self.step, cfg.total_steps)
        sampled = self._sample(p)
        trajectories, rewards, scores, formats = sampled.trajectories, sampled.rewards, sampled.scores, sampled.formats
        stats, rollout_seconds = sampled.stats, sampled.rollout_seconds
        trainable = [i for i, t in enumerate(trajectories) if self._trainable(t)]
        informative = informative_groups([rewards[i] for i in trainable], [trajectories[i].group for i in trainable])
        kept = [i for i in trainable if not cfg.drop_uniform_groups or trajectories[i].group in informative]

        t0 = time.perf_counter()
        update = self._update([trajectories[i] for i in kept], [rewards[i] for i in kept]) if kept else {}
        update_seconds = time.perf_counter() - t0

        n = len(trajectories)
        total_tokens = sum(len(t.response_ids) for t in trajectories)
        metrics: dict[str, Any] = {
            "step": self.step,
            "noise_probability": p,
            "reward_mean": float(np.mean(rewards)),
            "f1_mean": float(np.mean([s["f1"] for s in scores])),
            "em_mean": float(np.mean([s["em"] for s in scores])),
            "cover_em_mean": float(np.mean([s["cover_em"] for s in scores])),
            "searches_per_rollout": sum(t.n_searches for t in trajectories) / n,
            "turns_mean": sum(len(t.turns) for t in trajectories) / n,
            "invalid_action_rate": sum(tu.action == "invalid" for t in trajectories for tu in t.turns)
            / max(1, sum(len(t.turns) for t in trajectories)),
            "answered_rate": sum(t.status == "answered" for t in trajectories) / n,
            "well_formed_rate": sum(formats) / n,
            "context_exhausted_rate": sum(t.status == "context_exhausted" for t in trajectories) / n,
            "response_tokens_mean": total_tokens / n,
            "loss_mask_fraction": sum(sum(t.loss_mask) for t in trajectories) / max(1, total_tokens),
            "search_calls": stats.search_calls,
            "search_failures": stats.search_failures,
            # failures where the simulator restated its prompt (the gold answer with it): never shown, not trained on
            "search_echoes": stats.search_echoes,
            "noisy_share": None if p is None else stats.noisy_calls / max(1, stats.search_calls),
            "trajectories_updated": len(kept),
            "sampling_rounds": sampled.rounds,
            "groups_sampled": sampled.groups,
            "groups_uniform": sampled.groups - len(informative),
            "groups_dropped": sampled.groups - len(informative) if cfg.drop_uniform_groups else 0,
            "groups_trained": len({trajectories[i].group for i in kept}),
            "policy_loss": update.get("policy_loss", float("nan")),
            "kl": update.get("kl", float("nan")),
            "entropy": update.get("entropy", float("nan")),
            "grad_norm": update.get("grad_norm", float("nan")),
            "clipfrac": update.get("clipfrac", float("nan")),
            "lr": self.optimizer.param_groups[0]["lr"],
            "rollout_seconds": rollout_seconds,
            "search_seconds": stats.search_seconds,
            "generate_seconds": stats.generate_seconds,
            "update_seconds": update_seconds,
        }
        if cfg.algorithm == "ppo":
            metrics["value_loss"] = update.get("value_loss", float("nan"))
        self.scheduler.step()
        metrics["step_seconds"] = time.perf_counter() - t_step
        records = [
            {**t.to_record(), "answer": extract_answer(t.answer_text or ""), "reward": r, "well_formed": f, **s}
            for t, r, f, s in zip(trajectories[: cfg.log_rollouts], rewards, formats, scores)
        ]
        if cfg.drop_uniform_groups:  # which round drew it, and whether its group was left out as uniform
            for record, t, k in zip(records, trajectories, sampled.round_of):
                record.update({"round": k, "dropped_uniform": t.group not in informative})
        return metrics, records

    def _sample(self, p: float | None) -> SampledStep:
        """Draw prompts, roll ``rollouts_per_prompt`` trajectories out for each (one group per prompt, ids
        numbered across the step) and score them.

        Without ``drop_uniform_groups``: one round of ``prompts_per_step`` prompts. With it (DAPO's dynamic
        sampling, Yu et al. 2025, section 3.2): after each round the informative groups are counted, and while
        fewer than ``prompts_per_step`` are in hand and fewer than ``max_sampling_rounds`` rounds have run,
        another round draws as many prompts as groups are missing. Departures from verl's ``recipe/dapo``
        (``algorithm.filter_groups``, ``max_num_gen_batches``): a later round draws only the missing count, so
        no informative group is sampled to be thrown away (DAPO draws whole generation batches and trims the
        surplus); and a step that runs out of rounds trains on what it has instead of raising.

        Every round advances the prompt sampler (a dropped group's prompt is spent: an epoch is every question
        drawn once, trained on or not) and draws its noise flags from ``noise_rng`` at the step's
        probability ``p``; both are saved in the checkpoint after the step, so a resumed run draws the same
        prompts and flags as the uninterrupted one.
        """
        cfg = self.cfg
        out = SampledStep()
        informative: set[int] = set()
        while True:
            out.rounds += 1
            indices = self.sampler.next_batch(cfg.prompts_per_step - len(informative))
            new = [
                Trajectory(question=self.rows[i].question, golden_answers=self.rows[i].golden_answers,
                           prompt_ids=self._prompt_ids(i), group=out.groups + g)
                for g, i in enumerate(indices) for _ in range(cfg.rollouts_per_prompt)
            ]
            out.groups += len(indices)
            t0 = time.perf_counter()
            stats = self.runner.run(new, p, self.noise_rng)
            out.rollout_seconds += time.perf_counter() - t0
            scores = [self._score(t) for t in new]
            formats = [well_formed([turn.text for turn in t.turns]) for t in new]
            rewards = [format_shaped_reward(s[cfg.reward], f, cfg.format_reward) for s, f in zip(scores, formats)]
            out.add(new, rewards, scores, formats, stats)
            if not cfg.drop_uniform_groups or out.rounds >= cfg.max_sampling_rounds:
                return out
            trainable = [k for k, t in enumerate(new) if self._trainable(t)]
            informative |= informative_groups([rewards[k] for k in trainable], [new[k].group for k in trainable])
            if len(informative) >= cfg.prompts_per_step:
                return out

    @staticmethod
    def _trainable(t: Trajectory) -> bool:
        """Whether a trajectory may enter the update: its search did not fail and the policy wrote something."""
        return t.status != SEARCH_FAILED and sum(t.loss_mask) > 0

    @staticmethod
    def _score(t: Trajectory) -> dict[str, float]:
        """F1 / EM / cover-EM of the last <answer> the policy wrote (never the prompt's example)."""
        return answer_metrics(extract_answer(t.answer_text) if t.answer_text else None, t.golden_answers)

    # ------------------------------------------------------------------------------------------ update
    def _shares_prefix(self) -> bool:
        """Whether micro-batches share each prompt's forward pass among its rows (:mod:`zerosearch.shared_prefix`)."""
        return (self.cfg.shared_prefix and self.critic is None and not self.cfg.gradient_checkpointing
                and plain_head(self.policy) and shares_cache(self.policy))

    def _forward_batches(self, trajs: list[Trajectory]):
        if self._shares_prefix():
            keys = [tuple(t.prompt_ids) for t in trajs]
            groups = shared_prefix_batches(keys, [len(t.prompt_ids) for t in trajs],
                                           [len(t.response_ids) for t in trajs], self.cfg.micro_batch_tokens)
            for group in groups:
                yield group, build_shared_prefix_window(
                    [trajs[i].prompt_ids for i in group], [trajs[i].response_ids for i in group],
                    self.tokenizer.pad_token_id, self.device)
            return
        lengths = [len(t.prompt_ids) + len(t.response_ids) for t in trajs]
        for group in micro_batches(lengths, self.cfg.micro_batch_tokens):
            window = build_window([trajs[i].prompt_ids for i in group], [trajs[i].response_ids for i in group],
                                  self.tokenizer.pad_token_id, self.device)
            yield group, window

    def _policy_mask(self, trajs: list[Trajectory], group: list[int], window: Window) -> torch.Tensor:
        """[N, R] loss_mask of a micro-batch, right-aligned like its window (1 = a policy token)."""
        return right_align([torch.tensor(trajs[i].loss_mask) for i in group], window.width, self.device)

    def _on_policy(self, n_trajectories: int) -> bool:
        """One epoch over one mini-batch: the update's first forward pass scores exactly the sampling policy,
        so its detached log-probs are the "old" ones and no separate pass is needed (as TRL and verl do)."""
        return self.cfg.ppo_epochs == 1 and (self.cfg.mini_batch_size or n_trajectories) >= n_trajectories

    @torch.no_grad()
    def _score_tokens(self, trajs: list[Trajectory]) -> dict[str, list[torch.Tensor]]:
        """Per-trajectory old log-probs, reference log-probs and values (1-D, response length).

        Log-probs are computed at policy tokens only (0 at environment tokens, which every loss masks out).
        Old log-probs are skipped when the update is on-policy (:meth:`_on_policy`).
        """
        out: dict[str, list[torch.Tensor]] = {"old": [None] * len(trajs), "ref": [None] * len(trajs),
                                              "values": [None] * len(trajs)}
        need_old = not self._on_policy(len(trajs))
        if not (need_old or self.cfg.kl_coef > 0 or self.critic is not None):
            return out
        self.policy.eval()
        for group, window in self._forward_batches(trajs):
            lengths = [len(trajs[i].response_ids) for i in group]
            select = self._policy_mask(trajs, group, window)
            with autocast_context(self.device, self.autocast):
                if need_old:
                    logp = selected_logprobs(self.policy, window, select, self.cfg.temperature).logprobs
                    for i, row in zip(group, unalign(logp, lengths)):
                        out["old"][i] = row
                if self.cfg.kl_coef > 0:
                    ref_logp = self._reference_logprobs(window, select)
                    for i, row in zip(group, unalign(ref_logp, lengths)):
                        out["ref"][i] = row
                if self.critic is not None:
                    self.critic.eval()
                    for i, row in zip(group, unalign(self.critic(window), lengths)):
                        out["values"][i] = row
        return out

    def _reference_logprobs(self, window: Window, select: torch.Tensor) -> torch.Tensor:
        if self.reference is not None:
            return selected_logprobs(self.reference, window, select, self.cfg.temperature).logprobs
        with self.policy.disable_adapter():
            return selected_logprobs(self.policy, window, select, self.cfg.temperature).logprobs

    def _advantages(self, trajs: list[Trajectory], rewards: list[float], values: list[torch.Tensor] | None):
        """Per-trajectory advantages (and returns for PPO), 1-D over the response."""
        lengths = [len(t.response_ids) for t in trajs]
        width = max(lengths)
        cpu = torch.device("cpu")
        mask = right_align([torch.tensor(t.loss_mask) for t in trajs], width, cpu)
        r = torch.tensor(rewards, dtype=torch.float32)
        algo = self.cfg.algorithm
        if algo == "reinforce":
            adv, ret = reinforce_advantages(r, mask, baseline=self.cfg.baseline), None
        elif algo == "grpo":
            groups = torch.tensor([t.group for t in trajs], dtype=torch.long)
            adv, ret = grpo_advantages(r, groups, mask, scale_by_std=self.cfg.grpo_scale_by_std,
                                       singleton=self.cfg.grpo_singleton), None
        elif algo == "rloo":
            groups = torch.tensor([t.group for t in trajs], dtype=torch.long)
            adv, ret = rloo_advantages(r, groups, mask), None
        else:
            token_rewards = torch.zeros_like(mask)
            last = width - 1 - torch.argmax(mask.flip(-1), dim=-1)  # last policy token of each row
            token_rewards[torch.arange(len(trajs)), last] = r
            v = right_align(values, width, cpu)
            adv, ret = gae_advantages(token_rewards, v, mask, self.cfg.gamma, self.cfg.lam)
            if int(mask.sum()) > 1:
                adv = whiten(adv, mask)
        return unalign(adv, lengths), (unalign(ret, lengths) if ret is not None else None)

    def _update(self, trajs: list[Trajectory], rewards: list[float]) -> dict[str, float]:
        cfg = self.cfg
        scored = self._score_tokens(trajs)
        advantages, returns = self._advantages(trajs, rewards, scored["values"] if self.critic else None)
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}

        def add(name: str, value: float, weight: float = 1.0) -> None:
            sums[name] = sums.get(name, 0.0) + value * weight
            counts[name] = counts.get(name, 0.0) + weight

        self.policy.train()
        if self.critic is not None:
            self.critic.train()
        mb = cfg.mini_batch_size or len(trajs)
        for _ in range(cfg.ppo_epochs):
            order = self.shuffle_rng.permutation(len(trajs)).tolist()
            for start in range(0, len(order), mb):
                chunk = order[start : start + mb]
                sub = [trajs[i] for i in chunk]
                normalizer = float(sum(sum(t.loss_mask) for t in sub))
                if normalizer == 0:
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                if self.critic_optimizer is not None:
                    self.critic_optimizer.zero_grad(set_to_none=True)
                for group, window in self._forward_batches(sub):
                    idx = [chunk[g] for g in group]
                    stats = self._micro_step(window, idx, trajs, scored, advantages, returns, normalizer)
                    weight = float(sum(sum(trajs[i].loss_mask) for i in idx))
                    for k, v in stats.items():
                        add(k, v, weight)
                params = [p for p in self.policy.parameters() if p.requires_grad]
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                add("grad_norm", float(grad_norm))
                self.optimizer.step()
                if self.critic_optimizer is not None:
                    torch.nn.utils.clip_grad_norm_(self._critic_parameters(), cfg.grad_clip)
                    self.critic_optimizer.step()
        self.policy.eval()
        return {k: sums[k] / counts[k] for k in sums}

    def _micro_step(self, window: Window, idx: list[int], trajs, scored, advantages, returns,
                    normalizer: float) -> dict[str, float]:
        cfg = self.cfg
        width = window.width
        dev = self.device
        mask = self._policy_mask(trajs, idx, window)
        adv = right_align([advantages[i] for i in idx], width, dev)
        with autocast_context(dev, self.autocast):
            scored_now = selected_logprobs(self.policy, window, mask, cfg.temperature, entropy=True,
                                           entropy_grad=cfg.entropy_coef > 0)
            logp = scored_now.logprobs
            # no old log-probs were scored when the update is on-policy: this pass's own (detached) are they
            old = logp.detach() if scored["old"][idx[0]] is None else right_align(
                [scored["old"][i] for i in idx], width, dev)
            loss, pg_stats = ppo_clip_loss(logp, old, adv, mask, cfg.clip_ratio, cfg.clip_ratio,
                                           normalizer=normalizer)
            stats = {"policy_loss": loss.item() * normalizer / max(1.0, float(mask.sum())), **pg_stats}
            if cfg.kl_coef > 0:
                ref = right_align([scored["ref"][i] for i in idx], width, dev)
                kl = aggregate_token_loss(kl_estimate(logp, ref, cfg.kl_estimator, loss_mask=mask), mask, normalizer)
                loss = loss + cfg.kl_coef * kl
                stats["kl"] = kl.item() * normalizer / max(1.0, float(mask.sum()))
            else:
                stats["kl"] = 0.0
            # entropy at the policy's tokens ([M], the selected positions in row-major order)
            if cfg.entropy_coef > 0:
                entropy = scored_now.entropy.sum() / normalizer
                loss = loss - cfg.entropy_coef * entropy
                stats["entropy"] = entropy.item() * normalizer / max(1.0, float(mask.sum()))
            else:
                stats["entropy"] = float(scored_now.entropy.detach().mean()) if len(scored_now.entropy) else 0.0
            if self.critic is not None:
                values = self.critic(window)
                old_values = right_align([scored["values"][i] for i in idx], width, dev)
                ret = right_align([returns[i] for i in idx], width, dev)
                vloss, vstats = value_loss(values, old_values, ret, mask, cfg.value_clip, normalizer=normalizer)
                loss = loss + vloss
                stats["value_loss"] = vloss.item() * normalizer / max(1.0, float(mask.sum()))
        loss.backward()
        return stats

    # ------------------------------------------------------------------------------------------ state
    def save(self) -> Path:
        tmp = ckpt.begin(self.run_dir, self.step)
        self.policy.save_pretrained(tmp / "policy")
        self.tokenizer.save_pretrained(tmp / "policy")
        write_policy_info(tmp / "policy", doc_format=self.cfg.doc_format)
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        if self.critic is not None:
            torch.save(self.critic.head.state_dict() if self.critic.detach_trunk else self.critic.state_dict(),
                       tmp / "critic.pt")
            torch.save(self.critic_optimizer.state_dict(), tmp / "critic_optimizer.pt")
        torch.save(ckpt.capture_rng(), tmp / "rng.pt")
        ckpt.write_json(tmp / "state.json", {
            "step": self.step,
            "config": to_dict(self.cfg),  # what these steps were made with: a resume is checked against it
            "sampler": self.sampler.state_dict(),
            "noise_rng": self.noise_rng.bit_generator.state,
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "train_files": self.cfg.train_files,
        })
        return ckpt.commit(self.run_dir, tmp, self.step, self.cfg.keep_checkpoints)

    def load(self, path: Path) -> None:
        """Restore every piece of state from a checkpoint directory written by :meth:`save`."""
        state = ckpt.read_json(path / "state.json")
        self._load_policy_weights(path / "policy")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        if self.critic is not None:
            critic_state = torch.load(path / "critic.pt", weights_only=False)
            (self.critic.head if self.critic.detach_trunk else self.critic).load_state_dict(critic_state)
            self.critic_optimizer.load_state_dict(torch.load(path / "critic_optimizer.pt", weights_only=False))
        self.sampler.load_state_dict(state["sampler"])
        self.noise_rng.bit_generator.state = state["noise_rng"]
        self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
        ckpt.restore_rng(torch.load(path / "rng.pt", weights_only=False))
        self.step = int(state["step"])

    def _load_policy_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        if self.cfg.lora.enabled:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.policy, load_file(directory / "adapter_model.safetensors"))
            return
        state: dict[str, torch.Tensor] = {}
        for f in sorted(directory.glob("*.safetensors")):
            state.update(load_file(f))
        missing, unexpected = self.policy.load_state_dict(state, strict=False)
        # save_pretrained drops tied copies (e.g. lm_head when tied to the embeddings): those may be missing
        tied = set(getattr(self.policy, "_tied_weights_keys", None) or [])
        real_missing = [k for k in missing if k not in tied and not k.startswith("lm_head")]
        if real_missing or unexpected:
            raise RuntimeError(f"checkpoint {directory} does not match the model: missing {real_missing[:5]}, "
                               f"unexpected {unexpected[:5]}")


def finish_run(trainer: Trainer) -> dict[str, Path]:
    """After training: evaluate the final policy with a real engine (if ``final_eval.enabled``; with
    ``final_eval.baselines`` also the untrained and warmed-up models, see :mod:`zerosearch.compare`), then
    write the run report (if ``report``). Returns the paths written."""
    cfg = trainer.cfg
    written: dict[str, Path] = {}
    if cfg.final_eval.enabled:
        from zerosearch.compare import final_evaluation

        policy_dir = ckpt.latest_checkpoint(trainer.run_dir)
        if policy_dir is None:
            raise RuntimeError(f"{trainer.run_dir} has no checkpoint to evaluate")
        final_evaluation(cfg, trainer.run_dir, policy_dir / "policy", trainer.init_model, progress=trainer.progress)
        written["eval"] = trainer.run_dir / "eval"
    if cfg.report:
        from zerosearch.report import write_report

        written["report"] = write_report(trainer.run_dir)
    return written


def check_engine_specs(cfg: TrainConfig) -> None:
    """The engine specs a run will use, checked before it starts (no index built, no model loaded): the
    final evaluation's is used only after the last step, where a typo used to surface hours in. Raises
    ConfigError naming the key."""
    from zerosearch.evaluate import NEEDS_ENGINE
    from zerosearch.search.factory import check_engine_spec, naming_key

    used = []
    if cfg.engine.kind == "real" and cfg.max_turns > 0:
        used.append(("engine.spec", cfg.engine.spec))
    if cfg.warmup.enabled:
        used.append(("warmup.engine", cfg.warmup.engine))
    if cfg.pool.enabled:
        used.append(("pool.engine", cfg.pool.engine))
    if cfg.final_eval.enabled and cfg.final_eval.method in NEEDS_ENGINE:
        used.append(("final_eval.engine", cfg.final_eval.engine))
    for key, spec in used:
        with naming_key(key, spec):
            check_engine_spec(spec)


def start_run(cfg: TrainConfig, engine: SearchEngine | None = None, progress: bool = True) -> Trainer:
    """Create the run directory (refusing to overwrite a run that has checkpoints) and a Trainer. A run that
    fails before its Trainer exists (a wrong model, engine, device...) leaves no empty directory it created."""
    run_dir = default_run_dir(cfg)
    if ckpt.latest_checkpoint(run_dir) is not None:
        raise FileExistsError(
            f"{run_dir} already holds a run with checkpoints; continue it with "
            f"`zerosearch train --resume {run_dir}` or choose another output_dir=/run_name="
        )
    check_model_spec(cfg.model)  # a wrong model= ends here, before the run directory exists
    check_engine_specs(cfg)
    if cfg.lora.enabled:  # the module names need the model's architecture: said before the run directory exists
        check_lora_targets(cfg.model, cfg.lora)
    absolute_files(cfg)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer = Trainer(cfg, run_dir, engine=engine, progress=progress)
    except BaseException:
        # a run that never started leaves no empty directory behind (checks that need the model or its
        # tokenizer, e.g. a simulator without a chat template, run inside Trainer); what it measured before
        # failing (an empty pool's pool.json) stays, and so does a directory the user made beforehand
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    save_config(cfg, run_dir / "config.yaml")
    return trainer


# What a resumed run may change: how long it runs, how it saves, logs and reports, how fast it computes
# (speed levers that give the same updates), and where its engine answers. Everything else was spent or
# stored when the steps so far ran: the checkpoint's optimizer and scheduler hold lr, weight decay and the
# warm-up; its weights hold the model, LoRA and the critic; the warm-up and the seed acted before step 1;
# and a changed reward, algorithm or curriculum would make the run's curves mix two experiments.
RESUMABLE_KEYS = (
    "total_steps", "save_every", "keep_checkpoints", "log_rollouts", "tensorboard", "wandb", "wandb_project",
    "report", "final_eval", "num_threads", "device", "dtype", "autocast", "micro_batch_tokens",
    "rollout_batch_size", "kv_cache", "kv_reuse", "shared_prefix", "gradient_checkpointing", "engine.spec",
    "engine.simulator.base_url", "engine.simulator.api_key_env", "engine.simulator.max_concurrency",
    "engine.simulator.timeout", "engine.simulator.max_retries", "engine.simulator.max_batch_size",
    "engine.simulator.prefix_cache",
)


def resume_changes(before: TrainConfig, after: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every setting that differs between two configs."""
    from zerosearch.config import flat_keys, to_dict

    old, new = flat_keys(to_dict(before)), flat_keys(to_dict(after))
    for key in PATH_LIST_KEYS:  # the same files under another spelling (relative, ./, absolute) are no change
        if _same_files(old.get(key) or [], new.get(key) or []):
            old[key] = new[key]
    return {k: (old.get(k), new.get(k)) for k in new if old.get(k) != new.get(k)}


PATH_LIST_KEYS = ("train_files", "final_eval.files", "pool.files")


def _same_files(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(Path(x).resolve() == Path(y).resolve() for x, y in zip(a, b))


def absolute_files(cfg: TrainConfig) -> None:
    """Write the run's data files as absolute paths (where they exist), so that its config.yaml, and a
    resume from it, mean the same files from any working directory."""
    cfg.train_files = [str(Path(f).resolve()) if Path(f).exists() else f for f in cfg.train_files]
    cfg.final_eval.files = [str(Path(f).resolve()) if Path(f).exists() else f for f in cfg.final_eval.files]
    cfg.pool.files = [str(Path(f).resolve()) if Path(f).exists() else f for f in cfg.pool.files]


def check_resume_changes(changes: dict[str, tuple[Any, Any]], run_dir: Path, done_steps: int) -> None:
    """Raise ConfigError for the overrides a resumed run cannot honour (see :data:`RESUMABLE_KEYS`), naming
    each with the way to train on with it: a new run from this run's newest policy."""
    from zerosearch.config import ConfigError
    from zerosearch.search.factory import engine_kind

    fixed = [k for k in changes if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)]
    if fixed:
        latest = ckpt.latest_checkpoint(run_dir)
        start = (f"{run_dir / 'config.yaml'} model={latest / 'policy'} warmup.enabled=false output_dir=NEW_DIR"
                 if latest else f"{run_dir / 'config.yaml'} output_dir=NEW_DIR")
        shown = ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in fixed)
        raise ConfigError(
            f"{shown}: cannot change when {run_dir} resumes (its checkpoint and its {done_steps} steps so far "
            "were made with the old value; the new one comes from the overrides or an edit of its config.yaml). "
            "A resumed run may change total_steps, saving, logging, reports, final_eval, speed settings and the "
            "engine's address. To train on with the new value, start a new run from this one's policy: "
            f"zerosearch train {start} {' '.join(f'{k}=...' for k in fixed)}")
    if "engine.spec" in changes and len({engine_kind(spec or "") for spec in changes["engine.spec"]}) > 1:
        old, new = changes["engine.spec"]
        raise ConfigError(f"engine.spec {old!r} -> {new!r}: a resumed run may move its engine (another URL or "
                          "corpus path of the same kind), not change it for another kind")
    if "total_steps" in changes and changes["total_steps"][1] < done_steps:
        raise ConfigError(f"total_steps={changes['total_steps'][1]} is below the {done_steps} steps {run_dir} "
                          "has done; give a larger total_steps to train on")


def _recorded_config(state: dict[str, Any]) -> TrainConfig | None:
    """The config the newest checkpoint's steps were made with, which a resume is compared with (so a hand
    edit of config.yaml is a change too); None for checkpoints that did not record one, or recorded keys
    this version no longer has (then config.yaml is the reference)."""
    from zerosearch.config import ConfigError

    if "config" not in state:
        return None
    try:
        return from_dict(TrainConfig, state["config"])
    except ConfigError:
        return None


def resume_run(run_dir: str | Path, overrides: list[str] | None = None, engine: SearchEngine | None = None,
               progress: bool = True) -> Trainer:
    """Rebuild the Trainer from ``run_dir/config.yaml`` and its newest checkpoint.

    ``overrides`` may change only :data:`RESUMABLE_KEYS` (ConfigError otherwise, before any model loads);
    what they change is in ``trainer.resume_changes`` (``{key: (old, new)}``) and written to config.yaml.
    """
    from zerosearch.config import load_train_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_train_config(run_dir / "config.yaml", overrides)
    latest = ckpt.latest_checkpoint(run_dir)
    state: dict[str, Any] = {}
    done = 0
    if latest is not None:
        try:
            state = ckpt.read_json(latest / "state.json")
            done = int(state["step"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ckpt.damaged(latest, exc) from None
    before = _recorded_config(state) or load_train_config(run_dir / "config.yaml")
    if any(item.partition("=")[0].strip() in ("output_dir", "run_name") for item in overrides or []):
        from zerosearch.config import ConfigError

        raise ConfigError(f"a resumed run stays in {run_dir}: output_dir and run_name cannot change (copy the "
                          "directory to move it)")
    before.output_dir, before.run_name = cfg.output_dir, cfg.run_name  # where it lives is run_dir, wherever that is
    changes = resume_changes(before, cfg)
    check_resume_changes(changes, run_dir, done)
    check_engine_specs(cfg)
    cfg.output_dir = str(run_dir)
    rows = None
    if cfg.pool.enabled and latest is not None:  # the steps so far drew from the stored pool: never scored again
        from zerosearch.pool import stored_pool

        rows = stored_pool(run_dir)
    trainer = Trainer(cfg, run_dir, engine=engine, rows=rows, progress=progress)
    if latest is not None:
        try:
            trainer.load(latest)
        except Exception as exc:  # noqa: BLE001 - torch, safetensors and pickle each raise their own kind
            raise ckpt.damaged(latest, exc) from exc
    trainer.resume_changes = changes
    save_config(cfg, run_dir / "config.yaml")
    return trainer
