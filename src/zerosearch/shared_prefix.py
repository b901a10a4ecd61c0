"""Micro-batches whose rollouts of one prompt share that prompt's forward pass.

GRPO and REINFORCE sample ``rollouts_per_prompt`` responses for every prompt, and the update scores each
``(prompt, response)`` row. Run row by row, the prompt goes through the network once per rollout, with
gradients: for ZeroSearch's ~300-token policy prompt and short responses that is most of the update's
work. Here each distinct prompt runs once per micro-batch and its keys/values are shared by its rows:

* prefix pass: the distinct prompts without their last token, left-padded ``[G, P]``, through the decoder
  with a KV cache;
* the cache is gathered to one entry per row (``[N, ...]``; differentiable, so each row's gradient flows
  back into the shared prompt pass);
* suffix pass: per row, the prompt's last token then the response, right-aligned like
  :class:`zerosearch.policy.Window` (``[N, R + 1]``), attending to its prompt through the cache.

The suffix pass's hidden states at columns ``0..R-1`` predict the response window's tokens exactly as
the full pass's last ``R + 1`` columns do, so the log-probs, and their gradients, are the same up to float
summation order (``tests/test_shared_prefix.py`` checks both). Rows with a short response leave padding
columns between their prompt and their tokens; they are masked out and positions are counted from the
attention mask, so they change nothing.

This is a departure in *how* the original code (and verl, TRL) computes the update, not in *what*: they
run every row in full. It needs a decoder that takes a KV cache and a plain output head
(:func:`zerosearch.policy.plain_head`), and a cache that rows may gather and read across masked padding
(:func:`shares_cache`: full attention in every layer, positions from the mask); the trainer falls back to full
rows otherwise, with a critic (whose trunk reads full rows) and with gradient checkpointing (which drops the
cache).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import torch
from torch import nn

from zerosearch.padding import left_pad

__all__ = ["SharedPrefixWindow", "build_shared_prefix_window", "shared_prefix_batches", "shared_prefix_hidden",
           "shared_prefill", "cache_keyword", "shares_cache", "full_attention_layers"]

# architectures whose attention places tokens by column rather than by the mask's positions (MPT's ALiBi):
# the padding between a shared prompt and a row's tokens would move them
_POSITIONED_BY_COLUMN = frozenset({"mpt"})


def shares_cache(model: nn.Module) -> bool:
    """Whether ``model``'s rows may share a gathered KV cache and read it across masked padding columns.

    True when every layer of the cache transformers builds for it is the plain full-attention ``DynamicLayer``
    and its positions come from the attention mask. Not: sliding-window layers (Mistral, Gemma 2/3, Qwen2 with
    ``use_sliding_window``: the window counts columns, padding included), linear-attention or recurrent layers
    (Qwen3.5, Qwen3-Next, LFM2: no per-row gather, and a state that cannot skip a column), MPT (ALiBi by
    column distance). Used by the shared prompt pass here, the rollout's shared prefill and its turn cache
    (:mod:`zerosearch.turn_cache`); each falls back to full rows where this is False.
    """
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) in _POSITIONED_BY_COLUMN:
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:  # a config transformers cannot lay a cache out for: do not guess
        return False
    return full_attention_layers(cache)


def full_attention_layers(cache: Any) -> bool:
    """Every layer of ``cache`` is transformers' plain full-attention ``DynamicLayer`` (not a subclass)."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # a transformers without cache layers
        return False
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class SharedPrefixWindow:
    """A micro-batch of N rows over G distinct prompts, and the right-aligned response window of width R.

    prefix_ids, prefix_attention, prefix_positions: [G, P] the distinct prompts without their last token,
        left-padded (P may be 0 when every prompt is one token long)
    row_prefix: [N] the index into the G prompts of each row
    suffix_ids, suffix_attention: [N, R + 1] the prompt's last token and the response, right-aligned
    suffix_positions: [N, R + 1] positions continuing from the row's prompt
    targets, response_mask: [N, R] as in :class:`zerosearch.policy.Window`
    """

    prefix_ids: torch.Tensor
    prefix_attention: torch.Tensor
    prefix_positions: torch.Tensor
    row_prefix: torch.Tensor
    suffix_ids: torch.Tensor
    suffix_attention: torch.Tensor
    suffix_positions: torch.Tensor
    targets: torch.Tensor
    response_mask: torch.Tensor

    @property
    def width(self) -> int:
        return self.targets.shape[1]


def build_shared_prefix_window(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int,
                               device: torch.device) -> SharedPrefixWindow:
    """Build the shared-prefix tensors for rows ``(prompts[i], responses[i])``; equal prompts are shared.

    Raises:
        ValueError: a prompt is empty (the first response token needs a token to be predicted from).
    """
    keys: dict[tuple[int, ...], int] = {}
    row_prefix = []
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"row {i} has an empty prompt; every row needs at least one prompt token")
        row_prefix.append(keys.setdefault(tuple(p), len(keys)))
    distinct = list(keys)
    P = max(len(p) - 1 for p in distinct)
    R = max(1, max(len(r) for r in responses))
    prefix_ids, prefix_attention = left_pad([p[:-1] for p in distinct], P, pad_id)
    suffix_ids, suffix_attention = left_pad([[p[-1], *r] for p, r in zip(prompts, responses)], R + 1, pad_id)
    targets, response_mask = left_pad(responses, R, pad_id)
    rows = torch.tensor(row_prefix, dtype=torch.long)
    prompt_tokens = prefix_attention.sum(-1)[rows]
    # the same positions ``generate`` gave these tokens: cumsum of the attention mask over the whole row
    suffix_positions = (prompt_tokens[:, None] + suffix_attention.cumsum(-1) - 1).clamp(min=0)
    prefix_positions = (prefix_attention.cumsum(-1) - 1).clamp(min=0)
    to = (lambda t: t.to(device))
    return SharedPrefixWindow(to(prefix_ids), to(prefix_attention), to(prefix_positions), to(rows),
                              to(suffix_ids), to(suffix_attention), to(suffix_positions), to(targets),
                              to(response_mask))


def shared_prefix_hidden(model: nn.Module, window: SharedPrefixWindow) -> torch.Tensor:
    """Decoder hidden states predicting each response-window token: [N, R, hidden].

    ``model`` is a causal LM with ``get_decoder()`` (see :func:`zerosearch.policy.plain_head`).
    """
    from transformers import DynamicCache

    decoder = model.get_decoder()
    cache_arg = cache_keyword(decoder)
    attention = window.suffix_attention
    if window.prefix_ids.shape[1] > 0:
        cache = DynamicCache(config=model.config)
        decoder(input_ids=window.prefix_ids, attention_mask=window.prefix_attention,
                position_ids=window.prefix_positions, use_cache=True, **{cache_arg: cache})
        cache.batch_select_indices(window.row_prefix)  # one entry per row; a gather, so gradients add up
        attention = torch.cat([window.prefix_attention[window.row_prefix], attention], dim=1)
        cached = {cache_arg: cache}
    else:
        cached = {}
    out = decoder(input_ids=window.suffix_ids, attention_mask=attention, position_ids=window.suffix_positions,
                  use_cache=bool(cached), **cached)
    return out.last_hidden_state[:, :-1, :]


def cache_keyword(model: nn.Module) -> str:
    """The KV cache argument's name: ``cache`` from transformers 5.2x, ``past_key_values`` before (also what
    ``generate`` takes). A PEFT wrapper is looked through to the model it wraps."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def shared_prefix_batches(prompt_keys: Sequence[Hashable], prompt_lengths: Sequence[int],
                          response_lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group row indices into micro-batches of at most ``max_tokens`` padded tokens, rows of a prompt together.

    A micro-batch's cost is what it runs: ``distinct prompts x longest prompt + rows x (longest response + 1)``.
    Prompts are taken in order of their longest response (rows of similar length share padding), each
    prompt's rows in order of length; a prompt whose rows do not fit one micro-batch is split across several
    (each part shares its own prompt pass). A single row over ``max_tokens`` still forms its own micro-batch.
    """
    by_prompt: dict[Hashable, list[int]] = {}
    for i, key in enumerate(prompt_keys):
        by_prompt.setdefault(key, []).append(i)
    units = sorted(by_prompt.values(),
                   key=lambda rows: (max(response_lengths[i] for i in rows), prompt_lengths[rows[0]]))
    groups: list[list[int]] = []
    current: list[int] = []
    prompts_in: set[Hashable] = set()
    longest_prompt = longest_response = 0
    for rows in units:
        for i in sorted(rows, key=lambda r: response_lengths[r]):
            new_prompts = len(prompts_in | {prompt_keys[i]})
            lp = max(longest_prompt, prompt_lengths[i])
            lr = max(longest_response, response_lengths[i])
            if current and new_prompts * lp + (len(current) + 1) * (lr + 1) > max_tokens:
                groups.append(current)
                current, prompts_in = [], set()
                lp, lr = prompt_lengths[i], response_lengths[i]
            current.append(i)
            prompts_in.add(prompt_keys[i])
            longest_prompt, longest_response = lp, lr
    if current:
        groups.append(current)
    return groups


def shared_prefill(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any | None:
    """A KV cache of each row's context but its last token, computed once per distinct row; or None.

    ``input_ids``/``attention_mask``: [N, W] left-padded contexts about to be continued by ``generate``. Rows
    with the same context (a prompt's rollouts at their first turn) are prefilled once and the cache gathered
    to one entry per row; passed to ``generate`` as ``past_key_values``, it leaves ``generate`` only the last
    column to prefill. Returns None when no two rows are equal (nothing to share) or the context is one token.
    Positions are those ``generate`` gives a left-padded batch (cumsum of the mask, 1 at padding).
    """
    from transformers import DynamicCache

    if input_ids.shape[1] < 2 or not shares_cache(model):
        return None
    distinct, row_index = torch.unique(input_ids, dim=0, return_inverse=True)
    if distinct.shape[0] == input_ids.shape[0]:
        return None
    first = torch.zeros(distinct.shape[0], dtype=torch.long, device=input_ids.device)
    first[row_index] = torch.arange(input_ids.shape[0], device=input_ids.device)  # a row holding each context
    ids, mask = input_ids[first, :-1], attention_mask[first, :-1]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = DynamicCache(config=model.config)
    model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
          **{cache_keyword(model): cache})
    cache.batch_select_indices(row_index)
    return cache
