"""Stage 3 of simulator tuning: train.

:func:`train` fine-tunes an instruct model on build's ``train.jsonl`` (``val.jsonl`` for the eval loss)
through :mod:`zerosearch.sft` (loss on the assistant reply and its end-of-turn tokens only; the same code
path as the policy's format warm-up) and saves a plain Hugging Face directory (LoRA merged) that
``simulated:DIR`` and vLLM load, with ``simulator_tuning.json`` (settings and losses) written last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zerosearch.sft import SFTExample, SFTSettings, chat_example
from zerosearch.simulator_tuning.records import TUNING_INFO, PathLike, _read_jsonl

__all__ = [
    "load_sft_examples",
    "tokenized_examples",
    "train",
]


def load_sft_examples(path: PathLike) -> list[dict[str, list[dict[str, str]]]]:
    """A ``{"messages": [...]}`` jsonl as prompt-completion examples (the last message is the reply).

    :func:`tokenized_examples` puts the loss on the completion only: the assistant reply and the chat
    template's end-of-turn tokens after it, never the system or user turns.
    """
    path = Path(path)
    examples = []
    for number, row in enumerate(_read_jsonl(path), start=1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise ValueError(f"{path}, example {number}: expected {{\"messages\": [..., "
                             "{\"role\": \"assistant\", ...}]}} ending with the assistant reply")
        examples.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return examples


def tokenized_examples(tokenizer: Any, path: PathLike) -> list[SFTExample]:
    """:func:`load_sft_examples` tokenised with the chat template, the loss on the reply (see
    :func:`zerosearch.sft.chat_example`)."""
    return [chat_example(tokenizer, e["prompt"] + e["completion"]) for e in load_sft_examples(path)]


def train(
    dataset_dir: PathLike,
    base_model: str,
    out_dir: PathLike,
    *,
    lora: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lr: float = 1e-6,
    max_steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 2,
    grad_accum: int = 1,
    max_length: int = 1024,
    seed: int = 0,
    save_steps: int = 200,
    gradient_checkpointing: bool = False,
    device: str = "auto",
    progress: bool = True,
    bf16: bool | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning of a simulator on ``build``'s ``train.jsonl`` (loss on the reply only).

    ``lora``, ``lr``, ... are :class:`zerosearch.sft.SFTSettings`.

    Defaults follow the paper (lr 1e-6, batch 2, 1000 steps when neither ``max_steps`` nor ``epochs`` is
    given), which suits 3B-14B models; small models and LoRA want a larger ``lr``. Examples longer than
    ``max_length`` tokens are left out (counted). Checkpoints go to ``out_dir/checkpoints`` every
    ``save_steps`` steps; rerunning the same command resumes from the newest, and they are removed once the
    model is saved. The result in ``out_dir`` is a plain Hugging Face model directory (LoRA merged) with
    the tokenizer and chat template, whose generation config stops at the end of an assistant turn, plus
    ``simulator_tuning.json`` (settings and losses), written last. ``bf16``: see :class:`~zerosearch.sft.SFTSettings`.
    """
    if max_steps is not None and epochs is not None:
        raise ValueError("give max_steps or epochs, not both")
    if max_steps is None and epochs is None:
        max_steps = 1000
    out = Path(out_dir)
    if (out / TUNING_INFO).exists():
        raise FileExistsError(f"{out} already holds a trained simulator; choose another out_dir or delete it")
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.policy import load_tokenizer
    from zerosearch.sft import train_sft

    tokenizer = load_tokenizer(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{base_model} has no chat template; the simulator must be an instruct (chat) model")
    train_path = Path(dataset_dir) / "train.jsonl"
    if not train_path.is_file():
        raise FileNotFoundError(f"{train_path} not found; write the dataset with `tune-simulator build`")
    val_path = Path(dataset_dir) / "val.jsonl"
    settings = SFTSettings(
        lr=lr, max_steps=max_steps if max_steps is not None else -1, epochs=epochs or 1.0, batch_size=batch_size,
        grad_accum=grad_accum, max_length=max_length, seed=seed, save_steps=save_steps,
        gradient_checkpointing=gradient_checkpointing, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, bf16=bf16,
    )
    info = train_sft(base_model, tokenized_examples(tokenizer, train_path),
                     tokenized_examples(tokenizer, val_path) if val_path.exists() else [], out, settings,
                     device=device, progress=progress)
    info = {"base_model": base_model, "base_model_path": resolve_model_path(base_model),
            "dataset": str(dataset_dir), **info}
    info["settings"] = {"lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lr": lr, "max_steps": max_steps,
                        "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum,
                        "max_length": max_length, "seed": seed, "bf16": info["settings"]["bf16"]}
    (out / TUNING_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
