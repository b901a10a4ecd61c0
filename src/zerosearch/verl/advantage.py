"""The paper's REINFORCE as a verl advantage estimator: ``algorithm.adv_estimator=zerosearch_reinforce``.

verl 0.9 has no estimator whose advantage is the raw outcome reward (``grpo`` subtracts the group mean,
``reinforce_plus_plus`` whitens over the batch), and ZeroSearch's default and best algorithm uses exactly
that: advantage = the trajectory's reward on each of its policy tokens, inside the PPO-clip loss. This
module registers :func:`zerosearch.rl.advantages.reinforce_advantages` under that name in verl's
``ADV_ESTIMATOR_REGISTRY`` (``verl.trainer.ppo.core_algos.register_adv_est``).

The registry lives in the process that computes advantages (verl's TaskRunner, a Ray actor), so register
it there through Ray's per-process setup hook, which verl passes on to ``ray.init``::

    +ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=zerosearch.verl.advantage.register

(``configs/verl/train.sh`` sets it for ``ALGORITHM=reinforce``.)
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo import core_algos

from zerosearch.rl.advantages import reinforce_advantages

__all__ = ["ESTIMATOR", "register", "zerosearch_reinforce"]

ESTIMATOR = "zerosearch_reinforce"


def zerosearch_reinforce(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                         config: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both ``[B, T]``: each trajectory's outcome reward (the sum of its
    token-level rewards) on its tokens with ``response_mask`` 1, 0 elsewhere (verl's signature)."""
    advantages = reinforce_advantages(token_level_rewards.sum(dim=-1), response_mask)
    return advantages, advantages


def register() -> None:
    """Register :data:`ESTIMATOR` in verl's advantage registry (idempotent): Ray's setup-hook entry point."""
    if core_algos.ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR) is not zerosearch_reinforce:
        core_algos.register_adv_est(ESTIMATOR)(zerosearch_reinforce)


register()
