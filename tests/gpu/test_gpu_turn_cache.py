"""On the GPU, in fp32 and bf16: a rollout whose later turns continue from the KV cache the turn before left
(zerosearch.turn_cache) writes the greedy tokens that re-encoding the whole context every turn writes
(tests/test_turn_cache.py checks this on the CPU in fp32).

The two paths compute the same function through other kernels (a cache filled while decoding, with masked
holes where rows stopped early, against one prefill of the whole context), so their logits differ by the
dtype's rounding. In fp32 that never moves a greedy choice here; in bf16 it may where the two best tokens are
within that rounding of each other. So a row may part from its re-encoded twin only at such a near-tie: the
first token where they differ must be one whose two candidates' logits are closer than bf16's own error there
(measured against the same weights in fp32). A fault in the carried cache (a wrong column, position or mask)
moves logits by far more than that.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gpu_support import DTYPES, device, on_device, synchronize

pytestmark = [pytest.mark.gpu, on_device]

DOCS = ["the sky is blue", "grass is green", "bananas are yellow"]
QUESTIONS = ["what colour is the sky", "what colour is grass, short or long?", "what colour is a banana",
             "what colour is an apple", "which city is the capital of france", "who wrote the book",
             "what colour is the river in the city", "when was the film released"]
FP32_TIE = 1e-4  # fp32: logits closer than this count as a tie (the paths differ by ~1e-6 here)


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@torch.no_grad()
def _near_tie(model, reference, context: list[int], chosen: int, other: int) -> tuple[bool, str]:
    """Whether tokens ``chosen`` and ``other`` are tied after ``context`` within ``model``'s rounding error:
    their logit gap is under twice the largest difference between ``model``'s logits and ``reference``'s (the
    same weights in fp32), or under :data:`FP32_TIE`."""
    ids = torch.tensor([context], device=next(model.parameters()).device)
    logits = model(input_ids=ids).logits[0, -1].float()
    exact = reference(input_ids=ids).logits[0, -1].float()
    gap = abs(float(logits[chosen] - logits[other]))
    noise = float((logits - exact).abs().max())
    return gap <= max(2 * noise, FP32_TIE), f"logit gap {gap:.2e}, rounding error {noise:.2e}"


def _rollouts(model, tok, dev, reuse: bool, max_turn_tokens: int):
    from support import SHORT_TEMPLATE, FixedDocumentsEngine
    from zerosearch.data import policy_prompt
    from zerosearch.policy import encode_prompt
    from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory

    settings = RolloutSettings(max_turns=3, topk=2, max_turn_tokens=max_turn_tokens, temperature=0.0,
                               kv_reuse=reuse)
    runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, dev)
    trajectories = [Trajectory(q, ("blue",), encode_prompt(tok, policy_prompt(q, SHORT_TEMPLATE), True), group=g)
                    for g, q in enumerate(QUESTIONS)]
    runner.run(trajectories, 0.0, np.random.default_rng(0))
    synchronize(dev)
    return trajectories


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("model_name,max_turn_tokens", [
    ("searcher", 24),  # searches, reads the documents, answers: rows stop at different columns
    ("untrained", 10),  # junk to the budget: corrective messages, the last token never cached
])
def test_carried_cache_gives_the_greedy_tokens_of_re_encoding(searcher_model, monkeypatch, model_name,
                                                               max_turn_tokens, dtype_name):
    import zerosearch.rollout as rollout_module
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerosearch.models.tiny import tiny_model_dir
    from zerosearch.turn_cache import TurnCache

    dev, dtype = device(), DTYPES[dtype_name]
    path = searcher_model if model_name == "searcher" else tiny_model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev).eval()
    continued = []
    real = TurnCache.continue_rows

    def spy(self, keys, rows, pad_id):
        out = real(self, keys, rows, pad_id)
        continued.append(out is not None)
        return out

    monkeypatch.setattr(rollout_module.TurnCache, "continue_rows", spy)
    cached = _rollouts(model, tok, dev, True, max_turn_tokens)
    assert continued and all(continued), "a later turn re-encoded instead of continuing from the cache"
    re_encoded = _rollouts(model, tok, dev, False, max_turn_tokens)
    assert any(len(t.response_ids) > 30 for t in re_encoded)  # more than one turn happened

    reference = copy.deepcopy(model).float()
    ties = []
    for a, b in zip(cached, re_encoded):
        i = _first_difference(a.response_ids, b.response_ids)
        if i is None:
            assert (a.loss_mask, a.status) == (b.loss_mask, b.status)
            continue
        assert dtype == torch.bfloat16, f"{a.question!r}: fp32 rollouts part at response token {i}"
        assert i < min(len(a.response_ids), len(b.response_ids)), f"{a.question!r}: one row stops early"
        assert b.loss_mask[i] == 1, f"{a.question!r}: parted at an environment token {i}"
        tied, how = _near_tie(model, reference, b.prompt_ids + b.response_ids[:i], b.response_ids[i],
                              a.response_ids[i])
        assert tied, f"{a.question!r}: the cached rollout parts from re-encoding at token {i}, not a tie ({how})"
        ties.append(how)
    print(f"{model_name} {dtype_name}: {len(cached) - len(ties)}/{len(cached)} rows identical; near-ties: {ties}")
