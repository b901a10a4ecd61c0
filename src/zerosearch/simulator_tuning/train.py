"""Stage 3 of simulator tuning: train.

:func:`train` fine-tunes an instruct model on build's ``train.jsonl`` (``val.jsonl`` for the eval loss) with
TRL's ``SFTTrainer`` (loss on the assistant reply only) and saves a plain Hugging Face directory (LoRA merged)
that ``simulated:DIR`` and vLLM load, with ``simulator_tuning.json`` (settings and losses) written last.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from zerosearch.simulator_tuning.records import TUNING_INFO, PathLike, _read_jsonl

__all__ = [
    "load_sft_examples",
    "make_sft_trainer",
    "train",
]


def load_sft_examples(path: PathLike) -> list[dict[str, list[dict[str, str]]]]:
    """A ``{"messages": [...]}`` jsonl as TRL prompt-completion examples (the last message is the reply).

    TRL computes the loss on the completion only (``completion_only_loss``): the assistant reply and the
    chat template's end-of-turn tokens after it, never the system or user turns.
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


def _end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The special token(s) the chat template closes an assistant turn with (e.g. ``<|im_end|>``)."""
    marker = "\u2603zerosearch\u2603"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    suffix = text.split(marker, 1)[1]
    special = set(tokenizer.all_special_ids)
    return [i for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in special]


def _conversation_length(tokenizer: Any, example: dict[str, Any]) -> int:
    text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fitting(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], int]:
    """The examples that fit ``max_length`` tokens (a cut-off reply would teach unfinished documents)."""
    kept = [e for e in examples if _conversation_length(tokenizer, e) <= max_length]
    return kept, len(examples) - len(kept)


def make_sft_trainer(model: Any, tokenizer: Any, train_examples: list[dict[str, Any]],
                     val_examples: list[dict[str, Any]], output_dir: PathLike, *, lr: float = 1e-6,
                     max_steps: int = -1, epochs: float = 1.0, batch_size: int = 2, grad_accum: int = 1,
                     max_length: int = 1024, seed: int = 0, save_steps: int = 200,
                     gradient_checkpointing: bool = False, lora: Any = None, progress: bool = True,
                     bf16: bool | None = None) -> Any:
    """A TRL ``SFTTrainer`` with the loss on the assistant reply only (prompt-completion data).

    ``lora``: a ``peft.LoraConfig`` or None for full fine-tuning. ``max_steps > 0`` wins over ``epochs``.
    ``bf16``: bf16 mixed precision (fp32 master weights, autocast); None = on a CUDA device that supports
    it. On a CPU with bf16 instructions (avx512_bf16, AMX) it also pays: SmolLM2-135M trainer steps on
    the same 12 batches of the simulator-tuning benchmark's data, side by side on a 2-core AMD EPYC,
    took 9.6 s in fp32 and 7.3 s in bf16 (1.3x).
    """
    import torch

    try:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise ImportError(f"simulator training needs TRL ({exc}): pip install 'trl>=1.0'") from exc

    cuda = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
    # transformers 5 renamed gradient_checkpointing (still accepted, with a warning) to activation_checkpointing
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                     else "gradient_checkpointing")
    config = SFTConfig(
        output_dir=str(output_dir), learning_rate=lr, max_steps=max_steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, max_length=max_length, seed=seed, data_seed=seed,
        completion_only_loss=True, **{checkpointing: gradient_checkpointing},
        save_strategy="steps" if save_steps > 0 else "no", save_steps=max(save_steps, 1), save_total_limit=1,
        logging_steps=10, report_to=[], disable_tqdm=not progress, use_cpu=not cuda,
        bf16=(cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16, dataloader_num_workers=0,
    )
    return SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=lora,
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(val_examples) if val_examples else None,
    )


def _last_checkpoint(checkpoints: Path) -> str | None:
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def _save_merged(trainer: Any, tokenizer: Any, out_dir: Path, lora: bool) -> None:
    """Save the trained model (LoRA merged into the base) and tokenizer as a plain HF directory."""
    model = trainer.model.merge_and_unload() if lora else trainer.model
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    # generate (and vLLM) stop at generation_config's EOS: make it include the end of an assistant turn
    model.generation_config.eos_token_id = list(dict.fromkeys(eos_ids + _end_of_turn_ids(tokenizer)))
    model.config.use_cache = True  # the trainer turns the cache off for training; inference wants it
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


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

    Defaults follow the paper (lr 1e-6, batch 2, 1000 steps when neither ``max_steps`` nor ``epochs`` is
    given), which suits 3B-14B models; small models and LoRA want a larger ``lr``. Examples longer than
    ``max_length`` tokens are left out (counted). Checkpoints go to ``out_dir/checkpoints`` every
    ``save_steps`` steps; rerunning the same command resumes from the newest, and they are removed once the
    model is saved. The result in ``out_dir`` is a plain Hugging Face model directory (LoRA merged) with
    the tokenizer and chat template, whose generation config stops at the end of an assistant turn, plus
    ``simulator_tuning.json`` (settings and losses), written last. ``bf16``: see :func:`make_sft_trainer`.
    """
    if max_steps is not None and epochs is not None:
        raise ValueError("give max_steps or epochs, not both")
    if max_steps is None and epochs is None:
        max_steps = 1000
    out = Path(out_dir)
    if (out / TUNING_INFO).exists():
        raise FileExistsError(f"{out} already holds a trained simulator; choose another out_dir or delete it")
    started = time.perf_counter()
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.policy import load_causal_lm, load_tokenizer, pick_device, pick_dtype

    torch_device = pick_device(device)
    tokenizer = load_tokenizer(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{base_model} has no chat template; the simulator must be an instruct (chat) model")
    train_path = Path(dataset_dir) / "train.jsonl"
    if not train_path.is_file():
        raise FileNotFoundError(f"{train_path} not found; write the dataset with `tune-simulator build`")
    train_examples, too_long = _fitting(tokenizer, load_sft_examples(train_path), max_length)
    val_path = Path(dataset_dir) / "val.jsonl"
    val_examples = _fitting(tokenizer, load_sft_examples(val_path), max_length)[0] if val_path.exists() else []
    if not train_examples:
        raise ValueError(f"no training example fits max_length={max_length} tokens; raise max_length")
    model = load_causal_lm(base_model, torch_device, pick_dtype("auto", torch_device))
    peft_config = _lora_config(lora_r, lora_alpha) if lora else None
    checkpoints = out / "checkpoints"
    trainer = make_sft_trainer(
        model, tokenizer, train_examples, val_examples, checkpoints, lr=lr,
        max_steps=max_steps if max_steps is not None else -1, epochs=epochs or 1.0, batch_size=batch_size,
        grad_accum=grad_accum, max_length=max_length, seed=seed, save_steps=save_steps,
        gradient_checkpointing=gradient_checkpointing, lora=peft_config, progress=progress, bf16=bf16,
    )
    resume = _last_checkpoint(checkpoints)
    eval_before = trainer.evaluate()["eval_loss"] if val_examples and resume is None else None
    result = trainer.train(resume_from_checkpoint=resume)
    eval_after = trainer.evaluate()["eval_loss"] if val_examples else None
    _save_merged(trainer, tokenizer, out, lora)
    info = _tuning_info(base_model, resolve_model_path(base_model), dataset_dir, trainer, result,
                        train_examples, val_examples, too_long, eval_before, eval_after, started)
    info["settings"] = {"lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lr": lr, "max_steps": max_steps,
                        "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum,
                        "max_length": max_length, "seed": seed, "bf16": trainer.args.bf16}
    (out / TUNING_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return info


def _lora_config(r: int, alpha: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def _tuning_info(base_model: str, base_path: str, dataset_dir: PathLike, trainer: Any, result: Any,
                 train_examples: list, val_examples: list, too_long: int, eval_before: float | None,
                 eval_after: float | None, started: float) -> dict[str, Any]:
    import trl

    return {
        "base_model": base_model, "base_model_path": base_path, "dataset": str(dataset_dir),
        "train_examples": len(train_examples), "val_examples": len(val_examples),
        "too_long_dropped": too_long, "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "eval_loss_before": eval_before, "eval_loss_after": eval_after,
        "seconds": time.perf_counter() - started, "trl_version": trl.__version__,
    }
