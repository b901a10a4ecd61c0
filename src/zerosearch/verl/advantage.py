"""zerosearch's advantage estimators for verl: ``algorithm.adv_estimator=zerosearch_reinforce``, ``zerosearch_grpo``
or ``zerosearch_rloo``.

* ``zerosearch_reinforce``, the paper's REINFORCE. verl 0.9 has no estimator whose advantage is the raw
  outcome reward (``grpo`` subtracts the group mean, ``reinforce_plus_plus`` whitens over the batch), and
  ZeroSearch's default and best algorithm uses exactly that: advantage = the trajectory's reward on each of
  its policy tokens, inside the PPO-clip loss (:func:`zerosearch.rl.advantages.reinforce_advantages`).
* ``zerosearch_grpo``, GRPO as zerosearch's trainer computes it (:func:`zerosearch.rl.advantages.grpo_advantages`).
  It departs from verl's ``grpo`` in two ways, both on purpose:

  - a trajectory whose ``response_mask`` is all 0 (the zerosearch agent loop gives a failed search that
    mask, :mod:`zerosearch.verl.agent_loop`) gets advantage 0 and is left out of its group's mean and
    standard deviation, as zerosearch's trainer removes it from the batch. Under verl's ``grpo`` its reward
    (0: it never answered) is averaged in, which raises every other member's advantage for an engine fault;
  - a group whose rewards are all equal gets advantage exactly 0 (verl's float mean can leave a residue that
    ``/ (std + eps)`` turns into advantages of order 0.05-1).

  ``algorithm.norm_adv_by_std_in_grpo=False`` (Dr. GRPO) is honoured. A group left with one trajectory is
  treated as verl treats one: mean 0, std 1.
* ``zerosearch_rloo``, RLOO as zerosearch's trainer computes it (:func:`zerosearch.rl.advantages.rloo_advantages`):
  the reward minus the mean reward of the other rollouts of its prompt. Departs from verl's ``rloo`` as
  ``zerosearch_grpo`` departs from ``grpo`` (a failed search is left out of its group's baseline; equal rewards
  give exactly 0), and a group left with one trajectory gets 0 where verl's ``rloo`` leaves it its raw reward.

All three are registered in verl's ``ADV_ESTIMATOR_REGISTRY`` (``verl.trainer.ppo.core_algos.register_adv_est``).
The registry lives in the process that computes advantages (verl's TaskRunner, a Ray actor), so register
them there through Ray's per-process setup hook, which verl passes on to ``ray.init``::

    +ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=zerosearch.verl.advantage.register

(``configs/verl/train.sh`` sets it for ``ALGORITHM=reinforce``, ``grpo`` and ``rloo``.)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from zerosearch.rl.advantages import grpo_advantages, reinforce_advantages, rloo_advantages

__all__ = ["ESTIMATOR", "GRPO_ESTIMATOR", "RLOO_ESTIMATOR", "register", "zerosearch_grpo", "zerosearch_reinforce",
           "zerosearch_rloo"]

ESTIMATOR = "zerosearch_reinforce"
GRPO_ESTIMATOR = "zerosearch_grpo"
RLOO_ESTIMATOR = "zerosearch_rloo"


def zerosearch_reinforce(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                         config: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both ``[B, T]``: each trajectory's outcome reward (the sum of its
    token-level rewards) on its tokens with ``response_mask`` 1, 0 elsewhere (verl's signature)."""
    advantages = reinforce_advantages(token_level_rewards.sum(dim=-1), response_mask)
    return advantages, advantages


def zerosearch_grpo(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                    config: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both ``[B, T]``: GRPO within the groups of ``index`` ([B], verl's ``uid``:
    the rollouts of one prompt), counting only the trajectories with some ``response_mask``; 0 on the others
    and on every position whose mask is 0 (see the module docstring for where this departs from verl).

    Raises:
        ValueError: without ``index`` (verl passes its ``uid`` column; a batch without one has no groups).
    """
    scale = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    return _over_kept_rows(GRPO_ESTIMATOR, token_level_rewards, response_mask, index,
                           lambda r, g, m: grpo_advantages(r, g, m, scale_by_std=scale))


def zerosearch_rloo(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                    config: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both ``[B, T]``: RLOO within the groups of ``index`` ([B], verl's ``uid``),
    counting only the trajectories with some ``response_mask``; 0 on the others, on a group left with one
    trajectory and on every position whose mask is 0 (see the module docstring).

    Raises:
        ValueError: without ``index``.
    """
    return _over_kept_rows(RLOO_ESTIMATOR, token_level_rewards, response_mask, index, rloo_advantages)


Estimator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (rewards, group ids, mask)


def _over_kept_rows(name: str, token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any,
                    estimator: Estimator) -> tuple[torch.Tensor, torch.Tensor]:
    """A group estimator over the rows with some ``response_mask`` (failed searches have none), grouped by
    verl's uids; the advantages twice, as verl's ``(advantages, returns)``."""
    if index is None:
        raise ValueError(f"{name} needs the rollouts' group ids (verl's non_tensor_batch['uid'])")
    index = np.asarray(index)
    if index.shape != (token_level_rewards.shape[0],):
        raise ValueError(f"index must be [B] with B = {token_level_rewards.shape[0]}; got {index.shape}")
    device = token_level_rewards.device
    ids: dict[Any, int] = {}
    group_ids = torch.tensor([ids.setdefault(uid, len(ids)) for uid in index.tolist()], dtype=torch.long,
                             device=device)
    kept = response_mask.sum(dim=-1) > 0
    advantages = torch.zeros(token_level_rewards.shape, dtype=torch.float32, device=device)
    if kept.any():
        advantages[kept] = estimator(token_level_rewards[kept].sum(dim=-1).float(), group_ids[kept],
                                     response_mask[kept])
    return advantages, advantages


def register() -> None:
    """Register the estimators in verl's advantage registry (idempotent): Ray's setup-hook entry point."""
    for name, fn in ((ESTIMATOR, zerosearch_reinforce), (GRPO_ESTIMATOR, zerosearch_grpo),
                     (RLOO_ESTIMATOR, zerosearch_rloo)):
        if core_algos.ADV_ESTIMATOR_REGISTRY.get(name) is not fn:
            core_algos.register_adv_est(name)(fn)


register()
