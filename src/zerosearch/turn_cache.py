"""A rollout's KV cache carried from one turn to the next, so a later turn runs only its new tokens.

At turn t+1 a trajectory's context is its turn-t context, the tokens it generated at turn t up to the stop, and
the ``<information>`` block (or corrective message) the environment appended. Search-R1 and the original
re-encode that whole context at every turn. Keeping the cache instead made the embedded default's rollout
(SmolLM2-135M, 8 rows, 3 turns, 2 CPU cores) about 1.1x as fast in a warm process, with the same tokens
(``benchmarks/speed_levers.py --levers kv_reuse``; a single cold rollout shows it within noise); the saving
grows with the number of turns and the length of the context.

:class:`TurnCache` keeps what ``generate`` left behind (its ``DynamicCache``, the input's attention mask, the
tokens each row held and the tokens it generated) and builds the next turn's input from it:

* the cached columns stay where they are. Generated tokens past a row's stop (and the padding ``generate``
  writes after a row's EOS) become holes with attention mask 0;
* each row's new tokens (the environment's text, plus the one generated token the cache never saw, the last)
  follow in a left-padded block, so every row ends at the last column, as in a fresh batch;
* ``generate`` derives positions from the cumsum of the attention mask, holes included, so every token gets
  the position a re-encoded row would give it, and masked columns are never attended.

Which of a row's generated tokens stay is read off its new context (the longest common prefix of what it
generated and what follows its held tokens), so nothing here depends on how the environment trims a turn.
Any row that does not continue its cached tokens (or a batch holding a row the cache never saw) gets no cache:
:meth:`TurnCache.continue_rows` returns None and the caller re-encodes, as before.

Where holes would change what a row sees, nothing is carried (:func:`zerosearch.shared_prefix.shares_cache`, and
the check of the cache's layers in :meth:`TurnCache.after_generate`), found by a review that tried other
architectures:

* sliding-window layers (Mistral, Gemma 2/3, Qwen2 with ``use_sliding_window``): the window counts cache
  columns, so holes leave fewer real tokens in it;
* linear-attention and recurrent layers (Qwen3.5, Qwen3-Next, LFM2): their state has absorbed the tokens
  generated after a row's stop, which no mask can take back;
* quantised caches and any other layer type but transformers' plain ``DynamicLayer``;
* MPT, whose ALiBi bias counts column distance rather than the mask's positions.

The cached columns of the next input hold the tokens the cache was computed from (holes included, masked), not
padding, so a model that drops its cache and re-runs the whole input (Phi-3's ``prepare_inputs_for_generation``
does past ``original_max_position_embeddings``) still reads the right context.

Holes keep the cache from shrinking: it grows by each turn's longest generation and new-token block. ``TurnCache``
is dropped at the end of a rollout, before scoring needs the memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from zerosearch.padding import left_pad
from zerosearch.shared_prefix import full_attention_layers

__all__ = ["TurnCache", "common_prefix_length"]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class TurnCache:
    """What one ``generate`` over N rows left: enough to continue those rows without re-encoding them.

    cache: the model's cache after ``generate``, covering the input's C columns and all but the last of the G
        generated columns (``C + G - 1``)
    keys: [N] the object each row belongs to (its trajectory), matched by identity at the next turn
    attention: [N, C] the input's attention mask (0 at padding and at holes)
    cached_ids: [N, C + G - 1] the token ids the cache was computed from, column by column

    A row's context at this turn is its input tokens where ``attention`` is 1, in order; its generated tokens
    that the cache holds are the last ``G - 1`` columns of ``cached_ids`` (:attr:`generated`).
    """

    cache: Any
    keys: list[Any]
    attention: torch.Tensor
    cached_ids: torch.Tensor

    @classmethod
    def after_generate(cls, cache: Any, keys: Sequence[Any], attention: torch.Tensor,
                       sequences: torch.Tensor) -> "TurnCache | None":
        """Keep ``generate``'s cache for the next turn; None when it is not the shape this needs.

        ``sequences``: [N, C + G] what ``generate`` returned for an input of width C = ``attention.shape[1]``.
        """
        if cache is None or not full_attention_layers(cache):
            return None
        if cache.get_seq_length() != sequences.shape[1] - 1:  # a cache that does not hold what we think it does
            return None
        return cls(cache, list(keys), attention, sequences[:, :-1])

    @property
    def generated(self) -> list[list[int]]:
        """[N] each row's first ``G - 1`` generated ids: the ones the cache holds."""
        return self.cached_ids[:, self.attention.shape[1]:].tolist()

    def continue_rows(self, keys: Sequence[Any], rows: Sequence[Sequence[int]], pad_id: int,
                      ) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
        """The next turn's ``input_ids``, ``attention_mask`` [M, C + G - 1 + S] and cache for ``rows``.

        ``keys``: [M] the rows' objects (each one of this cache's keys); ``rows``: [M] their whole contexts now.
        The cache is narrowed to the M rows in place (this object is spent). The input's cached columns hold
        the ids the cache was computed from (``generate`` skips them, as the cache covers them); the last S
        columns hold each row's new tokens, left-padded with ``pad_id``. None when a row is unknown or does not
        continue what the cache holds, or has nothing new to run.
        """
        index = {id(k): i for i, k in enumerate(self.keys)}
        width_in = self.attention.shape[1]
        inputs = self.cached_ids[:, :width_in].to(self.attention.device)
        generated = self.generated
        selected, suffixes, kept = [], [], []
        for key, row in zip(keys, rows):
            i = index.get(id(key))
            if i is None:
                return None
            held = inputs[i][self.attention[i].bool()].tolist()  # the row's whole context at the last turn
            if len(row) <= len(held) or list(row[: len(held)]) != held:
                return None
            rest = row[len(held):]
            k = common_prefix_length(generated[i], rest)
            if k == len(rest):  # nothing new to run (cannot happen after an observation, but never guess)
                return None
            selected.append(i)
            kept.append(k)
            suffixes.append(rest[k:])
        device = self.attention.device
        index_tensor = torch.tensor(selected, dtype=torch.long, device=device)
        generated_width = self.cached_ids.shape[1] - width_in
        generated_mask = torch.zeros((len(selected), generated_width), dtype=self.attention.dtype, device=device)
        for row, k in enumerate(kept):
            generated_mask[row, :k] = 1
        cached_mask = torch.cat([self.attention[index_tensor], generated_mask], dim=1)
        self.cache.batch_select_indices(index_tensor)
        width = max(len(s) for s in suffixes)
        suffix_ids, suffix_mask = left_pad(suffixes, width, pad_id)
        cached_ids = self.cached_ids[index_tensor.to(self.cached_ids.device)].to(device)
        input_ids = torch.cat([cached_ids, suffix_ids.to(device)], dim=1)
        attention = torch.cat([cached_mask, suffix_mask.to(device=device, dtype=cached_mask.dtype)], dim=1)
        return input_ids, attention, self.cache
