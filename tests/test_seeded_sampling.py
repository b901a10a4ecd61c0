"""Row-seeded sampling: draws from softmax(logits / T), and a row's samples do not depend on its batch."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from support import FixedDocumentsEngine
from zerosearch.llm.seeded_sampling import RowSeededSampling, derive_seed
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory


def test_derive_seed_is_stable_and_tells_parts_apart():
    assert derive_seed(0, "nq", "q1", 3) == derive_seed(0, "nq", "q1", 3)
    # the definition, pinned: the first 8 bytes (little-endian) of sha256(repr(parts)), halved to 63 bits;
    # the same in every process and Python version, unlike hash()
    assert derive_seed(0, "nq", "q1", 3) == int.from_bytes(hashlib.sha256(b"(0, 'nq', 'q1', 3)").digest()[:8],
                                                           "little") >> 1 == 4409488463979501855
    seeds = {derive_seed(0, "nq", "q1", j) for j in range(100)} | {derive_seed(1, "nq", "q1", 0)}
    assert len(seeds) == 101 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_draws_follow_the_tempered_softmax(temperature):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(20_000, 1)
    processor = RowSeededSampling(range(20_000), temperature)
    drawn = processor(None, logits).argmax(-1)
    frequencies = torch.bincount(drawn, minlength=4).double() / 20_000
    expected = torch.softmax(probs.log().double() / temperature, -1)
    # T=1: [0.5, 0.3, 0.15, 0.05]; T=2: sqrt(p) normalised = [0.363, 0.281, 0.199, 0.115]
    assert frequencies.tolist() == pytest.approx(expected.tolist(), abs=0.015)


def test_a_draw_is_the_first_token_whose_cumulative_probability_exceeds_the_rows_uniform():
    # probabilities [0.5, 0.3, 0.15, 0.05]: cumulative [0.5, 0.8, 0.95, 1.0]; u in [0, 0.5) draws token 0,
    # [0.5, 0.8) token 1, [0.8, 0.95) token 2, [0.95, 1) token 3. The token -inf (probability 0) never.
    logits = torch.tensor([0.5, 0.3, 0.0, 0.15, 0.05]).log().repeat(40, 1)  # log 0 = -inf
    out = RowSeededSampling(range(40), 1.0)(None, logits)
    for seed, row in enumerate(out):
        u = torch.rand(1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).item()
        expected = 0 if u < 0.5 else 1 if u < 0.8 else 3 if u < 0.95 else 4
        assert row.argmax().item() == expected and (row == 0).sum() == 1 and row[2] == float("-inf")


def test_refuses_a_batch_of_another_size_and_no_temperature():
    with pytest.raises(ValueError, match="2 row seeds for a batch of 3"):
        RowSeededSampling([1, 2], 1.0)(None, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        RowSeededSampling([1], 0.0)


@pytest.fixture(scope="module")
def tiny():
    path = tiny_model_dir()
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def rollout(tiny, rows: list[tuple[str, int | None]]) -> list[Trajectory]:
    """Sample one turn per (prompt, seed) row, all in one batch; the tiny random model writes random tokens."""
    model, tok = tiny
    runner = RolloutRunner(model, tok, FixedDocumentsEngine(["doc"]),
                           RolloutSettings(max_turns=0, max_turn_tokens=12, temperature=1.0), torch.device("cpu"))
    trajectories = [Trajectory(prompt, (), tok(prompt)["input_ids"], sample_seed=seed) for prompt, seed in rows]
    runner.run(trajectories, None, np.random.default_rng(0))
    return trajectories


def test_a_rows_sample_does_not_depend_on_its_batch(tiny):
    alone = rollout(tiny, [("what colour is the sky", 5)])[0].response_ids
    batched = rollout(tiny, [("a much longer question that pads the others on the left", 6),
                             ("what colour is the sky", 5), ("short", 7)])
    assert batched[1].response_ids == alone  # other rows, other padding, another position: the same draw
    assert rollout(tiny, [("what colour is the sky", 9)])[0].response_ids != alone  # another seed, another draw


def test_rows_of_one_prompt_with_their_own_seeds_differ_and_repeat(tiny):
    first = [t.response_ids for t in rollout(tiny, [("q", s) for s in range(4)])]
    assert len({tuple(ids) for ids in first}) == 4
    assert [t.response_ids for t in rollout(tiny, [("q", s) for s in reversed(range(4))])] == first[::-1]


def test_a_batch_mixing_seeded_and_unseeded_rows_is_refused(tiny):
    with pytest.raises(ValueError, match="seed all or none"):
        rollout(tiny, [("q", 1), ("q", None)])
