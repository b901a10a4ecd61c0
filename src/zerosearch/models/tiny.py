"""Tiny random causal LMs with a locally trained tokenizer, for tests and `configs/tiny.yaml`.

No downloads: the tokenizer is a byte-level BPE trained here with `tokenizers` on a few kilobytes of
built-in text, the model a randomly initialised Llama built from a config. The protocol tags
(``<search>``, ``</answer>``, ...) are single, *non-special* tokens so that they decode as text and a
tiny policy can learn to emit them quickly. A ChatML template makes the tiny model an "instruct" model;
pass ``chat_template=False`` for a "base" one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PROTOCOL_TAGS = [
    "<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>",
    "<information>", "</information>",
]
EOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    "the of and to in is was for on that by with as at from his her it an are were which this be or "
    "has had not but first one new also their after who have its two been they other more when into "
    "city state year world people time war film school music team river country county book album "
    "president university company history game series season born died american british french german "
    "capital answer question search query document information think reason know found result paris "
    "london berlin france england germany yes no red green blue apple banana cherry number name where "
    "what who when which how many why did does located played wrote directed released founded married"
).split()


def _training_text() -> list[str]:
    """A small deterministic corpus: the prompt templates' wording, tags, and common words."""
    here = Path(__file__).resolve().parent.parent / "prompts"
    lines: list[str] = []
    if here.is_dir():
        for path in sorted(here.glob("*.txt")):
            lines.extend(path.read_text(encoding="utf-8").splitlines())
    lines.append(" ".join(PROTOCOL_TAGS))
    for i in range(0, len(_WORDS), 7):
        lines.append(" ".join(_WORDS[i : i + 12]).capitalize() + ".")
    lines.append("Doc 1: Doc 2: Doc 3: Doc 4: Doc 5: 0 1 2 3 4 5 6 7 8 9 ? . , : ; ( ) \" '")
    return lines * 3


def build_tiny_tokenizer(vocab_size: int = 512, chat_template: bool = True):
    """Train a byte-level BPE tokenizer locally and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [EOS, PAD, IM_START, IM_END]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TAGS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    if chat_template:
        fast.chat_template = CHATML
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,  # head size 32: the smallest vLLM's CPU attention kernels accept
    max_positions: int = 4096,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Build (once) a tiny random Llama + tokenizer in ``out_dir``; returns the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from zerosearch.paths import private_tmp, publish_dir

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    tokenizer = build_tiny_tokenizer(vocab_size, chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = private_tmp(out)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish_dir(tmp, out)


def tiny_model_dir(**kwargs) -> Path:
    """The cache directory for a tiny model with these settings (built on first use).

    Keyed by everything that shapes it: the settings, the tokenizer's training text (the prompt templates
    are part of it), this module's code, and the torch and transformers versions (the random initialisation
    is theirs)."""
    from zerosearch.paths import cache_dir

    variant = "instruct" if kwargs.get("chat_template", True) else "base"
    return build_tiny_model(cache_dir() / "models" / f"tiny-{variant}-{tiny_model_key(**kwargs)}", **kwargs)


def tiny_model_key(**kwargs) -> str:
    """10 hex digits naming a tiny model's inputs (see :func:`tiny_model_dir`)."""
    import inspect
    from importlib.metadata import version

    from zerosearch.paths import file_digest

    settings = {name: p.default for name, p in inspect.signature(build_tiny_model).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings.update(kwargs)
    builder = [file_digest(__file__), version("torch"), version("transformers"), version("tokenizers")]
    content = json.dumps([settings, builder], sort_keys=True) + "\n".join(_training_text())
    return hashlib.sha256(content.encode()).hexdigest()[:10]
