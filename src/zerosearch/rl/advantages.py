"""Advantage estimators: REINFORCE, GRPO, RLOO and GAE, plus masked whitening.

Pure functions of tensors, no model and no trainer state.

Shapes: ``B`` is the number of trajectories, ``T`` the padded response length.
A trajectory's response mixes tokens the policy sampled (``loss_mask == 1``) with
tokens the environment inserted (retrieved documents inside ``<information>``, the
corrective message) and right padding (both ``loss_mask == 0``). Every estimator
here returns 0 on mask-0 positions, so nothing downstream has to remember to mask
advantages a second time (the losses mask anyway).

Reference implementation compared against: verl's ``verl/trainer/ppo/core_algos.py``
(``compute_gae_advantage_return``, ``compute_grpo_outcome_advantage``,
``compute_rloo_outcome_advantage``) and
``verl/utils/torch_functional.py`` (``masked_whiten``, ``masked_var``). Departures are
listed in each docstring.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "reinforce_advantages",
    "grpo_advantages",
    "rloo_advantages",
    "informative_groups",
    "gae_advantages",
    "whiten",
]

_BASELINES = ("none", "mean")
_SINGLETON_MODES = ("verl", "zero")


# --------------------------------------------------------------------------- helpers


def _float_dtype(x: Tensor) -> torch.dtype:
    """The floating dtype to compute in: ``x``'s own if floating, else float32."""
    return x.dtype if x.is_floating_point() else torch.float32


def _check_mask_2d(loss_mask: Tensor) -> None:
    if loss_mask.dim() != 2:
        raise ValueError(f"loss_mask must be [B, T]; got shape {tuple(loss_mask.shape)}")


def _check_rewards(rewards: Tensor, loss_mask: Tensor) -> None:
    _check_mask_2d(loss_mask)
    if rewards.dim() != 1 or rewards.shape[0] != loss_mask.shape[0]:
        raise ValueError(
            f"rewards must be [B] with B = loss_mask.shape[0] = {loss_mask.shape[0]}; "
            f"got shape {tuple(rewards.shape)} (pass one scalar outcome reward per trajectory)"
        )


def _check_groups(rewards: Tensor, group_ids: Tensor, loss_mask: Tensor) -> None:
    _check_rewards(rewards, loss_mask)
    if group_ids.shape != rewards.shape:
        raise ValueError(
            f"group_ids must be [B] like rewards {tuple(rewards.shape)}; got {tuple(group_ids.shape)}"
        )
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise ValueError("group_ids must be an integer tensor (e.g. the prompt index, dtype long)")


def _centered(values: Tensor, mean: Tensor, equal: Tensor) -> Tensor:
    """``values - mean``, exactly 0 where ``equal`` says every value of the set is the same.

    A float mean of equal values is not always that value (eight float32 copies of 2/3 average to
    2/3 + 6e-8), and a normaliser as small as the residue turns it into a full-size signal. Equal values
    carry no comparison, so their centred value is 0 by definition, not by arithmetic.
    """
    return torch.where(equal, torch.zeros_like(values), values - mean)


def _broadcast_over_policy_tokens(per_row: Tensor, loss_mask: Tensor) -> Tensor:
    """[B] -> [B, T]: the row's value on mask-1 positions, exactly 0 elsewhere."""
    per_row = per_row.unsqueeze(-1).expand(loss_mask.shape)
    return torch.where(loss_mask.bool(), per_row, torch.zeros_like(per_row))


# --------------------------------------------------------------------------- REINFORCE


def reinforce_advantages(rewards: Tensor, loss_mask: Tensor, baseline: str = "none") -> Tensor:
    """REINFORCE advantage: the trajectory's outcome reward on each of its policy tokens.

    This is ZeroSearch's default (and best) estimator: the raw outcome reward,
    broadcast over the response tokens and used inside the PPO-clip loss.

    Args:
        rewards: ``[B]`` one scalar outcome reward per trajectory.
        loss_mask: ``[B, T]`` 1 where the policy sampled the token, 0 for
            environment-inserted tokens and padding.
        baseline: ``"none"`` (the paper: advantage = reward) or ``"mean"`` (an
            optional variance reduction, not in the paper: subtract the batch-mean
            reward, i.e. the mean over all ``B`` trajectories, each counted once
            regardless of length).

    Returns:
        ``[B, T]`` advantages in ``rewards``' float dtype (float32 for integer
        rewards); exactly 0 on mask-0 positions.
    """
    _check_rewards(rewards, loss_mask)
    if baseline not in _BASELINES:
        raise ValueError(f"baseline must be one of {_BASELINES}; got {baseline!r}")
    r = rewards.to(_float_dtype(rewards))
    if baseline == "mean" and r.numel():
        r = _centered(r, r.mean(), r.max() == r.min())
    return _broadcast_over_policy_tokens(r, loss_mask)


# --------------------------------------------------------------------------- GRPO


def grpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    loss_mask: Tensor,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    singleton: str = "verl",
) -> Tensor:
    """GRPO advantage: the reward normalised within its group (rollouts of one prompt).

    ``A_i = (r_i - mean_g) / (std_g + eps)`` with ``std_g`` the *unbiased* standard
    deviation (``torch.std``'s default, as verl uses), broadcast over the policy
    tokens. ``scale_by_std=False`` gives ``r_i - mean_g`` (Dr. GRPO; verl's
    ``norm_adv_by_std_in_grpo=False``). A group of two or more whose rewards are all
    equal gets advantage exactly 0, at any size and reward value (departure from verl,
    whose float mean of equal values can leave a residue of ~1e-8 that ``/ (std + eps)``
    with ``std`` of the same size turns into advantages of order 0.05-1).

    Groups of size 1 (an unbiased std is undefined):

    * ``singleton="verl"`` (default) mirrors verl's ``compute_grpo_outcome_advantage``,
      which sets mean 0 and std 1 for such a group, so the advantage is
      ``r / (1 + eps)`` — effectively the raw reward, *not* 0.
    * ``singleton="zero"`` gives advantage 0 (no in-group comparison, no signal).

    Args:
        rewards: ``[B]`` one scalar outcome reward per trajectory.
        group_ids: ``[B]`` integer id of each trajectory's group (e.g. prompt index);
            ids need not be contiguous or sorted.
        loss_mask: ``[B, T]`` policy-token mask.
        eps: added to the std before dividing.
        scale_by_std: divide by ``std + eps`` (GRPO) or not (Dr. GRPO).
        singleton: ``"verl"`` or ``"zero"``, see above.

    Returns:
        ``[B, T]`` advantages, exactly 0 on mask-0 positions.

    Departure from verl: verl takes token-level rewards and sums them per row and
    groups by arbitrary hashable uids in a Python loop; this takes the per-row
    reward directly and integer group ids, and is vectorised.
    """
    _check_groups(rewards, group_ids, loss_mask)
    if singleton not in _SINGLETON_MODES:
        raise ValueError(f"singleton must be one of {_SINGLETON_MODES}; got {singleton!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps}")

    r = rewards.to(_float_dtype(rewards))
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    n = counts.to(r.dtype)
    g = counts.shape[0]

    # Two-pass per-group mean and unbiased variance (the same numbers torch.std gives).
    mean = torch.zeros(g, dtype=r.dtype, device=r.device).index_add_(0, inverse, r) / n
    lo = torch.full((g,), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amin")
    hi = torch.full((g,), float("-inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amax")
    equal = (lo == hi) & (counts > 1)
    dev = _centered(r, mean[inverse], equal[inverse])
    sq = torch.zeros(g, dtype=r.dtype, device=r.device).index_add_(0, inverse, dev * dev)
    std = (sq / (n - 1).clamp(min=1)).sqrt()

    single = counts == 1
    # verl: mean 0, std 1 for single-member groups.
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)

    adv = _centered(r, mean[inverse], equal[inverse])
    if scale_by_std:
        adv = adv / (std[inverse] + eps)
    if singleton == "zero":
        adv = torch.where(single[inverse], torch.zeros_like(adv), adv)
    return _broadcast_over_policy_tokens(adv, loss_mask)


# --------------------------------------------------------------------------- RLOO


def rloo_advantages(rewards: Tensor, group_ids: Tensor, loss_mask: Tensor) -> Tensor:
    """RLOO advantage: the reward minus the mean reward of the *other* rollouts of its prompt.

    For a group ``g`` of ``n >= 2`` trajectories (the rollouts of one prompt)::

        A_i = r_i - 1/(n-1) * sum_{j in g, j != i} r_j  =  n/(n-1) * (r_i - mean_g)

    broadcast over the policy tokens (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
    Optimization for Learning from Human Feedback in LLMs", its RLOO estimator, after Kool et al. 2019, "Buy 4
    REINFORCE Samples, Get a Baseline for Free!"). The baseline of each sample is independent of that
    sample, so the gradient estimate stays unbiased; it is Dr. GRPO's ``r_i - mean_g`` scaled by
    ``n/(n-1)``. A group's advantages sum to 0.

    * A group whose rewards are all equal gets exactly 0 (no comparison; the float sum of equal values can
      leave a residue, see :func:`_centered`).
    * A group of one gets 0: with no other rollout there is no leave-one-out baseline, and its raw reward
      would be REINFORCE's advantage with no contrast, pushing up whatever it did. In zerosearch's trainer
      such a group is a prompt whose other rollouts failed to search (``rollouts_per_prompt >= 2`` is
      required); it is left out of the comparison rather than trained on its raw reward, so RLOO needs no
      ``singleton`` choice like :func:`grpo_advantages`' (whose ``"verl"`` rule mirrors verl's GRPO).

    Args:
        rewards: ``[B]`` one scalar outcome reward per trajectory.
        group_ids: ``[B]`` integer id of each trajectory's group (e.g. the prompt index); ids need not be
            contiguous or sorted.
        loss_mask: ``[B, T]`` policy-token mask.

    Returns:
        ``[B, T]`` advantages in ``rewards``' float dtype (float32 for integer rewards), exactly 0 on mask-0
        positions.

    Raises:
        ValueError: shapes that do not match, or float group ids.

    Compared with verl's ``compute_rloo_outcome_advantage`` (``r * n/(n-1) - mean * n/(n-1)``, the same
    values for groups of two or more): verl leaves a group of one its raw reward (here 0), may leave a
    float residue on equal rewards (here exactly 0), groups by arbitrary uids in a Python loop (here integer
    ids, vectorised) and sums token-level rewards (here one reward per row). Compared with TRL's RLOO
    trainer (``baseline = (sum - r) / (k - 1)``): TRL subtracts ``beta * KL`` from the reward before the
    baseline and can normalise the advantages over the batch (``normalize_advantages``); here the KL is a
    loss term (``kl_coef``, as for every algorithm) and nothing is normalised, and groups may differ in size
    (failed searches leave some smaller), where TRL reshapes to a fixed ``[k, N]``.
    """
    _check_groups(rewards, group_ids, loss_mask)
    r = rewards.to(_float_dtype(rewards))
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    g = counts.shape[0]
    total = torch.zeros(g, dtype=r.dtype, device=r.device).index_add_(0, inverse, r)
    lo = torch.full((g,), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amin")
    hi = torch.full((g,), float("-inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amax")
    n = counts[inverse]
    # leave-one-out mean of the others; a group of one has none (clamped here, zeroed below)
    others = (total[inverse] - r) / (n - 1).clamp(min=1).to(r.dtype)
    no_contrast = ((lo == hi) | (counts == 1))[inverse]
    adv = _centered(r, others, no_contrast)
    return _broadcast_over_policy_tokens(adv, loss_mask)


def informative_groups(rewards: Sequence[float], group_ids: Sequence[int]) -> set[int]:
    """The ids of the groups that carry a comparison: two or more members whose rewards are not all equal.

    Under a group baseline (:func:`grpo_advantages`, :func:`rloo_advantages`) every member of any other
    group gets advantage exactly 0, so such a group adds no gradient, only cost (and, in a token-mean loss,
    weight in the denominator). DAPO's dynamic sampling (Yu et al. 2025, section 3.2) drops them and samples
    further prompts; the trainer's ``drop_uniform_groups`` does that with this rule. Rewards are compared
    exactly, as the estimators' zero rule does. Departure from verl's ``recipe/dapo`` (``filter_groups``,
    which keeps a group if the std of its metric is > 0 or it has one member): a group of one is not
    informative here, since :func:`rloo_advantages` and ``grpo_singleton="zero"`` give it 0 and the
    ``"verl"`` rule only its raw reward.

    Args:
        rewards: one reward per trajectory (``[B]``).
        group_ids: the group of each trajectory (``[B]``), e.g. its prompt's index in the step.

    Raises:
        ValueError: the two differ in length.
    """
    if len(rewards) != len(group_ids):
        raise ValueError(f"rewards and group_ids must have the same length; got {len(rewards)} and {len(group_ids)}")
    seen: dict[int, set[float]] = {}
    for r, g in zip(rewards, group_ids):
        seen.setdefault(int(g), set()).add(float(r))
    return {g for g, values in seen.items() if len(values) > 1}  # two distinct values need two members


# --------------------------------------------------------------------------- GAE


def gae_advantages(
    token_rewards: Tensor,
    values: Tensor,
    loss_mask: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over the policy tokens only.

    The mask-1 positions of a row are treated as one contiguous sequence of
    decisions; environment-inserted tokens and padding are skipped, not counted as
    time steps. For a policy token at position ``t`` let ``t'`` be the next mask-1
    position in the same row (none after the last one)::

        delta_t = r_t + gamma * V(t') - V(t)          (V(t') = 0 after the last one)
        A_t     = delta_t + gamma * lam * A_{t'}      (A_{t'} = 0 after the last one)
        R_t     = A_t + V(t)

    With ``gamma = lam = 1`` and a single terminal reward ``R`` every policy token
    gets ``A_t = R - V(t)`` and return ``R``.

    Args:
        token_rewards: ``[B, T]`` per-token rewards. Rewards may only sit on mask-1
            positions: the trainer puts the outcome reward on the row's last mask-1
            token. A nonzero reward on a mask-0 position raises ``ValueError``
            (there is no decision there to credit it to; verl silently drops it).
        values: ``[B, T]`` critic values ``V(t)``; entries at mask-0 positions are
            ignored (they may hold anything, even NaN).
        loss_mask: ``[B, T]`` policy-token mask.
        gamma: discount factor (ZeroSearch PPO: 1.0).
        lam: GAE lambda (ZeroSearch PPO: 1.0).

    Returns:
        ``(advantages, returns)``, both ``[B, T]`` in ``values``' float dtype, both
        exactly 0 on mask-0 positions.

    Matches verl's ``compute_gae_advantage_return`` (the version that skips
    observation tokens: ``nextvalues``/``lastgaelam`` carried across mask-0
    positions) on mask-1 positions, with two departures: (1) verl whitens the
    advantages inside the estimator (``masked_whiten`` over the whole batch); here
    the estimator returns raw advantages and the trainer calls :func:`whiten` if it
    wants verl's behaviour. (2) verl leaves carried-over numbers at mask-0 positions;
    here they are 0. Runs under ``no_grad``; a backward loop over ``T`` with
    ``[B]``-wide tensor ops (B=64, T=4000 takes well under a second on CPU).
    """
    _check_mask_2d(loss_mask)
    if token_rewards.shape != loss_mask.shape or values.shape != loss_mask.shape:
        raise ValueError(
            "token_rewards, values and loss_mask must all be [B, T]; got "
            f"{tuple(token_rewards.shape)}, {tuple(values.shape)}, {tuple(loss_mask.shape)}"
        )
    policy = loss_mask.bool()
    if torch.any((token_rewards != 0) & ~policy):
        raise ValueError(
            "token_rewards has nonzero entries at loss_mask == 0 positions (environment "
            "tokens or padding); put the outcome reward on the row's last policy token"
        )

    dtype = _float_dtype(values)
    with torch.no_grad():
        # Work on [T, B] contiguous tensors so each step indexes a contiguous row.
        r = token_rewards.to(dtype).t().contiguous()
        v = values.detach().to(dtype).t().contiguous()
        m = policy.t().contiguous()
        # Clean ignored entries up front so garbage (NaN/inf) cannot leak via 0 * x.
        v = torch.where(m, v, torch.zeros_like(v))
        r = torch.where(m, r, torch.zeros_like(r))

        n_steps, batch = m.shape
        adv = torch.zeros_like(v)
        next_value = torch.zeros(batch, dtype=dtype, device=v.device)
        next_adv = torch.zeros(batch, dtype=dtype, device=v.device)
        gl = gamma * lam
        # Trailing columns that are padding in every row contribute nothing.
        any_policy = m.any(dim=1).nonzero()
        last = int(any_policy[-1]) if any_policy.numel() else -1
        for t in range(last, -1, -1):
            mt = m[t]
            delta = r[t] + gamma * next_value - v[t]
            a_t = delta + gl * next_adv
            # Only policy tokens update the carried state; mask-0 positions pass it on.
            next_value = torch.where(mt, v[t], next_value)
            next_adv = torch.where(mt, a_t, next_adv)
            adv[t] = torch.where(mt, a_t, adv[t])
        returns = torch.where(m, adv + v, torch.zeros_like(v))
    return adv.t().contiguous(), returns.t().contiguous()


# --------------------------------------------------------------------------- whitening


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Masked whitening: ``(x - mean) / sqrt(var + eps)`` over the mask-1 entries.

    Mirrors verl's ``masked_whiten`` (used on PPO/GAE advantages): the mean and the
    *unbiased* variance are taken over all mask-1 entries of the whole tensor (not
    per row); ``shift_mean=False`` adds the mean back (scale only).

    Args:
        x: ``[B, T]`` (any shape matching ``mask``).
        mask: same shape as ``x``; needs at least two mask-1 entries.
        shift_mean: subtract the mean (True) or only rescale (False).
        eps: added to the variance before the square root (verl: 1e-8).

    Returns:
        Tensor shaped like ``x``; exactly 0 on mask-0 positions (departure: verl
        leaves whitened garbage there), and exactly 0 (``shift_mean``) or ``x``
        (scale only) everywhere when all mask-1 entries are equal.
    """
    if x.shape != mask.shape:
        raise ValueError(f"x and mask must have the same shape; got {tuple(x.shape)} and {tuple(mask.shape)}")
    keep = mask.bool()
    count = int(keep.sum())
    if count < 2:
        raise ValueError(
            f"whiten needs at least 2 mask-1 entries for an unbiased variance; got {count} "
            "(use a larger batch or skip whitening)"
        )
    xf = x.to(_float_dtype(x))
    vals = xf[keep]
    mean = vals.mean()
    var = vals.var(unbiased=True)
    # equal values whiten to exactly 0 (not residue / sqrt(eps)); see _centered
    equal = vals.max() == vals.min()
    out = _centered(xf, mean, equal) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = torch.where(equal, xf, out + mean)
    return torch.where(keep, out, torch.zeros_like(out))
