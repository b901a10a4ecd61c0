"""The KV cache carried across a rollout's turns (zerosearch.turn_cache): the next turn's input built by hand,
and rollouts token for token those of re-encoding every turn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import zerosearch.rollout as rollout_module
from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.data import policy_prompt
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.policy import encode_prompt
from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory
from zerosearch.turn_cache import TurnCache, common_prefix_length

PAD = 0
DOCS = ["the sky is blue", "grass is green", "bananas are yellow"]


class FakeCache:
    """Records what the turn cache asks of a transformers cache (plain full-attention layers by default)."""

    def __init__(self, length: int, layers: list | None = None) -> None:
        from transformers.cache_utils import DynamicLayer

        self.length = length
        self.layers = [DynamicLayer(), DynamicLayer()] if layers is None else layers
        self.selected: list[int] | None = None

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.selected = indices.tolist()


def _two_rows():
    """Row a held [5, 6, 7], row b [8, 9] (left-padded to 3); generate wrote 4 tokens each, the cache holds 3."""
    a, b = object(), object()
    attention = torch.tensor([[1, 1, 1], [0, 1, 1]])
    sequences = torch.tensor([[5, 6, 7, 10, 11, 12, 19], [PAD, 8, 9, 13, 2, 2, 2]])
    cache = FakeCache(length=6)  # 3 input columns + 4 generated - 1
    turn = TurnCache.after_generate(cache, [a, b], attention, sequences)
    return turn, cache, a, b


def test_next_turn_input_by_hand():
    turn, cache, a, b = _two_rows()
    assert turn.generated == [[10, 11, 12], [13, 2, 2]]
    # a stopped after 2 generated tokens and got [20, 21] appended; b kept 1 (then its EOS padding) and got 3
    row_a = [5, 6, 7, 10, 11, 20, 21]
    row_b = [8, 9, 13, 30, 31, 32]
    input_ids, attention, kept_cache = turn.continue_rows([b, a], [row_b, row_a], PAD)
    assert kept_cache is cache and cache.selected == [1, 0]  # narrowed to the asked rows, in their order
    assert attention.tolist() == [
        [0, 1, 1, 1, 0, 0, 1, 1, 1],  # b: its 2 tokens, 1 kept generated token, 2 holes, 3 new tokens
        [1, 1, 1, 1, 1, 0, 0, 1, 1],  # a: its 3 tokens, 2 kept, 1 hole, then its 2 new tokens left-padded
    ]
    # the cached columns hold the ids the cache was computed from (a model that drops its cache and re-runs
    # the input, as Phi-3 does past 4096 tokens, then still reads the right context); masked where holes
    assert input_ids.tolist() == [[PAD, 8, 9, 13, 2, 2, 30, 31, 32], [5, 6, 7, 10, 11, 12, PAD, 20, 21]]
    # generate's positions (cumsum of the mask) put each row's last token where the re-encoded row has it
    positions = attention.cumsum(-1) - 1
    assert positions[:, -1].tolist() == [len(row_b) - 1, len(row_a) - 1]


def test_the_last_generated_token_runs_again():
    """A row that ran its whole budget: the cache never saw its last generated token, so it leads the new tokens."""
    turn, cache, a, b = _two_rows()
    row_a = [5, 6, 7, 10, 11, 12, 19, 40]
    input_ids, attention, _ = turn.continue_rows([a], [row_a], PAD)
    assert attention.tolist() == [[1, 1, 1, 1, 1, 1, 1, 1]]
    assert input_ids.tolist() == [[5, 6, 7, 10, 11, 12, 19, 40]]


@pytest.mark.parametrize("case", ["unknown row", "not a continuation", "nothing new"])
def test_no_cache_when_a_row_does_not_continue_it(case):
    turn, cache, a, b = _two_rows()
    keys, rows = {
        "unknown row": ([object()], [[5, 6, 7, 1]]),
        "not a continuation": ([b], [[8, 99, 13, 30]]),
        "nothing new": ([a], [[5, 6, 7, 10, 11]]),
    }[case]
    assert turn.continue_rows(keys, rows, PAD) is None
    assert cache.selected is None  # the cache is left alone


@pytest.mark.parametrize("odd_layer", ["sliding window", "linear attention"])
def test_a_cache_with_layers_holes_would_break_is_not_kept(odd_layer):
    """A sliding window counts cache columns (holes leave fewer real tokens in it); a linear-attention state has
    absorbed the tokens generated past a row's stop. Either way the next turn re-encodes."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer, LinearAttentionLayer

    odd = DynamicSlidingWindowLayer(sliding_window=4) if odd_layer == "sliding window" else LinearAttentionLayer()
    attention = torch.ones((1, 2), dtype=torch.long)
    cache = FakeCache(3, layers=[DynamicLayer(), odd])
    assert TurnCache.after_generate(cache, [object()], attention, torch.tensor([[1, 2, 3, 4]])) is None


def test_a_cache_of_another_length_is_not_kept():
    attention = torch.ones((1, 2), dtype=torch.long)
    assert TurnCache.after_generate(FakeCache(5), [object()], attention, torch.tensor([[1, 2, 3, 4]])) is None
    assert TurnCache.after_generate(None, [object()], attention, torch.tensor([[1, 2, 3, 4]])) is None
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2 and common_prefix_length([], [1]) == 0


def _make(tok, question, group):
    return Trajectory(question, ("blue",), encode_prompt(tok, policy_prompt(question, SHORT_TEMPLATE), True),
                      group=group)


@pytest.mark.parametrize("model_name,temperature,max_turn_tokens", [
    ("searcher", 0.0, 24),  # searches, reads the documents, answers: rows stop at different columns
    ("searcher", 1.0, 24),
    ("untrained", 1.0, 10),  # junk to the budget: corrective messages, the last token never cached
])
def test_rollouts_are_those_of_re_encoding_every_turn(searcher_model, monkeypatch, model_name, temperature,
                                                      max_turn_tokens):
    path = searcher_model if model_name == "searcher" else tiny_model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    questions = ["what colour is the sky", "what colour is grass, short or long?", "what colour is a banana"]
    continued = []
    real = TurnCache.continue_rows

    def spy(self, keys, rows, pad_id):
        out = real(self, keys, rows, pad_id)
        continued.append(None if out is None else (len(rows), out[0].shape[1]))
        return out

    monkeypatch.setattr(rollout_module.TurnCache, "continue_rows", spy)
    runs = {}
    for reuse in (True, False):
        settings = RolloutSettings(max_turns=3, topk=2, max_turn_tokens=max_turn_tokens, temperature=temperature,
                                   kv_reuse=reuse)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, torch.device("cpu"))
        trajs = [_make(tok, q, g) for g, q in enumerate(questions) for _ in range(2)]
        torch.manual_seed(0)
        runner.run(trajs, 0.0, np.random.default_rng(0))
        assert runner._turn_cache is None  # dropped with the rollout
        runs[reuse] = [(t.response_ids, t.loss_mask, t.status) for t in trajs]
    assert runs[True] == runs[False]
    assert any(len(r[0]) > 30 for r in runs[True])  # more than one turn happened
    assert continued and all(c is not None for c in continued)  # every later turn ran from the cache


@pytest.mark.parametrize("model_type", ["mistral", "mpt"])
def test_architectures_that_cannot_carry_a_cache_re_encode(searcher_model, monkeypatch, model_type):
    """The searcher's weights in a Mistral with a 32-token sliding window (shorter than a turn's context; a
    review found its rollouts changed when the cache was carried), and a tiny MPT (ALiBi by column distance):
    nothing is carried, and the rollouts are those of kv_reuse off."""
    from transformers import AutoConfig, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(searcher_model)
    torch.manual_seed(0)
    if model_type == "mistral":
        llama = AutoModelForCausalLM.from_pretrained(searcher_model)
        fields = MistralConfig().to_dict()
        config = MistralConfig(**{k: v for k, v in llama.config.to_dict().items()
                                  if k in fields and k not in ("model_type", "architectures")})
        config.sliding_window = 32
        model = MistralForCausalLM(config)
        model.load_state_dict(llama.state_dict(), strict=False)
    else:
        config = AutoConfig.for_model("mpt", vocab_size=len(tok), pad_token_id=tok.pad_token_id, d_model=32,
                                      n_heads=4, n_layers=2, max_seq_len=4096)
        model = AutoModelForCausalLM.from_config(config)
    model.eval()
    kept = []
    real = TurnCache.after_generate.__func__

    def spy(cls, *args):
        out = real(cls, *args)
        kept.append(out is not None)
        return out

    monkeypatch.setattr(rollout_module.TurnCache, "after_generate", classmethod(spy))
    questions = ["what colour is the sky", "what colour is grass, short or long?", "what colour is a banana"]
    runs = {}
    for reuse in (True, False):
        settings = RolloutSettings(max_turns=3, topk=2, max_turn_tokens=24, temperature=0.0, kv_reuse=reuse)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, torch.device("cpu"))
        trajs = [_make(tok, q, g) for g, q in enumerate(questions) for _ in range(2)]
        runner.run(trajs, 0.0, np.random.default_rng(0))
        runs[reuse] = [(t.response_ids, t.loss_mask, t.status) for t in trajs]
    assert runs[True] == runs[False]
    assert not any(kept)  # mistral: refused for its sliding layers; mpt: never asked
