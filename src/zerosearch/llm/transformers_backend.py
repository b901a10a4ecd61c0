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
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

from zerosearch.llm.base import Completion, Message

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
    """

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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        if model is None:
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype)
            kwargs = {"dtype": dtype} if dtype is not None else {}
            model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
            from zerosearch.policy import disable_dropout, pick_device

            disable_dropout(model)  # it only generates (in eval mode), but every loader gives the same network
            model.to(pick_device(str(device)))  # a device torch lacks is a ConfigError, not an assertion
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
        """
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
        texts: list[str] = []
        with self._rng(seed):
            for start in range(0, len(prompts), self.max_batch_size):
                chunk = prompts[start : start + self.max_batch_size]
                texts.extend(self._generate(chunk, max_tokens, temperature, tuple(stop or ())))
        return [Completion(text=text) for text in texts]

    # -- internals ---------------------------------------------------------------------------------

    def _render(self, conversation: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )
        # The template already holds any BOS the model wants; don't add another.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _generate(self, prompts: list[list[int]], max_tokens: int, temperature: float,
                  stop: tuple[str, ...] = ()) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        from zerosearch.llm.sampling import plain_generation
        from zerosearch.llm.stopping import StopOnStrings, cut_at_stop

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        # Left padding, so every row's new tokens start at the same column.
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, width - len(ids) :] = 1
        sampling: dict[str, Any]
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
        else:
            sampling = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        if self.kv_cache == "static":
            sampling["cache_implementation"] = "static"
        if stop:
            sampling["stopping_criteria"] = StoppingCriteriaList([StopOnStrings(self.tokenizer, width, stop)])
        with torch.inference_mode(), self._autocast(device), plain_generation(self.model):
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_tokens,
                pad_token_id=self._pad_id,
                eos_token_id=sorted(self._eos_ids) or None,
                **sampling,
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
