"""The KV cache of a prompt's constant start, run once and reused by every request that begins with it.

The simulated search engine's prompts all begin with the same tokens: the chat template's header, the
instructions and, in prompt mode, the few-shot example (with SmolLM2's tokenizer 295 and 304 of a useful and a
noisy prompt's ~330 tokens in prompt mode, 42 of ~87 in finetuned mode;
:meth:`zerosearch.search.simulated.SimulatedSearchEngine.shared_start`). vLLM and SGLang cache such prefixes
themselves (automatic prefix caching); an in-process ``generate`` re-encodes every prompt in full.
:class:`PrefixCache` runs each distinct constant start once per model and gives every later batch a copy of its
keys/values, so ``generate`` prefills only each request's own tokens. This is transformers' "re-use a prompt
cache" recipe (``past_key_values=copy.deepcopy(prompt_cache)`` with the full prompt as input), batched.

Where the shared part ends is worked out in tokens, not characters:

* the caller names a text the conversation's last message starts with (the ``hint``, e.g. the template up to
  its first per-request field). The chat template is rendered with that message cut right after the hint (a
  sentinel marks the cut), so whatever the template writes before the message (ChatML's ``<|im_start|>``
  headers, an empty system message) is part of the shared start. A template that wrote something per request
  before the message (a date, a system prompt naming the user) would make the shared start fail the check below
  for every request, which then runs in full, as before; SmolLM2's and Qwen2.5's templates write only the
  conversation's own messages (SmolLM2 adds a default system prompt, the same for every request, only when the
  conversation has none; the simulator always sends an empty one).
* BPE may merge the hint's last characters with the first per-request characters (``Query: `` + ``Paris``
  tokenises as ``Query:`` `` Paris``, not ``Query: `` ``Paris``). The shared tokens are those on which every
  continuation agrees: the common token prefix of the hint's rendering followed by each of :data:`PROBES`
  (letters, digits, spaces, newlines, punctuation, non-Latin script), so the tokens a merge could change are
  left to the request. Then each request's own tokenisation must start with them; a request that does not is
  run in full (counted in :attr:`PrefixCache.fallbacks`). The model therefore sees exactly the tokens of the
  full prompt, whichever way a row is run.

The batch (:func:`prefixed_batch`) has two blocks of columns: the first holds each row's shared start,
left-aligned, with masked holes after a shorter one (or only holes, for a row run in full); the second each
row's own tokens, left-padded, so every row ends at the last column as in a plain left-padded batch.
``generate`` counts positions as the cumsum of the attention mask, so each token keeps the position it has in
the full prompt, and masked columns are never attended: the layout of :mod:`zerosearch.turn_cache`, with the same
requirement on the model (:func:`zerosearch.shared_prefix.shares_cache`; others run every row in full). The stored
keys/values are never written to: each batch gets a copy (``DynamicLayer.update`` concatenates into new tensors).

Invalidation: entries are keyed by the shared start's token ids (another template, mode, useful/noisy kind or
tokenizer is another entry) and all are dropped when the model changes: another model object, its parameters'
dtype or device, the autocast dtype, or a parameter changed in place (torch's version counter sees an optimizer
step or ``load_state_dict``; an edit through ``.data`` does not: call :meth:`PrefixCache.clear` after one).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from zerosearch.shared_prefix import cache_keyword, full_attention_layers, shares_cache

__all__ = ["PROBES", "PrefixCache", "SharedStart", "prefixed_batch"]

# continuations of a hint whose tokenisations must agree on a token for it to be shared: one of each kind of
# character a byte-level BPE pre-tokeniser treats apart (and SentencePiece's "▁" space marker)
PROBES = ("", "a", "A", " a", " A", "1", " 1", " ", "  ", "\n", "\n\n", "\t", ".", ",", '"', "'", "?", "(", "-", "_",
          "<", "é", "中", "Ω", "\u00a0")
_SENTINEL = "\u2063zerosearch:end-of-shared-start\u2063"  # text no template writes
_MAX_FORMS = 1024  # conversation forms (earlier messages, role, hint) whose shared token ids are remembered


@dataclass(frozen=True)
class SharedStart:
    """One shared start's tokens and the KV cache the model computed for them (one row, never written to).

    ids: its L token ids; keys, values: per layer, [1, kv_heads, L, head_dim]
    """

    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


class PrefixCache:
    """Shared starts of conversations, and their KV caches, per model.

    Args:
        tokenizer: the chat model's tokenizer (with its chat template).
        encode: text -> token ids, exactly as the chat model tokenises a rendered prompt.
        max_entries: how many shared starts' caches are kept (least recently used dropped first).
    """

    def __init__(self, tokenizer: Any, encode: Callable[[str], list[int]], max_entries: int = 16) -> None:
        self.tokenizer = tokenizer
        self.encode = encode
        self.max_entries = max_entries
        self._ids: dict[tuple, tuple[int, ...]] = {}  # (earlier messages, role, hint) -> shared token ids
        self._entries: OrderedDict[tuple[int, ...], SharedStart] = OrderedDict()
        self._model_key: tuple | None = None
        self._model_shares = False
        self.builds = 0  # shared starts run through the model
        self.hits = 0  # rows that reused a shared start
        self.fallbacks = 0  # rows with a hint whose tokens did not begin with its shared start
        self.reused_tokens = 0  # prompt tokens not run again, summed over the rows that reused a start

    def clear(self) -> None:
        """Drop every cached start (the token ids of the hints are kept: they do not depend on the model)."""
        self._entries.clear()
        self._model_key = None

    def starts(self, model: Any, autocast: Any, conversations: Sequence[Sequence[dict[str, str]]],
               prompts: Sequence[Sequence[int]], hints: Sequence[str | None]) -> list[SharedStart | None]:
        """For each row, the shared start its ``prompts`` tokens begin with (run through ``model`` the first
        time), or None: no hint, a model whose cache cannot be shared, or tokens that do not begin with it.

        Call it in the context (no_grad, autocast) in which the batch will be generated: a start's
        keys/values are computed there. Every row left with a start has at least one token of its own.
        """
        if not any(hints):
            return [None] * len(prompts)
        self._check_model(model, autocast)
        out: list[SharedStart | None] = []
        for conversation, ids, hint in zip(conversations, prompts, hints):
            start = self._start(model, conversation, ids, hint) if hint and self._model_shares else None
            if start is not None:
                self.hits += 1
                self.reused_tokens += len(start.ids)
            elif hint:
                self.fallbacks += 1
            out.append(start)
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _check_model(self, model: Any, autocast: Any) -> None:
        params = list(model.parameters())
        key = (id(model), params[0].dtype, params[0].device, str(autocast), sum(p._version for p in params))
        if key != self._model_key:
            self._entries.clear()
            self._model_key = key
            self._model_shares = shares_cache(model)

    def _start(self, model: Any, conversation: Sequence[dict[str, str]], ids: Sequence[int],
               hint: str) -> SharedStart | None:
        shared = self._shared_ids(conversation, hint)
        if not shared or len(ids) <= len(shared) or tuple(ids[: len(shared)]) != shared:
            return None
        entry = self._entries.get(shared)
        if entry is None:
            entry = self._run(model, shared)
            self._entries[shared] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(shared)
        return entry

    def _shared_ids(self, conversation: Sequence[dict[str, str]], hint: str) -> tuple[int, ...]:
        """The token ids every prompt of this conversation's form begins with, up to the end of ``hint`` (or
        fewer, where a continuation could merge with it); () if the last message does not start with ``hint``."""
        *earlier, last = conversation
        if not last.get("content", "").startswith(hint):
            return ()
        key = (tuple((m["role"], m["content"]) for m in earlier), last["role"], hint)
        if key not in self._ids:
            if len(self._ids) >= _MAX_FORMS:  # a caller whose earlier messages vary: keep the memo bounded
                self._ids.clear()
            cut = [*earlier, {**last, "content": hint + _SENTINEL}]
            text = self.tokenizer.apply_chat_template(list(cut), tokenize=False, add_generation_prompt=True)
            head = text.split(_SENTINEL, 1)[0] if _SENTINEL in text else ""
            self._ids[key] = _common_prefix([self.encode(head + probe) for probe in PROBES]) if head else ()
        return self._ids[key]

    def _run(self, model: Any, ids: tuple[int, ...]) -> SharedStart:
        from transformers import DynamicCache

        device = next(model.parameters()).device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        cache = DynamicCache(config=model.config)
        extra = {"logits_to_keep": 1} if _takes(model, "logits_to_keep") else {}  # no head over the whole start
        model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True, **{cache_keyword(model): cache},
              **extra)
        if not full_attention_layers(cache) or cache.get_seq_length() != len(ids):
            raise RuntimeError(f"{type(model).__name__} left a cache of {cache.get_seq_length()} columns for a "
                               f"{len(ids)}-token shared start; turn the prefix cache off for it")
        self.builds += 1
        return SharedStart(ids, tuple(layer.keys for layer in cache.layers),
                           tuple(layer.values for layer in cache.layers))


def prefixed_batch(prompts: Sequence[Sequence[int]], starts: Sequence[SharedStart | None], pad_id: int,
                   config: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``generate``'s ``input_ids``, ``attention_mask`` [N, C + S] and a ``DynamicCache`` of the first C columns.

    ``prompts``: [N] each row's full token ids; ``starts``: [N] the shared start each begins with, or None (the
    row is run in full). C is the longest start, S the longest rest. See the module docstring for the layout.
    """
    from transformers import DynamicCache

    width_c = max(len(s.ids) if s else 0 for s in starts)
    rests = [list(ids[len(s.ids):]) if s else list(ids) for ids, s in zip(prompts, starts)]
    width_s = max(len(r) for r in rests)
    n = len(prompts)
    input_ids = torch.full((n, width_c + width_s), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_c + width_s), dtype=torch.long)
    for row, (start, rest) in enumerate(zip(starts, rests)):
        if start is not None:
            input_ids[row, : len(start.ids)] = torch.tensor(start.ids, dtype=torch.long)
            attention[row, : len(start.ids)] = 1
        if rest:
            input_ids[row, width_c + width_s - len(rest):] = torch.tensor(rest, dtype=torch.long)
            attention[row, width_c + width_s - len(rest):] = 1
    cache = DynamicCache(config=config)
    distinct = {id(s): s for s in starts if s is not None}
    template = next(iter(distinct.values()))
    for layer in range(len(template.keys)):
        if len(distinct) == 1 and all(s is not None for s in starts):  # every row the same start: a broadcast view
            keys = template.keys[layer].expand(n, -1, -1, -1)
            values = template.values[layer].expand(n, -1, -1, -1)
        else:
            shape = (n, *template.keys[layer].shape[1:2], width_c, template.keys[layer].shape[-1])
            keys = template.keys[layer].new_zeros(shape)
            values = template.values[layer].new_zeros(shape[:3] + template.values[layer].shape[-1:])
            for row, start in enumerate(starts):
                if start is not None:
                    keys[row, :, : len(start.ids)] = start.keys[layer][0]
                    values[row, :, : len(start.ids)] = start.values[layer][0]
        cache.update(keys, values, layer)  # copies (cat onto an empty layer): the stored start is never written
    return input_ids.to(device), attention.to(device), cache


def _common_prefix(rows: Sequence[Sequence[int]]) -> tuple[int, ...]:
    first = rows[0]
    n = len(first)
    for row in rows[1:]:
        n = min(n, len(row))
        for i in range(n):
            if row[i] != first[i]:
                n = i
                break
    return tuple(first[:n])


def _takes(model: Any, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters
