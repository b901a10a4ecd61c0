"""Stage 3 of simulator tuning: train.

:func:`train` fine-tunes an instruct model on build's ``train.jsonl`` (``val.jsonl`` for the eval loss)
through :mod:`zerosearch.sft` (loss on the assistant reply and its end-of-turn tokens only; the same code
path as the policy's format warm-up) and saves a plain Hugging Face directory (LoRA merged) that
``simulated:DIR`` and vLLM load, with ``simulator_tuning.json`` (settings and losses) written last.
A rerun resumes from the newest checkpoint (the summary then still covers the whole training: the losses
travel with the checkpoints), unless the settings changed: ``checkpoints/run.json`` records them.
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

RUN_FILE = "run.json"  # in OUT_DIR/checkpoints: the settings of the run the checkpoints belong to

# The options that shape the training, by the settings' names: a resume with any of them changed is refused.
# Left out: --save-steps, --gradient-checkpointing, --bf16, --device (how, not what, it trains).
RUN_OPTIONS = {
    "base_model": "--base-model", "dataset": "--dataset", "lora": "--lora", "lora_r": "--lora-r",
    "lora_alpha": "--lora-alpha", "lr": "--lr", "max_steps": "--max-steps", "epochs": "--epochs",
    "batch_size": "--batch-size", "grad_accum": "--grad-accum", "max_length": "--max-length", "seed": "--seed",
}


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
    _check_length(max_steps, epochs)
    if max_steps is None and epochs is None:
        max_steps = 1000
    out = Path(out_dir)
    if (out / TUNING_INFO).exists():
        raise FileExistsError(f"{out} already holds a trained simulator; pass another --out-dir or delete it")
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.llm.models import load_tokenizer
    from zerosearch.sft import NoExampleFitsError, train_sft

    run_key = {"base_model": base_model, "dataset": str(Path(dataset_dir).resolve()), "lora": lora,
               "lora_r": lora_r, "lora_alpha": lora_alpha, "lr": lr, "max_steps": max_steps, "epochs": epochs,
               "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length, "seed": seed}
    resumed_at = _check_resume(out / "checkpoints", run_key)  # before any model loads: a mismatch is said at once
    tokenizer = load_tokenizer(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"--base-model {base_model} has no chat template; the simulator must be an instruct "
                         "(chat) model")
    train_path = Path(dataset_dir) / "train.jsonl"
    if not train_path.is_file():
        raise FileNotFoundError(f"{train_path} not found; write the dataset with `tune-simulator build`")
    val_path = Path(dataset_dir) / "val.jsonl"
    settings = SFTSettings(
        lr=lr, max_steps=max_steps if max_steps is not None else -1, epochs=epochs or 1.0, batch_size=batch_size,
        grad_accum=grad_accum, max_length=max_length, seed=seed, save_steps=save_steps,
        gradient_checkpointing=gradient_checkpointing, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, bf16=bf16,
    )
    _record_run(out / "checkpoints", run_key)
    try:
        info = train_sft(base_model, tokenized_examples(tokenizer, train_path),
                         tokenized_examples(tokenizer, val_path) if val_path.exists() else [], out, settings,
                         device=device, progress=progress)
    except NoExampleFitsError as exc:
        raise ValueError(f"none of the {exc.too_long} training examples fits --max-length {exc.max_length} "
                         "tokens; raise --max-length") from None
    info = {"base_model": base_model, "base_model_path": resolve_model_path(base_model),
            "dataset": str(dataset_dir), **info, "resumed_at_step": resumed_at}
    info["settings"] = {"lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lr": lr, "max_steps": max_steps,
                        "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum,
                        "max_length": max_length, "seed": seed, "bf16": info["settings"]["bf16"]}
    (out / TUNING_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _check_length(max_steps: int | None, epochs: float | None) -> None:
    """How long to train: ``max_steps`` >= 1 or ``epochs`` > 0, not both (SFTSettings reads a step count of
    0 or less as "use the epochs", which would train a whole epoch for --max-steps 0)."""
    if max_steps is not None and epochs is not None:
        raise ValueError("give --max-steps or --epochs, not both")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    if epochs is not None and not epochs > 0:
        raise ValueError(f"--epochs must be > 0, got {epochs}")


def _check_resume(checkpoints: Path, run_key: dict[str, Any]) -> int | None:
    """The step the checkpoints in ``checkpoints`` resume from (None: a fresh start).

    Raises ValueError, naming the options, when they belong to a run with other settings (``run_key``
    differs from the one :func:`_record_run` wrote); checkpoints from before the settings were recorded
    are resumed as they are.
    """
    from zerosearch.checkpoint import latest_checkpoint

    newest = latest_checkpoint(checkpoints.parent)  # zerosearch.sft keeps them in OUT_DIR/checkpoints/step_N
    path = checkpoints / RUN_FILE
    if newest is not None and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in RUN_OPTIONS if old.get(k) != run_key.get(k)]
        if changed:
            details = "; ".join(f"{RUN_OPTIONS[k]}: {old.get(k)} there, {run_key.get(k)} now" for k in changed)
            raise ValueError(f"{checkpoints} holds an interrupted run with other settings ({details}); rerun "
                             f"with its settings to resume it, or delete {checkpoints} to start over (or pass "
                             "another --out-dir)")
    return None if newest is None else int(newest.name.split("_", 1)[1])


def _record_run(checkpoints: Path, run_key: dict[str, Any]) -> None:
    """Record the settings next to the checkpoints about to be written (removed with them at the end)."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / RUN_FILE).write_text(json.dumps(run_key, indent=2) + "\n", encoding="utf-8")
