"""An in-process chat model: a Hugging Face causal LM driven by batched ``generate``.

Used for the simulation LLM in CPU tests and small runs (the tiny model), and wherever starting a
server is not worth it. For throughput at scale serve the model with vLLM/SGLang and use
:class:`zerosearch.llm.openai_backend.OpenAIChatModel` instead.

Reproducibility: ``generate`` samples with torch's *global* RNG. With ``seed`` set (constructor or
per call), every :meth:`TransformersChatModel.complete` call seeds a forked copy of that RNG with
``seed + k`` (``k`` = how many calls this instance has made before, unless the call passes its own
seed), so a fresh instance with the same seed, fed the same batches, reproduces the same texts on the
same hardware and library versions, and the caller's global RNG state is left untouched. Outputs also
depend on how the batch is composed (left padding changes the numerics slightly) and on
``max_batch_size``. With ``seed=None`` sampling just consumes the global RNG.

Prefix cache: a caller may name, per conversation, the text its last message begins with that other requests
share (``complete(..., prefixes=...)``; the simulated engine passes its template's text before the first
per-request field). With ``prefix_cache`` on (the default) the tokens of that shared start are run once per model
and their KV cache reused by every later request (:mod:`zerosearch.llm.prefix_cache`): the same tokens reach the
model, so greedy replies are the same as without it (checked in fp32, ``tests/test_prefix_cache.py``). It
applies with ``kv_cache="dynamic"`` and a model whose cache rows can be gathered
(:func:`zerosearch.shared_prefix.shares_cache`); otherwise every prompt is run in full.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Sequence

from zerosearch.llm.base import Completion, Message

if TYPE_CHECKING:
    from zerosearch.llm.prefix_cache import SharedStart

__all__ = ["TransformersChatModel"]


class TransformersChatModel:
    """A :class:`~zerosearch.llm.base.ChatModel` over an in-process transformers causal LM.

    Args:
        model_name_or_path: a local directory or hub id to load model and tokenizer from; may be
            omitted when both ``model`` and ``tokenizer`` are given.
        model: an already loaded causal LM (used on whatever device it is on).
        tokenizer: an already loaded tokenizer with a chat template.
        device: where a model loaded here is put ("cpu", "cuda", "cuda:1", ...).
        dtype: torch dtype (or its name, e.g. "bfloat16") for a model loaded here; default: the
            checkpoint's.
        max_batch_size: conversations per ``generate`` call; a larger batch is split into chunks.
        seed: see the module docstring; ``None`` means unseeded.
        autocast: a torch dtype (``torch.bfloat16``) to generate under autocast, or None (see
            :mod:`zerosearch.runtime`).
        kv_cache: ``"dynamic"`` or ``"static"`` (a preallocated cache per call: faster decoding on CPU).
        prefix_cache: reuse the KV cache of the shared start that ``complete(prefixes=...)`` names (see the module
            docstring); applies with ``kv_cache="dynamic"`` only.
    """

    takes_prefixes = True  # complete() accepts prefixes= (the simulated engine passes its templates' shared start)

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        device: str = "cpu",
        dtype: Any = None,
        max_batch_size: int = 32,
        seed: int | None = None,
        autocast: Any = None,
        kv_cache: str = "dynamic",
        prefix_cache: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if kv_cache not in ("dynamic", "static"):
            raise ValueError(f"kv_cache must be dynamic or static, got {kv_cache!r}")
        if model_name_or_path is None and (model is None or tokenizer is None):
            raise ValueError(
                "TransformersChatModel needs model_name_or_path, or both model= and tokenizer="
            )
        import torch

        from zerosearch.llm.models import load_causal_lm, load_tokenizer
        from zerosearch.llm.prefix_cache import PrefixCache
        from zerosearch.runtime import pick_device

        if tokenizer is None:
            tokenizer = load_tokenizer(model_name_or_path)
        if model is None:
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype)
            # dropout off, as every model zerosearch loads (it only generates, in eval mode, but one network);
            # a device torch lacks is a ConfigError, not an assertion
            model = load_causal_lm(model_name_or_path, pick_device(str(device)), dtype)
        model.eval()
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {model_name_or_path or type(model).__name__} has no chat template; "
                "a chat model needs one: use an instruct checkpoint or set tokenizer.chat_template"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.seed = seed
        self.autocast = autocast
        self.kv_cache = kv_cache
        self.prefix_cache = prefix_cache
        self.prefix_store = PrefixCache(tokenizer, self._encode)
        self.name = f"transformers:{model_name_or_path or getattr(model.config, '_name_or_path', '')}"
        self._calls = 0

        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids: set[int] = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        pad = tokenizer.pad_token_id
        if pad is None:  # many causal LMs have no pad token; EOS is the usual stand-in
            pad = next(iter(self._eos_ids), 0)
        self._pad_id: int = pad

    # -- ChatModel ---------------------------------------------------------------------------------

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        prefixes: Sequence[str | None] | None = None,
    ) -> list[Completion]:
        """Generate one reply per conversation, batched; ``temperature == 0`` is greedy.

        ``stop``: a row stops generating at the first of these strings, and its reply is cut before
        it (what an OpenAI-compatible server does with ``stop``); the batch ends when every row has
        stopped, so the saving is real only when all rows reach a stop string early.

        Sampling uses the full distribution at ``temperature``: none of the checkpoint's generation
        config settings apply (``top_k``, ``top_p``, ``repetition_penalty``, ``min_p``, ...; see
        :mod:`zerosearch.llm.sampling`), like an OpenAI-style request that only sets the temperature.
        Errors in ``generate`` (out of memory, a prompt longer than the model's context) are
        programming or capacity errors and are raised, not returned.

        ``prefixes``: [N] for each conversation, a text its last message begins with that other requests share,
        or None; its tokens' KV cache is computed once and reused (see the module docstring). Ignored with
        ``prefix_cache`` off.
        """
        if prefixes is not None and len(prefixes) != len(conversations):
            raise ValueError(f"prefixes has {len(prefixes)} entries for {len(conversations)} conversations")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        call_index = self._calls
        self._calls += 1
        if not conversations:
            return []
        if seed is None and self.seed is not None:
            seed = self.seed + call_index
        prompts = [self._render(conv) for conv in conversations]
        starts = self._shared_starts(conversations, prompts, prefixes)
        texts: list[str] = []
        with self._rng(seed):
            for start in range(0, len(prompts), self.max_batch_size):
                end = start + self.max_batch_size
                texts.extend(self._generate(prompts[start:end], max_tokens, temperature, tuple(stop or ()),
                                            starts[start:end]))
        return [Completion(text=text) for text in texts]

    # -- internals ---------------------------------------------------------------------------------

    def _render(self, conversation: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )
        return self._encode(text)

    def _encode(self, text: str) -> list[int]:
        # The template already holds any BOS the model wants; don't add another.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _shared_starts(self, conversations: Sequence[Sequence[Message]], prompts: list[list[int]],
                       prefixes: Sequence[str | None] | None) -> list[SharedStart | None]:
        """Each row's cached shared start (computed here the first time), or None where it runs in full."""
        if not (self.prefix_cache and prefixes and self.kv_cache == "dynamic"):
            return [None] * len(prompts)
        import torch

        device = next(self.model.parameters()).device
        with torch.no_grad(), self._autocast(device):  # as generate runs: the same numerics
            return self.prefix_store.starts(self.model, self.autocast, conversations, prompts, prefixes)

    def _generate(self, prompts: list[list[int]], max_tokens: int, temperature: float,
                  stop: tuple[str, ...] = (), starts: Sequence[SharedStart | None] = ()) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        from zerosearch.llm.prefix_cache import prefixed_batch
        from zerosearch.llm.sampling import plain_generation
        from zerosearch.llm.stopping import StopOnStrings, cut_at_stop
        from zerosearch.padding import left_pad
        from zerosearch.shared_prefix import cache_keyword

        device = next(self.model.parameters()).device
        cached: dict[str, Any] = {}
        if any(starts):  # shared starts from their cache, each row's own tokens after them
            input_ids, attention_mask, cache = prefixed_batch(prompts, starts, self._pad_id, self.model.config, device)
            cached = {cache_keyword(self.model): cache}
        else:  # left padding, so every row's new tokens start at the same column
            input_ids, attention_mask = left_pad(prompts, max(len(p) for p in prompts), self._pad_id)
        width = input_ids.shape[1]
        sampling: dict[str, Any]
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
        else:
            sampling = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        if self.kv_cache == "static":
            sampling["cache_implementation"] = "static"
        if stop:
            sampling["stopping_criteria"] = StoppingCriteriaList([StopOnStrings(self.tokenizer, width, stop)])
        # no_grad, not inference_mode: under inference_mode autocast does not keep its bf16 copies of the weights
        # (its cast cache), so every decode step cast all of them again (1.7x the CPU time of a SmolLM2 generate)
        with torch.no_grad(), self._autocast(device), plain_generation(self.model):
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_tokens,
                pad_token_id=self._pad_id,
                eos_token_id=sorted(self._eos_ids) or None,
                **sampling,
                **cached,
            )
        texts = []
        for row in out[:, width:].tolist():
            # Cut at the first EOS ourselves: the padding after it need not be a special token.
            for i, token in enumerate(row):
                if token in self._eos_ids:
                    row = row[:i]
                    break
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            texts.append(cut_at_stop(text, stop) if stop else text)
        return texts

    def _autocast(self, device: Any):
        from zerosearch.runtime import autocast_context

        return autocast_context(device, self.autocast)

    def _rng(self, seed: int | None):
        """A context in which the global torch RNG is seeded, restored afterwards; or a no-op."""
        if seed is None:
            return contextlib.nullcontext()
        import torch

        return _seeded(torch, seed, next(self.model.parameters()).device)


@contextlib.contextmanager
def _seeded(torch: Any, seed: int, device: Any):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
