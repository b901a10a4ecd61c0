"""Hand-worked tests for zerosearch.rl.losses."""

from __future__ import annotations

import math

import pytest
import torch

from zerosearch.rl.losses import (
    aggregate_token_loss,
    entropy_from_logits,
    kl_estimate,
    masked_mean,
    masked_sum,
    ppo_clip_loss,
    token_logprobs,
    value_loss,
)

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- masking


def test_masked_sum_and_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
    # sum of kept = 1 + 3 + 6 = 10; count 3; mean 10/3.
    assert masked_sum(x, mask).item() == pytest.approx(10.0)
    assert masked_mean(x, mask).item() == pytest.approx(10.0 / 3)
    # Per row: row 0 -> (1+3)/2 = 2; row 1 -> 6/1 = 6.
    assert torch.allclose(masked_mean(x, mask, dim=1), torch.tensor([2.0, 6.0]))
    assert torch.allclose(masked_sum(x, mask, dim=0), torch.tensor([1.0, 0.0, 9.0]))
    # Bool masks work the same.
    assert masked_mean(x, mask.bool()).item() == pytest.approx(10.0 / 3)


def test_masked_mean_empty_mask_is_zero_not_nan() -> None:
    x = torch.tensor([[1.0, float("nan")], [2.0, float("inf")]], requires_grad=True)
    mask = torch.zeros(2, 2)
    out = masked_mean(x, mask)
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(x.grad, torch.zeros(2, 2))
    # Row-wise with one empty row: [mean of row 0 = 1, empty -> 0].
    mask2 = torch.tensor([[1, 0], [0, 0]])
    assert torch.equal(masked_mean(x.detach(), mask2, dim=1), torch.tensor([1.0, 0.0]))


def test_masked_ops_ignore_nan_at_mask0() -> None:
    x = torch.tensor([[1.0, float("nan"), 3.0]])
    mask = torch.tensor([[1, 0, 1]])
    assert masked_sum(x, mask).item() == 4.0
    assert masked_mean(x, mask).item() == 2.0


# --------------------------------------------------------------------------- logits


def test_token_logprobs_matches_manual_log_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    out = token_logprobs(logits, labels)
    manual = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.allclose(out, manual, atol=1e-6)
    # Hand-worked: logits [0, ln 3] -> p = [1/4, 3/4]; label 1 -> ln(3/4) = -0.2876821.
    two = torch.tensor([[[0.0, math.log(3.0)]]])
    assert token_logprobs(two, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75), abs=1e-6)


def test_token_logprobs_bf16_upcasts_and_is_differentiable() -> None:
    gen = torch.Generator().manual_seed(1)
    logits32 = torch.randn(2, 4, 7, generator=gen)
    labels = torch.randint(0, 7, (2, 4), generator=gen)
    logits16 = logits32.to(torch.bfloat16)
    out = token_logprobs(logits16, labels)
    assert out.dtype == torch.float32
    ref = torch.log_softmax(logits16.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(out, ref, atol=1e-5)
    leaf = logits32.clone().requires_grad_(True)
    token_logprobs(leaf, labels).sum().backward()
    # d/dz log softmax(z)_y = onehot(y) - softmax(z)
    expected = torch.nn.functional.one_hot(labels, 7).float() - torch.softmax(logits32, -1)
    assert torch.allclose(leaf.grad, expected, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        token_logprobs(logits32, labels[:, :3])


def test_entropy_uniform_is_log_v_and_one_hot_is_zero() -> None:
    V = 13
    uniform = torch.zeros(2, 3, V)
    assert torch.allclose(entropy_from_logits(uniform), torch.full((2, 3), math.log(V)), atol=1e-6)
    # Near one-hot: entropy ~ 0. Two-way [0, ln 3] -> p = [1/4, 3/4]:
    #   H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.3465736 + 0.2157616 = 0.5623351.
    peaked = torch.tensor([[[100.0, 0.0, 0.0]]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    two = torch.tensor([[[0.0, math.log(3.0)]]])
    assert entropy_from_logits(two).item() == pytest.approx(0.5623351, abs=1e-6)


# --------------------------------------------------------------------------- PPO clip

# 1x3 example: old probs 0.5 each; new/old ratios [1.5, 1.1, 0.5]; clip 0.2 -> [0.8, 1.2].
OLD = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
RATIOS = torch.tensor([[1.5, 1.1, 0.5]])
NEW = OLD + torch.log(RATIOS)
MASK = torch.ones(1, 3)


def test_ppo_clip_positive_advantage_hand_worked() -> None:
    logp = NEW.clone().requires_grad_(True)
    adv = torch.ones(1, 3)
    loss, stats = ppo_clip_loss(logp, OLD, adv, MASK)
    # A = +1: unclipped -ratio = [-1.5, -1.1, -0.5]; clipped -clip(ratio) = [-1.2, -1.1, -0.8];
    # max = [-1.2, -1.1, -0.5] (token 0 clipped: ratio above 1.2 earns no more);
    # loss = (-1.2 - 1.1 - 0.5)/3 = -0.9333333; clipfrac = 1/3 (token 0 only; token 1 ties).
    assert loss.item() == pytest.approx(-2.8 / 3, abs=1e-6)
    assert stats["clipfrac"] == pytest.approx(1 / 3)
    # approx_kl = mean(old - new) = -(ln 1.5 + ln 1.1 + ln 0.5)/3
    #           = -(0.4054651 + 0.0953102 - 0.6931472)/3 = 0.0641240.
    assert stats["approx_kl"] == pytest.approx(0.0641240, abs=1e-6)
    loss.backward()
    # Gradient wrt logp_t of -A*ratio_t/3 is -A*ratio_t/3; clipped token has 0 gradient.
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -1.1 / 3, -0.5 / 3]]), atol=1e-6)


def test_ppo_clip_negative_advantage_hand_worked() -> None:
    adv = -torch.ones(1, 3)
    loss, stats = ppo_clip_loss(NEW, OLD, adv, MASK)
    # A = -1: unclipped ratio = [1.5, 1.1, 0.5]; clipped = [1.2, 1.1, 0.8];
    # max = [1.5, 1.1, 0.8] (token 2 clipped: ratio below 0.8 earns no more);
    # loss = (1.5 + 1.1 + 0.8)/3 = 1.1333333; clipfrac = 1/3.
    assert loss.item() == pytest.approx(3.4 / 3, abs=1e-6)
    assert stats["clipfrac"] == pytest.approx(1 / 3)


def test_ppo_clip_asymmetric_and_dual_clip() -> None:
    # clip_ratio_high = 0.28 (DAPO-style clip-higher): A = +1 -> max(-1.5, -1.28) = -1.28 on token 0.
    loss, _ = ppo_clip_loss(NEW, OLD, torch.ones(1, 3), MASK, clip_ratio_high=0.28)
    assert loss.item() == pytest.approx((-1.28 - 1.1 - 0.5) / 3, abs=1e-6)
    # Dual clip, A = -1, ratio 5: standard loss max(5, 1.2) = 5, capped at -A*c = 3.
    old = torch.zeros(1, 1)
    new = torch.log(torch.tensor([[5.0]]))
    loss, stats = ppo_clip_loss(new, old, -torch.ones(1, 1), torch.ones(1, 1), clip_ratio_c=3.0)
    assert loss.item() == pytest.approx(3.0, abs=1e-6)
    assert stats["clipfrac_lower"] == 1.0
    loss_std, _ = ppo_clip_loss(new, old, -torch.ones(1, 1), torch.ones(1, 1))
    assert loss_std.item() == pytest.approx(5.0, abs=1e-5)
    with pytest.raises(ValueError, match="clip_ratio_c"):
        ppo_clip_loss(new, old, -torch.ones(1, 1), torch.ones(1, 1), clip_ratio_c=0.5)


def test_ppo_clip_masks_tokens() -> None:
    # Mask token 0 out (and poison it): loss = mean over tokens 1, 2 = (-1.1 - 0.5)/2 = -0.8.
    new = NEW.clone()
    new[0, 0] = float("nan")
    mask = torch.tensor([[0, 1, 1]])
    loss, stats = ppo_clip_loss(new, OLD, torch.ones(1, 3), mask)
    assert loss.item() == pytest.approx(-0.8, abs=1e-6)
    assert stats["clipfrac"] == 0.0
    # Empty mask: loss 0 (not NaN).
    loss, _ = ppo_clip_loss(NEW, OLD, torch.ones(1, 3), torch.zeros(1, 3))
    assert loss.item() == 0.0


def test_ppo_normalizer_micro_batches_sum_to_full_batch() -> None:
    gen = torch.Generator().manual_seed(3)
    B, T = 4, 7
    old = -torch.rand(B, T, generator=gen) * 3
    new = old + 0.4 * torch.randn(B, T, generator=gen)
    adv = torch.randn(B, T, generator=gen)
    mask = (torch.rand(B, T, generator=gen) > 0.3).float()
    mask[0, :] = 1.0  # rows have different token counts
    full, _ = ppo_clip_loss(new, old, adv, mask)
    total_tokens = float(mask.sum())
    parts = [
        ppo_clip_loss(new[s], old[s], adv[s], mask[s], normalizer=total_tokens)[0]
        for s in (slice(0, 1), slice(1, 4))
    ]
    assert (parts[0] + parts[1]).item() == pytest.approx(full.item(), abs=1e-6)
    # Without the shared normalizer the micro-batch token-means would NOT add up.
    naive = sum(ppo_clip_loss(new[s], old[s], adv[s], mask[s])[0] for s in (slice(0, 1), slice(1, 4)))
    assert naive.item() != pytest.approx(full.item(), abs=1e-6)
    with pytest.raises(ValueError, match="normalizer"):
        ppo_clip_loss(new, old, adv, mask, normalizer=0)


def test_aggregate_token_loss() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # token-sum = 6; default normalizer 3 -> 2; normalizer 12 -> 0.5.
    assert aggregate_token_loss(x, mask).item() == pytest.approx(2.0)
    assert aggregate_token_loss(x, mask, normalizer=12).item() == pytest.approx(0.5)


# --------------------------------------------------------------------------- KL


def test_kl_estimators_hand_worked() -> None:
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    # k1 = ln 0.5 - ln 0.25 = ln 2 = 0.6931472
    assert kl_estimate(logp, ref, "kl").item() == pytest.approx(LN2, abs=1e-6)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(LN2, abs=1e-6)
    # abs of the reversed pair: |ln 0.25 - ln 0.5| = ln 2
    assert kl_estimate(ref, logp, "abs").item() == pytest.approx(LN2, abs=1e-6)
    # k2 = 0.5 * (ln 2)^2 = 0.2402265
    assert kl_estimate(logp, ref, "mse").item() == pytest.approx(0.5 * LN2**2, abs=1e-6)
    # k3: d = ref - logp = ln 0.5 = -0.6931472; exp(d) - d - 1 = 0.5 + 0.6931472 - 1 = 0.1931472
    assert kl_estimate(logp, ref, "low_var_kl").item() == pytest.approx(0.1931472, abs=1e-6)
    # reversed: d = ln 2; exp(d) - d - 1 = 2 - 0.6931472 - 1 = 0.3068528
    assert kl_estimate(ref, logp, "k3").item() == pytest.approx(0.3068528, abs=1e-6)
    # identical policies: every estimator is 0
    for kind in ("kl", "abs", "mse", "low_var_kl"):
        assert kl_estimate(logp, logp, kind).item() == 0.0
    with pytest.raises(ValueError, match="unknown KL"):
        kl_estimate(logp, ref, "full")


def test_k3_is_nonnegative_and_clamped() -> None:
    gen = torch.Generator().manual_seed(4)
    logp = -torch.rand(50, 20, generator=gen) * 10
    ref = -torch.rand(50, 20, generator=gen) * 10
    k3 = kl_estimate(logp, ref, "low_var_kl")
    assert torch.all(k3 >= 0) and torch.all(k3 <= 10)
    # Extreme gaps: d = ref - logp = -30 -> clamp -20 -> e^-20 + 20 - 1 = 19.0 -> clamp 10;
    # d = +30 -> clamp 20 -> e^20 - 21 (huge) -> clamp 10.
    extreme = kl_estimate(torch.tensor([[0.0, -30.0]]), torch.tensor([[-30.0, 0.0]]), "k3")
    assert torch.equal(extreme, torch.tensor([[10.0, 10.0]]))
    # Small gap: d = -1 -> e^-1 + 1 - 1 = 0.3678794 (below the clamp).
    assert kl_estimate(torch.tensor([[0.0]]), torch.tensor([[-1.0]]), "k3").item() == pytest.approx(
        math.exp(-1), abs=1e-6
    )


# --------------------------------------------------------------------------- value loss


def test_value_loss_clip_hand_worked() -> None:
    values = torch.tensor([[1.0, 2.0, 2.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 0.5]])
    returns = torch.tensor([[0.0, 3.0, 1.2]])
    mask = torch.ones(1, 3)
    loss, stats = value_loss(values, old, returns, mask, clip_range=0.5)
    # clip to [old - 0.5, old + 0.5] = [0, 1] -> v_clip = [1.0, 1.0, 1.0]
    # token 0: (1-0)^2 = 1, (1-0)^2 = 1 -> 1 (not counted as clipped: equal)
    # token 1: (2-3)^2 = 1, (1-3)^2 = 4 -> 4 (clipped term larger)
    # token 2: (2-1.2)^2 = 0.64, (1-1.2)^2 = 0.04 -> 0.64 (max keeps the unclipped)
    # loss = 0.5 * (1 + 4 + 0.64)/3 = 0.94
    assert loss.item() == pytest.approx(0.94, abs=1e-6)
    assert stats["vf_clipfrac"] == pytest.approx(1 / 3)
    assert stats["vpred_mean"] == pytest.approx(5 / 3)
    loss.backward()
    # d/dv: token 0: 0.5*2*(1-0)/3 = 1/3; token 1: clipped branch, v_clip saturated -> 0;
    #       token 2: 0.5*2*(2-1.2)/3 = 0.2666667.
    assert torch.allclose(values.grad, torch.tensor([[1 / 3, 0.0, 0.8 / 3]]), atol=1e-6)


def test_value_loss_unclipped_mask_and_normalizer() -> None:
    values = torch.tensor([[1.0, 2.0, 2.0]])
    old = torch.tensor([[0.5, 0.5, 0.5]])
    returns = torch.tensor([[0.0, 3.0, 1.2]])
    mask = torch.tensor([[1, 1, 0]])
    # No clipping, token 2 masked: 0.5 * (1 + 1)/2 = 0.5; with normalizer 4: 0.5 * 2/4 = 0.25.
    loss, stats = value_loss(values, old, returns, mask, clip_range=None)
    assert loss.item() == pytest.approx(0.5)
    assert stats["vf_clipfrac"] == 0.0
    loss, _ = value_loss(values, old, returns, mask, clip_range=None, normalizer=4)
    assert loss.item() == pytest.approx(0.25)


# Issue 14.6: nothing at a mask-0 position can change any loss or gradient, NaN and inf included.
_B, _T, _V = 2, 5, 7
_MASK = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 1, 1, 0]])


def _poisoned(x: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` with ``value`` at every mask-0 position (extra trailing dims poisoned whole)."""
    keep = _MASK.bool().reshape(_MASK.shape + (1,) * (x.dim() - 2))
    return torch.where(keep, x, torch.full_like(x, value))


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "logp": -torch.rand(_B, _T, generator=gen) * 3, "old": -torch.rand(_B, _T, generator=gen) * 3,
        "ref": -torch.rand(_B, _T, generator=gen) * 3, "adv": torch.randn(_B, _T, generator=gen),
        "values": torch.randn(_B, _T, generator=gen), "old_values": torch.randn(_B, _T, generator=gen),
        "returns": torch.randn(_B, _T, generator=gen), "logits": torch.randn(_B, _T, _V, generator=gen),
    }


_LOSSES = {
    "ppo_clip": lambda x: ppo_clip_loss(x["logp"], x["old"], x["adv"], _MASK)[0],
    "ppo_dual_clip": lambda x: ppo_clip_loss(x["logp"], x["old"], x["adv"], _MASK, clip_ratio_c=3.0)[0],
    **{f"kl_{kind}": (lambda kind: lambda x: aggregate_token_loss(
        kl_estimate(x["logp"], x["ref"], kind, loss_mask=_MASK), _MASK))(kind)
       for kind in ("kl", "abs", "mse", "low_var_kl")},
    "value": lambda x: value_loss(x["values"], x["old_values"], x["returns"], _MASK)[0],
    "value_unclipped": lambda x: value_loss(x["values"], x["old_values"], x["returns"], _MASK, clip_range=None)[0],
    "entropy": lambda x: aggregate_token_loss(entropy_from_logits(x["logits"], loss_mask=_MASK), _MASK),
}


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf"), 1e30])
@pytest.mark.parametrize("name", sorted(_LOSSES))
def test_nothing_at_a_masked_position_reaches_a_loss_or_a_gradient(name, poison):
    def loss_and_grads(poisoned: bool):
        x = {k: (_poisoned(v, poison) if poisoned else v).clone().requires_grad_(True) for k, v in _inputs().items()}
        loss = _LOSSES[name](x)
        loss.backward()
        return loss.detach(), {k: v.grad for k, v in x.items() if v.grad is not None}

    clean_loss, clean = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    assert grads, "the loss must depend on something"
    assert torch.equal(loss, clean_loss)
    for k, g in grads.items():
        assert torch.isfinite(g).all(), k
        assert torch.equal(g, clean[k]), k
        keep = _MASK.bool().reshape(_MASK.shape + (1,) * (g.dim() - 2)).expand_as(g)
        assert (g[~keep] == 0).all(), k  # and exactly 0 where the mask is 0
