"""Losses and per-token quantities for policy-gradient training.

Pure functions of tensors. Shapes: ``B`` trajectories, ``T`` padded response length,
``V`` vocabulary size. ``loss_mask`` is ``[B, T]`` with 1 on policy-sampled tokens
and 0 on environment-inserted tokens and padding. Nothing at a mask-0 position can
change a loss or a gradient, even NaN or inf: every loss first *selects* its inputs
(:func:`select_policy_tokens`: ``torch.where`` to 0 before any arithmetic), because
masking a result afterwards is not enough for the gradient (the backward pass of
``(v - r)^2`` at a NaN ``r`` computes ``0 * NaN = NaN``, however the forward value
was masked).

Aggregation. Losses are *token-sum / normalizer*. ``normalizer`` defaults to the
number of mask-1 tokens in the tensors passed in, i.e. a token mean. When the
trainer splits a mini-batch into micro-batches for gradient accumulation, it passes
the mini-batch's total mask-1 token count as ``normalizer`` to every micro-batch;
the micro-batch losses (and gradients) then sum exactly to the mini-batch
token-mean loss, which is verl's ``"token-mean"`` ``loss_agg_mode``.

Reference implementation compared against: verl's ``verl/trainer/ppo/core_algos.py``
(``compute_policy_loss_vanilla``, ``compute_value_loss``, ``kl_penalty``,
``agg_loss``) and ``verl/utils/torch_functional.py`` (``logprobs_from_logits_v2``,
``entropy_from_logits``, ``masked_mean``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "masked_sum",
    "masked_mean",
    "select_policy_tokens",
    "aggregate_token_loss",
    "token_logprobs",
    "entropy_from_logits",
    "ppo_clip_loss",
    "kl_estimate",
    "value_loss",
]

KL_KINDS = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3")

# verl clamps the log-ratio before exp() in the PPO loss and in k3, for stability.
_LOG_RATIO_CLAMP = 20.0
# verl clamps the k3 estimate itself to [-10, 10].
_K3_CLAMP = 10.0


# --------------------------------------------------------------------------- masking


def select_policy_tokens(loss_mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor with its mask-0 entries replaced by 0, by selection (``torch.where``), not multiplication.

    The gradient that flows back to a replaced entry is exactly 0 and never touches its value, so NaN or
    inf there cannot reach any gradient. ``loss_mask`` is ``[B, T]``; a tensor may have extra trailing
    dims (``[B, T, V]`` logits), which are selected whole.
    """
    keep = loss_mask.to(tensors[0].device).bool() if tensors else loss_mask.bool()
    out = []
    for x in tensors:
        k = keep.reshape(keep.shape + (1,) * (x.dim() - keep.dim()))
        out.append(torch.where(k, x, torch.zeros((), dtype=x.dtype, device=x.device)))
    return tuple(out)


def masked_sum(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Sum of ``x * mask`` over ``dim`` (all dims if None), ignoring mask-0 entries.

    Args:
        x: any shape.
        mask: broadcastable to ``x``; 0/1 (bool, int or float; float weights are
            multiplied in).
        dim: dimension(s) to reduce; None reduces everything to a scalar.

    Returns:
        The masked sum; mask-0 entries of ``x`` never contribute, even if NaN.
    """
    mask = mask.to(x.device)
    keep = mask.bool()
    weighted = x if mask.dtype == torch.bool else x * mask.to(x.dtype)
    weighted = torch.where(keep, weighted, torch.zeros_like(weighted))
    return weighted.sum() if dim is None else weighted.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the mask-1 entries along ``dim`` (all dims if None).

    Safe on an empty mask: where the mask sums to 0 the result is 0 (not NaN), and
    the gradient is 0 too (the denominator is replaced, not the quotient).

    Args:
        x: any shape.
        mask: broadcastable to ``x``.
        dim: dimension(s) to reduce; None reduces everything to a scalar.

    Returns:
        ``masked_sum(x, mask, dim) / mask.sum(dim)`` with 0 where the count is 0.
    """
    total = masked_sum(x, mask, dim)
    count = masked_sum(torch.ones_like(x), mask, dim)
    denom = torch.where(count > 0, count, torch.ones_like(count))
    return total / denom


def aggregate_token_loss(
    loss_mat: Tensor, loss_mask: Tensor, normalizer: float | Tensor | None = None
) -> Tensor:
    """Token-sum of ``loss_mat`` over mask-1 positions divided by ``normalizer``.

    Args:
        loss_mat: ``[B, T]`` per-token loss.
        loss_mask: ``[B, T]`` policy-token mask.
        normalizer: the token count to divide by; default ``loss_mask.sum()`` (a
            token mean, 0 for an empty mask). Pass the mini-batch's total token count
            when micro-batching so that micro-batch losses sum to the mini-batch loss.

    Returns:
        Scalar tensor.
    """
    total = masked_sum(loss_mat, loss_mask)
    if normalizer is None:
        count = masked_sum(torch.ones_like(loss_mat), loss_mask)
        return total / torch.where(count > 0, count, torch.ones_like(count))
    if float(normalizer) <= 0:
        raise ValueError(f"normalizer must be > 0 (a token count); got {float(normalizer)}")
    return total / normalizer


def _stat(x: Tensor, mask: Tensor) -> float:
    """A masked mean as a Python float, for logging."""
    with torch.no_grad():
        return float(masked_mean(x.detach().float(), mask))


# --------------------------------------------------------------------------- logits


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """Log-probability of each label under ``softmax(logits)``, in float32.

    Computed as ``logit[label] - logsumexp(logits)`` in float32, one batch row at a
    time, so the peak extra memory is one row's ``[T, V]`` float32 copy instead of
    the whole ``[B, T, V]`` log-softmax (verl's ``logprobs_from_logits_v2`` does the
    same row loop). Differentiable.

    Args:
        logits: ``[B, T, V]`` (any float dtype; bf16 is upcast per row).
        labels: ``[B, T]`` integer token ids in ``[0, V)``.

    Returns:
        ``[B, T]`` float32 log-probabilities.
    """
    if logits.dim() < 2 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have logits' shape without the vocab dim; got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    labels = labels.long()
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1).float()
    if logits.dim() == 2:
        return picked - torch.logsumexp(logits.float(), dim=-1)
    lse = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
    return picked - lse


def entropy_from_logits(logits: Tensor, loss_mask: Tensor | None = None) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last dim, in float32.

    ``H = logsumexp(z) - sum(softmax(z) * z)`` (verl's formula), one batch row at a
    time to bound the float32 copy. A uniform distribution over ``V`` gives ``log V``.

    Args:
        logits: ``[B, T, V]`` (or any ``[..., V]``).
        loss_mask: optional ``[B, T]``: positions where it is 0 are selected away
            first (their entropy is that of all-zero logits, ``log V``, and no
            gradient reaches them), so NaN logits there cannot reach a gradient.

    Returns:
        ``[B, T]`` (``logits.shape[:-1]``) float32 entropies.
    """
    if loss_mask is not None:
        (logits,) = select_policy_tokens(loss_mask, logits)

    def _one(z: Tensor) -> Tensor:
        z = z.float()
        return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1)

    if logits.dim() <= 2:
        return _one(logits)
    return torch.stack([_one(row) for row in logits])


# --------------------------------------------------------------------------- policy loss


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    normalizer: float | Tensor | None = None,
    clip_ratio_c: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate policy loss.

    Per token, with ``ratio = exp(logprobs - old_logprobs)`` (log-ratio clamped to
    [-20, 20] as verl does)::

        loss_t = max(-A * ratio, -A * clip(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high))

    aggregated as the token-sum over mask-1 positions divided by ``normalizer``.

    Args:
        logprobs: ``[B, T]`` current-policy log-probs (carry the gradient).
        old_logprobs: ``[B, T]`` log-probs of the policy that sampled the tokens.
        advantages: ``[B, T]`` per-token advantages.
        loss_mask: ``[B, T]`` policy-token mask.
        clip_ratio_low / clip_ratio_high: the clip range ``[1 - low, 1 + high]``.
        normalizer: token count to divide the token-sum by; default
            ``loss_mask.sum()`` (a token mean). When micro-batching a mini-batch, pass
            the *mini-batch's* total mask-1 token count to every micro-batch: the
            micro-batch losses then add up to the full mini-batch token-mean loss.
        clip_ratio_c: optional dual-clip bound (> 1): for ``A < 0`` the loss is
            additionally capped at ``-A * clip_ratio_c``. None (default) is standard
            PPO-clip. verl's vanilla loss always applies dual-clip with 3.0; with
            on-policy data and a handful of PPO epochs it rarely triggers.

    Returns:
        ``(loss, stats)``: scalar loss; ``stats`` has ``clipfrac`` (fraction of
        mask-1 tokens where the clipped term was taken), ``approx_kl`` (masked mean of
        ``old_logprobs - logprobs``, verl's ``ppo_kl``) and, with dual clip,
        ``clipfrac_lower``. Stats are means over *this call's* tokens.
    """
    if not (logprobs.shape == old_logprobs.shape == advantages.shape == loss_mask.shape):
        raise ValueError(
            "logprobs, old_logprobs, advantages and loss_mask must share one [B, T] shape; got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(advantages.shape)}, "
            f"{tuple(loss_mask.shape)}"
        )
    if clip_ratio_low < 0 or clip_ratio_high < 0:
        raise ValueError(f"clip ratios must be >= 0; got low={clip_ratio_low}, high={clip_ratio_high}")
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c (dual clip) must be > 1; got {clip_ratio_c}")

    logprobs, old_logprobs, advantages = select_policy_tokens(loss_mask, logprobs, old_logprobs, advantages)
    log_ratio = torch.clamp(logprobs - old_logprobs, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    per_token = torch.maximum(unclipped, clipped)

    stats: dict[str, float] = {
        "clipfrac": _stat((clipped > unclipped).float(), loss_mask),
        "approx_kl": _stat(-log_ratio, loss_mask),
    }
    if clip_ratio_c is not None:
        cap = -advantages * clip_ratio_c
        negative = advantages < 0
        stats["clipfrac_lower"] = _stat(((per_token > cap) & negative).float(), loss_mask)
        per_token = torch.where(negative, torch.minimum(per_token, cap), per_token)

    loss = aggregate_token_loss(per_token, loss_mask, normalizer)
    return loss, stats


# --------------------------------------------------------------------------- KL


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "low_var_kl",
                loss_mask: Tensor | None = None) -> Tensor:
    """Per-token estimate of KL(policy || reference) from sampled-token log-probs.

    Kinds (Schulman, "Approximating KL divergence"), matching verl's ``kl_penalty``:

    * ``"kl"`` / ``"k1"``: ``logp - ref``.
    * ``"abs"``: ``|logp - ref|``.
    * ``"mse"`` / ``"k2"``: ``0.5 * (logp - ref)^2``.
    * ``"low_var_kl"`` / ``"k3"``: with ``d = clamp(ref - logp, -20, 20)``,
      ``exp(d) - d - 1`` clamped to ``[-10, 10]``. Non-negative, unbiased, low
      variance; ZeroSearch uses it as a loss term with coefficient 0.001.

    Args:
        logprobs: ``[B, T]`` current-policy log-probs.
        ref_logprobs: ``[B, T]`` reference-policy log-probs.
        kind: one of the names above.
        loss_mask: optional ``[B, T]``; where it is 0 both inputs are selected away
            first (the estimate there is 0 and no gradient reaches them). Pass it
            whenever the result feeds a loss.

    Returns:
        ``[B, T]`` per-token estimates (aggregate with :func:`aggregate_token_loss`
        or :func:`masked_mean`).
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs and ref_logprobs must have the same shape; got "
            f"{tuple(logprobs.shape)} and {tuple(ref_logprobs.shape)}"
        )
    if loss_mask is not None:
        logprobs, ref_logprobs = select_policy_tokens(loss_mask, logprobs, ref_logprobs)
    if kind in ("kl", "k1"):
        return logprobs - ref_logprobs
    if kind == "abs":
        return (logprobs - ref_logprobs).abs()
    if kind in ("mse", "k2"):
        return 0.5 * (logprobs - ref_logprobs).square()
    if kind in ("low_var_kl", "k3"):
        d = torch.clamp(ref_logprobs - logprobs, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        return torch.clamp(torch.exp(d) - d - 1.0, -_K3_CLAMP, _K3_CLAMP)
    raise ValueError(f"unknown KL estimator kind {kind!r}; choose one of {KL_KINDS}")


# --------------------------------------------------------------------------- value loss


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    loss_mask: Tensor,
    clip_range: float | None = 0.5,
    normalizer: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped critic loss, as verl's ``compute_value_loss``.

    Per token, with ``v_clip = clip(values, old_values - c, old_values + c)``::

        loss_t = 0.5 * max((values - returns)^2, (v_clip - returns)^2)

    (``clip_range=None``: ``0.5 * (values - returns)^2``), aggregated like
    :func:`ppo_clip_loss` (token-sum / ``normalizer``, default the mask-1 count).

    Args:
        values: ``[B, T]`` current critic predictions (carry the gradient).
        old_values: ``[B, T]`` predictions of the critic at rollout time.
        returns: ``[B, T]`` regression targets (e.g. GAE returns).
        loss_mask: ``[B, T]`` policy-token mask.
        clip_range: ``c`` above, or None for no clipping.
        normalizer: see :func:`ppo_clip_loss`.

    Returns:
        ``(loss, stats)``; ``stats`` has ``vf_clipfrac`` (fraction of mask-1 tokens
        where the clipped term was larger) and ``vpred_mean``.
    """
    if not (values.shape == old_values.shape == returns.shape == loss_mask.shape):
        raise ValueError(
            "values, old_values, returns and loss_mask must share one [B, T] shape; got "
            f"{tuple(values.shape)}, {tuple(old_values.shape)}, {tuple(returns.shape)}, "
            f"{tuple(loss_mask.shape)}"
        )
    values, old_values, returns = select_policy_tokens(loss_mask, values, old_values, returns)
    unclipped = (values - returns).square()
    if clip_range is None:
        per_token = unclipped
        clipfrac = 0.0
    else:
        if clip_range < 0:
            raise ValueError(f"clip_range must be >= 0 or None; got {clip_range}")
        v_clip = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        clipped = (v_clip - returns).square()
        per_token = torch.maximum(unclipped, clipped)
        clipfrac = _stat((clipped > unclipped).float(), loss_mask)
    loss = 0.5 * aggregate_token_loss(per_token, loss_mask, normalizer)
    return loss, {"vf_clipfrac": clipfrac, "vpred_mean": _stat(values, loss_mask)}
