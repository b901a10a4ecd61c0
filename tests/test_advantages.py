"""Hand-worked tests for zerosearch.rl.advantages (REINFORCE, GRPO, RLOO, GAE, whiten)."""

from __future__ import annotations

import math
import time

import pytest
import torch

from zerosearch.rl.advantages import (
    gae_advantages,
    grpo_advantages,
    informative_groups,
    reinforce_advantages,
    rloo_advantages,
    whiten,
)

# Three rows: policy tokens, then an observation block, then padding (all mask 0 except policy).
MASK3 = torch.tensor(
    [
        [1, 1, 0, 0, 1, 0],  # policy, policy, <information>, <information>, policy, pad
        [1, 0, 0, 0, 0, 0],  # one policy token, then padding
        [0, 1, 1, 1, 1, 1],  # (an observation first, to exercise any position)
    ]
)


# --------------------------------------------------------------------------- REINFORCE


def test_reinforce_broadcasts_reward_over_policy_tokens_only() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.5])
    adv = reinforce_advantages(rewards, MASK3)
    # Each row's reward on its mask-1 positions, 0 on mask-0 positions.
    expected = torch.tensor(
        [
            [1.0, 1.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.5, 0.5, 0.5, 0.5, 0.5],
        ]
    )
    assert adv.shape == (3, 6)
    assert torch.equal(adv, expected)


def test_reinforce_mean_baseline() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.5])
    adv = reinforce_advantages(rewards, MASK3, baseline="mean")
    # batch mean = (1 + 0 + 0.5) / 3 = 0.5 -> centred rewards [0.5, -0.5, 0.0]
    expected = torch.tensor(
        [
            [0.5, 0.5, 0.0, 0.0, 0.5, 0.0],
            [-0.5, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert torch.allclose(adv, expected)
    assert torch.all(adv[MASK3 == 0] == 0)


def test_reinforce_integer_rewards_give_float_and_bad_inputs_raise() -> None:
    adv = reinforce_advantages(torch.tensor([1, 0, 1]), MASK3)
    assert adv.dtype == torch.float32
    with pytest.raises(ValueError, match="baseline"):
        reinforce_advantages(torch.tensor([1.0, 0.0, 1.0]), MASK3, baseline="median")
    with pytest.raises(ValueError, match="rewards must be"):
        reinforce_advantages(torch.tensor([1.0, 0.0]), MASK3)
    with pytest.raises(ValueError, match="loss_mask"):
        reinforce_advantages(torch.tensor([1.0]), torch.ones(4))


# --------------------------------------------------------------------------- GRPO


def test_grpo_two_groups_hand_worked() -> None:
    # Group 7 gets rewards [1, 0, 0, 1, 0] (in batch order), group 3 gets [0.5, 1.0, 0.0].
    group_ids = torch.tensor([7, 7, 3, 7, 3, 7, 3, 7])
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0])
    mask = torch.ones(8, 4, dtype=torch.long)
    mask[:, 3] = 0  # a padding column
    adv = grpo_advantages(rewards, group_ids, mask)

    # Group 7: mean = 2/5 = 0.4; deviations [0.6, -0.4, -0.4, 0.6, -0.4];
    #   sum of squares = 2*0.36 + 3*0.16 = 1.2; unbiased var = 1.2/4 = 0.3;
    #   std = sqrt(0.3) = 0.5477226; advantages 0.6/0.5477226 = 1.0954451 and
    #   -0.4/0.5477226 = -0.7302967 (eps = 1e-6 changes the 6th digit at most).
    # Group 3: mean = 0.5; deviations [0, 0.5, -0.5]; sum sq = 0.5; var = 0.25; std = 0.5;
    #   advantages [0, 1, -1].
    s7 = math.sqrt(0.3)
    per_row = torch.tensor(
        [0.6 / s7, -0.4 / s7, 0.0, -0.4 / s7, 1.0, 0.6 / s7, -1.0, -0.4 / s7]
    )
    assert torch.allclose(adv[:, :3], per_row.unsqueeze(-1).expand(8, 3), atol=1e-5)
    assert torch.all(adv[:, 3] == 0)
    assert adv[0, 0].item() == pytest.approx(1.0954451, abs=1e-5)
    assert adv[1, 0].item() == pytest.approx(-0.7302967, abs=1e-5)


def test_grpo_matches_torch_std_loop() -> None:
    # The vectorised per-group statistics equal a plain loop with torch.mean / torch.std.
    gen = torch.Generator().manual_seed(0)
    group_ids = torch.randint(0, 6, (40,), generator=gen)
    rewards = torch.rand(40, generator=gen)
    mask = torch.ones(40, 2)
    adv = grpo_advantages(rewards, group_ids, mask)[:, 0]
    for g in group_ids.unique():
        sel = group_ids == g
        r = rewards[sel]
        if r.numel() == 1:
            expected = r / (1.0 + 1e-6)
        else:
            expected = (r - r.mean()) / (r.std() + 1e-6)
        assert torch.allclose(adv[sel], expected, atol=1e-5)


def test_grpo_singleton_group_follows_verl_or_zero() -> None:
    group_ids = torch.tensor([0, 0, 1])
    rewards = torch.tensor([1.0, 0.0, 0.7])
    mask = torch.ones(3, 2)
    # Group 0: mean 0.5, unbiased std sqrt(0.5) = 0.70710678 -> +-0.5/0.70710678 = +-0.70710678.
    # Group 1 has one member: verl sets mean 0, std 1 -> 0.7 / (1 + 1e-6) (NOT 0).
    adv = grpo_advantages(rewards, group_ids, mask)
    assert adv[0, 0].item() == pytest.approx(0.70710678, abs=1e-5)
    assert adv[1, 0].item() == pytest.approx(-0.70710678, abs=1e-5)
    assert adv[2, 0].item() == pytest.approx(0.7 / (1 + 1e-6), abs=1e-7)
    # singleton="zero": no in-group comparison, no signal.
    adv0 = grpo_advantages(rewards, group_ids, mask, singleton="zero")
    assert torch.equal(adv0[2], torch.zeros(2))
    assert torch.allclose(adv0[:2], adv[:2])


def test_grpo_equal_rewards_and_no_std_scaling() -> None:
    mask = torch.ones(4, 1)
    # All-equal group: (r - mean) = 0 -> 0 / (0 + eps) = 0.
    rewards, ids = torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([0, 0, 0, 1])
    adv = grpo_advantages(rewards, ids, mask, singleton="zero")
    assert torch.equal(adv[:, 0], torch.zeros(4))
    # Dr. GRPO: r - mean only. Group [1, 0, 0, 1] -> mean 0.5 -> [0.5, -0.5, -0.5, 0.5].
    rewards, ids = torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.zeros(4, dtype=torch.long)
    adv = grpo_advantages(rewards, ids, mask, scale_by_std=False)
    assert torch.allclose(adv[:, 0], torch.tensor([0.5, -0.5, -0.5, 0.5]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("size", [2, 3, 5, 7, 8, 16, 64, 320])
@pytest.mark.parametrize("value", [2 / 3, 1 / 3, 0.1, 0.7, 1.0, 1e-7, 123.456])
def test_grpo_equal_group_is_exactly_zero(dtype, size, value) -> None:
    """Issue 14.1: eight float32 copies of 2/3 averaged to 2/3 + 6e-8, the std was of the same size, and
    every member got +0.056. Equal rewards carry no comparison: exactly 0, beside a group that does."""
    rewards = torch.cat([torch.full((size,), value, dtype=dtype), torch.tensor([1.0, 0.0], dtype=dtype)])
    ids = torch.tensor([0] * size + [1, 1])
    for scale in (True, False):
        adv = grpo_advantages(rewards, ids, torch.ones(size + 2, 3), scale_by_std=scale)
        assert torch.equal(adv[:size], torch.zeros(size, 3, dtype=adv.dtype))
        assert adv[size, 0] > 0 > adv[size + 1, 0]


def test_float32_mean_of_equal_values_leaves_a_residue() -> None:
    """Why the rule is needed: the arithmetic alone does not give 0 (if torch ever changes, the test above
    still holds; this one documents the fault)."""
    r = torch.full((8,), 2 / 3, dtype=torch.float32)
    assert (r - r.mean()).abs().max() > 0


@pytest.mark.parametrize("value", [2 / 3, 0.1, 1.0])
def test_equal_values_whiten_and_center_to_exactly_zero(value) -> None:
    x, mask = torch.full((4, 6), value), torch.ones(4, 6)
    mask[:, -2:] = 0
    assert torch.equal(whiten(x, mask), torch.zeros(4, 6))
    assert torch.equal(whiten(x, mask, shift_mean=False)[:, :4], x[:, :4])  # scale only: unchanged
    r = torch.full((8,), value)
    assert torch.equal(reinforce_advantages(r, torch.ones(8, 2), baseline="mean"), torch.zeros(8, 2))


def test_grpo_bad_inputs_raise() -> None:
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="integer"):
        grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), mask)
    with pytest.raises(ValueError, match="group_ids"):
        grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0, 1]), mask)
    with pytest.raises(ValueError, match="singleton"):
        grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), mask, singleton="nan")


# --------------------------------------------------------------------------- RLOO


def test_rloo_two_groups_hand_worked() -> None:
    # The batch of the GRPO test: group 7 gets rewards [1, 0, 0, 1, 0] (n = 5, sum 2), group 3 gets
    # [0.5, 1.0, 0.0] (n = 3, sum 1.5). A_i = r_i - (sum - r_i) / (n - 1):
    #   group 7, r = 1: 1 - (2 - 1) / 4 = 0.75;   r = 0: 0 - (2 - 0) / 4 = -0.5
    #     (check: 5/4 * (r - mean 0.4) = 5/4 * 0.6 = 0.75 and 5/4 * -0.4 = -0.5; sum 2*0.75 - 3*0.5 = 0)
    #   group 3, r = 0.5: 0.5 - 1.0 / 2 = 0.0;   r = 1.0: 1.0 - 0.5 / 2 = 0.75;   r = 0.0: 0 - 1.5 / 2 = -0.75
    group_ids = torch.tensor([7, 7, 3, 7, 3, 7, 3, 7])
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0])
    mask = torch.ones(8, 4, dtype=torch.long)
    mask[:, 3] = 0  # a padding column
    adv = rloo_advantages(rewards, group_ids, mask)
    per_row = torch.tensor([0.75, -0.5, 0.0, -0.5, 0.75, 0.75, -0.75, -0.5])
    assert torch.allclose(adv[:, :3], per_row.unsqueeze(-1).expand(8, 3), atol=1e-6)
    assert torch.all(adv[:, 3] == 0)


def test_rloo_broadcasts_over_policy_tokens_only() -> None:
    # MASK3's three rows as one group, rewards [1, 0, 0.5] (sum 1.5, n = 3):
    #   row 0: 1 - 0.5 / 2 = 0.75;  row 1: 0 - 1.5 / 2 = -0.75;  row 2: 0.5 - 1.0 / 2 = 0.0
    adv = rloo_advantages(torch.tensor([1.0, 0.0, 0.5]), torch.zeros(3, dtype=torch.long), MASK3)
    expected = torch.tensor(
        [
            [0.75, 0.75, 0.0, 0.0, 0.75, 0.0],
            [-0.75, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert torch.equal(adv, expected)
    assert adv.dtype == torch.float32
    # integer rewards compute in float32: group [1, 0] -> 1 - 0 = 1 and 0 - 1 = -1
    ints = rloo_advantages(torch.tensor([1, 0]), torch.tensor([0, 0]), torch.ones(2, 1))
    assert ints.dtype == torch.float32 and ints[:, 0].tolist() == [1.0, -1.0]


def test_rloo_is_dr_grpo_scaled_by_n_over_n_minus_1_and_sums_to_zero() -> None:
    gen = torch.Generator().manual_seed(3)
    group_ids = torch.randint(0, 5, (30,), generator=gen)
    rewards = torch.rand(30, generator=gen, dtype=torch.float64)
    mask = torch.ones(30, 1)
    adv = rloo_advantages(rewards, group_ids, mask)[:, 0]
    dr = grpo_advantages(rewards, group_ids, mask, scale_by_std=False, singleton="zero")[:, 0]
    for g in group_ids.unique():
        sel = group_ids == g
        n = int(sel.sum())
        if n == 1:
            assert adv[sel].item() == 0.0
            continue
        others = torch.stack([(rewards[sel].sum() - r) / (n - 1) for r in rewards[sel]])
        assert torch.allclose(adv[sel], rewards[sel] - others, atol=1e-12)  # the definition, row by row
        assert torch.allclose(adv[sel], dr[sel] * n / (n - 1), atol=1e-12)
        assert abs(adv[sel].sum().item()) < 1e-12


def test_rloo_singleton_and_equal_groups_are_exactly_zero() -> None:
    # Group 0: one member (its others failed): no leave-one-out baseline -> 0, not its reward 0.7.
    # Group 1: [1, 1, 1]: no comparison -> 0. Group 2: [1, 0] -> 1 - 0 = 1 and 0 - 1 = -1.
    rewards = torch.tensor([0.7, 1.0, 1.0, 1.0, 1.0, 0.0])
    ids = torch.tensor([0, 1, 1, 1, 2, 2])
    adv = rloo_advantages(rewards, ids, torch.ones(6, 2))
    assert torch.equal(adv[:, 0], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, -1.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("size", [2, 3, 5, 8, 64, 320])
@pytest.mark.parametrize("value", [2 / 3, 1 / 3, 0.1, 0.7, 1.0, 1e-7, 123.456])
def test_rloo_equal_group_is_exactly_zero(dtype, size, value) -> None:
    """As for GRPO (issue 14.1): a float sum of equal values can leave a residue; equal rewards carry no
    comparison, so exactly 0, beside a group that does."""
    rewards = torch.cat([torch.full((size,), value, dtype=dtype), torch.tensor([1.0, 0.0], dtype=dtype)])
    ids = torch.tensor([0] * size + [1, 1])
    adv = rloo_advantages(rewards, ids, torch.ones(size + 2, 3))
    assert torch.equal(adv[:size], torch.zeros(size, 3, dtype=adv.dtype))
    assert adv[size, 0] == 1 and adv[size + 1, 0] == -1


def test_rloo_bad_inputs_raise() -> None:
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="integer"):
        rloo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), mask)
    with pytest.raises(ValueError, match="group_ids"):
        rloo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0, 1]), mask)
    with pytest.raises(ValueError, match="rewards must be"):
        rloo_advantages(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 1]), mask)


def test_informative_groups_have_two_members_and_two_rewards() -> None:
    # group 4: [1, 0] mixed -> informative; group 5: [0.5, 0.5] equal -> not; group 6: one member -> not
    # (no comparison however its reward); group 9: [0, 0, 1e-9] -> informative (compared exactly).
    rewards = [1.0, 0.5, 0.0, 0.5, 0.3, 0.0, 0.0, 1e-9]
    ids = [4, 5, 4, 5, 6, 9, 9, 9]
    assert informative_groups(rewards, ids) == {4, 9}
    assert informative_groups([], []) == set()
    # exactly the groups a group baseline gives nonzero advantages
    adv = rloo_advantages(torch.tensor(rewards, dtype=torch.float64), torch.tensor(ids), torch.ones(8, 1))[:, 0]
    assert {g for g, a in zip(ids, adv.tolist()) if a != 0} == {4, 9}
    with pytest.raises(ValueError, match="same length"):
        informative_groups([1.0], [0, 0])


# --------------------------------------------------------------------------- GAE


def test_gae_skips_observation_tokens_hand_worked() -> None:
    # Row 0: mask [1, 1, 0, 0, 1, 1]; positions 2-3 are an <information> block.
    # Policy positions 0, 1, 4, 5 with values 0.5, 0.4, 0.3, 0.2; reward 1 on position 5.
    # gamma = 0.9, lam = 0.8, gamma*lam = 0.72. Going backwards over policy tokens only:
    #   t=5: delta = 1 + 0.9*0   - 0.2 =  0.8;   A5 = 0.8
    #   t=4: delta = 0 + 0.9*0.2 - 0.3 = -0.12;  A4 = -0.12 + 0.72*0.8     =  0.456
    #   t=1: delta = 0 + 0.9*0.3 - 0.4 = -0.13;  A1 = -0.13 + 0.72*0.456   =  0.19832
    #        (the "next" value of t=1 is V(4), skipping the observation tokens)
    #   t=0: delta = 0 + 0.9*0.4 - 0.5 = -0.14;  A0 = -0.14 + 0.72*0.19832 =  0.0027904
    # Returns R = A + V: 0.5027904, 0.59832, -, -, 0.756, 1.0.
    # Row 1: right padded: mask [1, 1, 0, 0, 0, 0], values 0.1, 0.6, reward 2 on position 1:
    #   t=1: A1 = 2 - 0.6 = 1.4; t=0: delta = 0.9*0.6 - 0.1 = 0.44, A0 = 0.44 + 0.72*1.4 = 1.448.
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0]])
    values = torch.tensor([[0.5, 0.4, 9.0, 9.0, 0.3, 0.2], [0.1, 0.6, 7.0, 7.0, 7.0, 7.0]])
    rewards = torch.zeros(2, 6)
    rewards[0, 5] = 1.0
    rewards[1, 1] = 2.0
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
    expected_adv = torch.tensor(
        [[0.0027904, 0.19832, 0.0, 0.0, 0.456, 0.8], [1.448, 1.4, 0.0, 0.0, 0.0, 0.0]]
    )
    expected_ret = torch.tensor(
        [[0.5027904, 0.59832, 0.0, 0.0, 0.756, 1.0], [1.548, 2.0, 0.0, 0.0, 0.0, 0.0]]
    )
    assert torch.allclose(adv, expected_adv, atol=1e-6)
    assert torch.allclose(ret, expected_ret, atol=1e-6)


def test_gae_ignores_values_at_mask0_and_rejects_rewards_there() -> None:
    mask = torch.tensor([[1, 1, 0, 0, 1, 1]])
    values = torch.tensor([[0.5, 0.4, 9.0, 9.0, 0.3, 0.2]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
    # Values at the observation tokens may be anything, even NaN / inf: same result.
    for junk in (0.0, -3.0, float("nan"), float("inf")):
        v2 = values.clone()
        v2[0, 2:4] = junk
        adv2, ret2 = gae_advantages(rewards, v2, mask, gamma=0.9, lam=0.8)
        assert torch.equal(adv2, adv) and torch.equal(ret2, ret)
    # A reward on an environment token has no decision to credit: documented error.
    r2 = rewards.clone()
    r2[0, 3] = 0.5
    with pytest.raises(ValueError, match="loss_mask == 0"):
        gae_advantages(r2, values, mask, gamma=0.9, lam=0.8)


def test_gae_gamma_lam_one_terminal_reward() -> None:
    # gamma = lam = 1, one terminal reward R: A_t = R - V(t), return R on every policy token.
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [1, 1, 1, 0, 1, 0]])
    values = torch.tensor([[0.2, 5.0, -0.1, 0.7, 5.0, 5.0], [0.3, 0.3, 0.9, 5.0, 0.0, 5.0]])
    rewards = torch.zeros(2, 6)
    rewards[0, 3] = 1.0  # last policy token of row 0
    rewards[1, 4] = -0.5  # last policy token of row 1
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    R = torch.tensor([[1.0], [-0.5]])
    m = mask.bool()
    assert torch.allclose(adv[m], (R - values).expand(2, 6)[m], atol=1e-6)
    assert torch.allclose(ret[m], R.expand(2, 6)[m], atol=1e-6)
    assert torch.all(adv[~m] == 0) and torch.all(ret[~m] == 0)


def _verl_gae_reference(rewards, values, mask, gamma, lam):
    """verl's compute_gae_advantage_return loop (observation-skipping version), no whitening."""
    nextvalues = torch.zeros(rewards.shape[0])
    lastgaelam = torch.zeros(rewards.shape[0])
    out = []
    m = mask.float()
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam_ = delta + gamma * lam * lastgaelam
        nextvalues = values[:, t] * m[:, t] + (1 - m[:, t]) * nextvalues
        lastgaelam = lastgaelam_ * m[:, t] + (1 - m[:, t]) * lastgaelam
        out.append(lastgaelam)
    adv = torch.stack(out[::-1], dim=1)
    return adv, adv + values


def test_gae_matches_verl_on_policy_tokens_random() -> None:
    gen = torch.Generator().manual_seed(1)
    B, T = 5, 30
    mask = (torch.rand(B, T, generator=gen) > 0.3).long()
    mask[:, -4:] = 0  # padding
    values = torch.randn(B, T, generator=gen)
    rewards = torch.randn(B, T, generator=gen) * mask
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.95, lam=0.9)
    ref_adv, ref_ret = _verl_gae_reference(rewards, values, mask, 0.95, 0.9)
    m = mask.bool()
    assert torch.allclose(adv[m], ref_adv[m], atol=1e-5)
    assert torch.allclose(ret[m], ref_ret[m], atol=1e-5)
    assert torch.all(adv[~m] == 0) and torch.all(ret[~m] == 0)


def test_gae_all_masked_row_and_shape_errors() -> None:
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    values = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    rewards = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.equal(adv[0], torch.zeros(3)) and torch.equal(ret[0], torch.zeros(3))
    assert torch.allclose(adv[1], torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        gae_advantages(rewards[:, :2], values, mask, gamma=1.0, lam=1.0)


def _gae_case(B: int, T: int):
    gen = torch.Generator().manual_seed(2)
    mask = (torch.rand(B, T, generator=gen) > 0.2).long()
    values = torch.randn(B, T, generator=gen)
    rewards = torch.zeros(B, T)
    last = T - 1 - torch.argmax(mask.flip(1), dim=1)  # last policy token of each row
    rewards[torch.arange(B), last] = 1.0
    return rewards, values, mask


def test_gae_is_vectorised_over_the_batch() -> None:
    """The batch is one tensor operation per position, not a Python loop per row: 4x the rows must cost far
    less than 4x the time. Growth, not speed, is tested, so a slow or busy machine does not change it."""
    def seconds(B: int) -> float:
        rewards, values, mask = _gae_case(B, 2000)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
            best = min(best, time.perf_counter() - start)
        return best

    small, large = seconds(16), seconds(64)
    assert large < 2.5 * small + 0.01, f"{small * 1e3:.0f} ms for 16 rows, {large * 1e3:.0f} ms for 64"
    rewards, values, mask = _gae_case(64, 4000)
    adv, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    m = mask.bool()
    assert torch.allclose(adv[m], (1.0 - values)[m], atol=1e-5)


# --------------------------------------------------------------------------- whiten


def test_whiten_hand_worked() -> None:
    # Mask-1 entries [1, 2, 3, 6]: mean 3; deviations [-2, -1, 0, 3]; sum sq 14;
    # unbiased var 14/3 = 4.6667; std 2.1602469.
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 6.0, -50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    w = whiten(x, mask)
    s = math.sqrt(14 / 3 + 1e-8)
    expected = torch.tensor([[-2 / s, -1 / s, 0.0], [0.0, 3 / s, 0.0]])
    assert torch.allclose(w, expected, atol=1e-6)
    # shift_mean=False: rescale only, the mean (3) is added back.
    w2 = whiten(x, mask, shift_mean=False)
    assert torch.allclose(w2[mask.bool()], expected[mask.bool()] + 3.0, atol=1e-6)
    assert torch.all(w2[~mask.bool()] == 0)
    with pytest.raises(ValueError, match="at least 2"):
        whiten(x, torch.tensor([[1, 0, 0], [0, 0, 0]]))
