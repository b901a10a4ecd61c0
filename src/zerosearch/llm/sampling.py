"""Generate with exactly the settings we pass: a checkpoint's own ``generation_config`` sampling settings
never apply.

``transformers``' ``generate`` fills every setting the call leaves unset (``None``) from the model's
``generation_config``, which a checkpoint ships in ``generation_config.json``: Qwen2.5-Instruct sets
``repetition_penalty``, ``top_p`` and ``top_k``, others ``min_p``, ``no_repeat_ngram_size``,
``suppress_tokens`` ... Many of them are "off" only as ``None``, so no argument to ``generate`` can
turn them off. The trainer scores ``softmax(logits / T)`` (:func:`zerosearch.policy.selected_logprobs`);
a rollout sampled through any of those processors is silently off-policy, and greedy evaluation changes
too. :func:`plain_generation` swaps in a neutral config for the call, keeping only the special token ids.

The neutral config also turns off ``generate``'s automatic ``torch.compile``: on CUDA, transformers compiles
the forward pass whenever the cache is static (``kv_cache: static``). A rollout's batch and cache shapes
change every call, so that means a fresh compile per shape, and on one H200 (transformers 5.17, torch 2.11,
gradient checkpointing on) the compile itself failed inside the first ``generate``. Eager decoding with a
preallocated cache is what ``kv_cache: static`` promises; a compiled decoder is vLLM's job (``zerosearch.verl``).

Not covered: a simulator behind an OpenAI-compatible server samples as that server decides (recent vLLM
versions apply the checkpoint's generation config unless started with ``--generation-config vllm``);
its documents are not scored by the trainer, so this does not make training off-policy.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["TOKEN_ID_FIELDS", "plain_generation"]

# the only generation_config fields kept from the checkpoint: which tokens end, pad and start a sequence
TOKEN_ID_FIELDS = ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")


def _targets(model: Any) -> list[Any]:
    """The model and, for a PEFT wrapper, the model whose ``generate`` actually runs."""
    targets = [model]
    base = getattr(model, "get_base_model", None)
    if callable(base):
        inner = base()
        if inner is not model:
            targets.append(inner)
    return [m for m in targets if getattr(m, "generation_config", None) is not None]


@contextlib.contextmanager
def plain_generation(model: Any) -> Iterator[None]:
    """Within the block, ``model.generate`` sees a neutral ``generation_config`` (transformers' global
    defaults) that keeps only :data:`TOKEN_ID_FIELDS` of the checkpoint's; restored afterwards, also on
    error. Callers pass every sampling setting they want (``do_sample``, ``temperature``, ``top_k=0``,
    ``top_p=1.0``, ...) to ``generate`` itself."""
    from transformers import GenerationConfig

    saved = [(m, m.generation_config) for m in _targets(model)]
    try:
        for m, config in saved:
            neutral = GenerationConfig(**{k: getattr(config, k, None) for k in TOKEN_ID_FIELDS})
            neutral.disable_compile = True  # no automatic torch.compile on CUDA (see the module's docstring)
            m.generation_config = neutral
        yield
    finally:
        for m, config in saved:
            m.generation_config = config
