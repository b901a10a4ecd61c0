"""Supervised fine-tuning on token ids with a per-token loss mask: the one SFT code path.

Both supervised steps of zerosearch go through here:

* the format warm-up (:mod:`zerosearch.warmup`): demonstration trajectories built with
  :meth:`Trajectory.append <zerosearch.rollout.Trajectory.append>`, whose ``loss_mask`` is 1 on the text
  the policy would write and 0 on what the environment inserts (documents, their tags);
* simulator tuning (:mod:`zerosearch.simulator_tuning.train`): chat examples whose mask is 1 on the
  assistant reply and the template's end-of-turn tokens (:func:`chat_example`).

Examples arrive already tokenised (:class:`SFTExample`), so the mask is the one the caller built, never
reconstructed from text. They are trained with TRL's ``SFTTrainer``, which takes pre-tokenised rows with a
``completion_mask`` and puts the loss (mean over the masked-in tokens of a batch) on those tokens only.
The result is saved as a plain Hugging Face directory (LoRA merged) that anything taking a model path
loads: the trainer, ``eval``, ``simulated:DIR``, vLLM.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["SFTExample", "SFTSettings", "chat_example", "end_of_turn_ids", "make_sft_trainer", "train_sft"]


@dataclass(frozen=True)
class SFTExample:
    """One training sequence: ``input_ids`` [T] and ``loss_mask`` [T] (1 = trained on, 0 = context only).

    Raises ValueError when the two lengths differ, the mask holds values other than 0/1, or no token is
    trained on.
    """

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_ids", tuple(int(i) for i in self.input_ids))
        object.__setattr__(self, "loss_mask", tuple(int(m) for m in self.loss_mask))
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(f"input_ids has {len(self.input_ids)} tokens but loss_mask {len(self.loss_mask)}")
        if set(self.loss_mask) - {0, 1}:
            raise ValueError("loss_mask must hold only 0 and 1")
        if 1 not in self.loss_mask:
            raise ValueError("an SFT example must have at least one token to train on (loss_mask all 0)")

    def __len__(self) -> int:
        return len(self.input_ids)

    def to_row(self) -> dict[str, list[int]]:
        """The row TRL reads: ``input_ids`` and ``completion_mask`` (its name for the loss mask)."""
        return {"input_ids": list(self.input_ids), "completion_mask": list(self.loss_mask)}


@dataclass
class SFTSettings:
    """How to train. Defaults follow the paper's simulator tuning (lr 1e-6, batch 2), for 3B-14B models.

    ``max_steps > 0`` wins over ``epochs``. ``bf16``: mixed precision (fp32 master weights, autocast);
    None = on a CUDA device that supports it. On a CPU with bf16 instructions (avx512_bf16, AMX) it pays
    too: SmolLM2-135M trainer steps on the same 12 batches of the simulator-tuning benchmark's data, side
    by side on a 2-core AMD EPYC, took 9.6 s in fp32 and 7.3 s in bf16 (1.3x). ``save_steps``: a
    checkpoint every so many steps (0 = none) in ``out_dir/checkpoints``, resumed from by a rerun.
    """

    lr: float = 1e-6
    max_steps: int = -1
    epochs: float = 1.0
    batch_size: int = 2
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = 0
    save_steps: int = 200
    gradient_checkpointing: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool | None = None
    logging_steps: int = 10

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("give max_steps > 0 or epochs > 0")


# ---------------------------------------------------------------------------------------------
# examples


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The special token(s) the chat template closes an assistant turn with (e.g. ``<|im_end|>``)."""
    marker = "\u2603zerosearch\u2603"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    suffix = text.split(marker, 1)[1]
    special = set(tokenizer.all_special_ids)
    return [i for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in special]


def _template_ids(tokenizer: Any, messages: Sequence[dict[str, str]], **kwargs: Any) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, **kwargs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_example(tokenizer: Any, messages: Sequence[dict[str, str]]) -> SFTExample:
    """A chat conversation whose last message is the reply to learn: loss on the reply and the template's
    end-of-turn tokens, never on the system or user turns.

    Tokenised as TRL tokenises prompt-completion data: the prompt with the generation prompt, the whole
    conversation, and the mask starting where the two first differ.
    """
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError("a chat example must end with the assistant reply to learn")
    prompt = _template_ids(tokenizer, messages[:-1], add_generation_prompt=True)
    full = _template_ids(tokenizer, messages)
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    return SFTExample(full, [0] * start + [1] * (len(full) - start))


# ---------------------------------------------------------------------------------------------
# training


def make_sft_trainer(model: Any, tokenizer: Any, train_examples: Sequence[SFTExample],
                     val_examples: Sequence[SFTExample], output_dir: str | Path, settings: SFTSettings,
                     progress: bool = True) -> Any:
    """A TRL ``SFTTrainer`` over pre-tokenised examples, the loss on ``loss_mask == 1`` tokens only.

    ``settings.lora``: LoRA adapters (r, alpha from settings, all linear layers) instead of all weights.
    Raises ImportError (saying what to install) when TRL or datasets is missing.
    """
    import torch

    try:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise ImportError(f"supervised fine-tuning needs TRL ({exc}): pip install 'trl>=1.0' datasets") from exc

    cuda = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
    # transformers 5 renamed gradient_checkpointing (still accepted, with a warning) to activation_checkpointing
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                     else "gradient_checkpointing")
    s = settings
    config = SFTConfig(
        output_dir=str(output_dir), learning_rate=s.lr, max_steps=s.max_steps, num_train_epochs=s.epochs,
        per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum, max_length=s.max_length, seed=s.seed, data_seed=s.seed,
        completion_only_loss=True, **{checkpointing: s.gradient_checkpointing},
        save_strategy="steps" if s.save_steps > 0 else "no", save_steps=max(s.save_steps, 1), save_total_limit=1,
        logging_steps=s.logging_steps, report_to=[], disable_tqdm=not progress, use_cpu=not cuda,
        bf16=(cuda and torch.cuda.is_bf16_supported()) if s.bf16 is None else s.bf16, dataloader_num_workers=0,
    )
    lora = None
    if s.lora:
        from peft import LoraConfig

        lora = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM")
    return SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=lora,
        train_dataset=Dataset.from_list([e.to_row() for e in train_examples]),
        eval_dataset=Dataset.from_list([e.to_row() for e in val_examples]) if val_examples else None,
    )


def _last_checkpoint(checkpoints: Path) -> str | None:
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def save_merged(trainer: Any, tokenizer: Any, out_dir: Path, lora: bool) -> None:
    """Save the trained model (LoRA merged into the base) and tokenizer as a plain HF directory."""
    model = trainer.model.merge_and_unload() if lora else trainer.model
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    # generate (and vLLM) stop at generation_config's EOS: make it include the end of an assistant turn
    if getattr(tokenizer, "chat_template", None):
        eos_ids += end_of_turn_ids(tokenizer)
    model.generation_config.eos_token_id = list(dict.fromkeys(eos_ids))
    model.config.use_cache = True  # the trainer turns the cache off for training; inference wants it
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def fitting(examples: Sequence[SFTExample], max_length: int) -> tuple[list[SFTExample], int]:
    """The examples of at most ``max_length`` tokens, and how many were longer (a cut-off example would
    teach an unfinished reply, so long ones are left out rather than truncated)."""
    kept = [e for e in examples if len(e) <= max_length]
    return kept, len(examples) - len(kept)


def train_sft(base_model: str, train_examples: Sequence[SFTExample], val_examples: Sequence[SFTExample],
              out_dir: str | Path, settings: SFTSettings, *, device: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the examples and save it to ``out_dir``; return what happened.

    Examples longer than ``settings.max_length`` are left out (counted in ``too_long_dropped``).
    Checkpoints go to ``out_dir/checkpoints``; a rerun resumes from the newest, and they are removed once
    the model is saved. ``out_dir`` ends up a plain Hugging Face model directory (LoRA merged) whose
    generation config also stops at the end of an assistant turn.

    Returns: ``{"train_examples", "val_examples", "too_long_dropped", "steps", "train_loss",
    "eval_loss_before", "eval_loss_after", "seconds", "trl_version", "settings"}`` (losses are the mean
    token NLL over the masked-in tokens; ``eval_loss_before`` is None on a resumed run).

    Raises ValueError when no training example fits ``max_length``.
    """
    import trl

    from zerosearch.policy import load_causal_lm, load_tokenizer, pick_device, pick_dtype

    started = time.perf_counter()
    out = Path(out_dir)
    train_kept, too_long = fitting(train_examples, settings.max_length)
    val_kept = fitting(val_examples, settings.max_length)[0]
    if not train_kept:
        raise ValueError(f"no training example fits max_length={settings.max_length} tokens; raise max_length")
    torch_device = pick_device(device)
    tokenizer = load_tokenizer(base_model)
    model = load_causal_lm(base_model, torch_device, pick_dtype("auto", torch_device))
    checkpoints = out / "checkpoints"
    trainer = make_sft_trainer(model, tokenizer, train_kept, val_kept, checkpoints, settings, progress=progress)
    resume = _last_checkpoint(checkpoints)
    eval_before = trainer.evaluate()["eval_loss"] if val_kept and resume is None else None
    result = trainer.train(resume_from_checkpoint=resume)
    eval_after = trainer.evaluate()["eval_loss"] if val_kept else None
    save_merged(trainer, tokenizer, out, settings.lora)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {
        "train_examples": len(train_kept), "val_examples": len(val_kept), "too_long_dropped": too_long,
        "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "eval_loss_before": eval_before, "eval_loss_after": eval_after,
        "seconds": time.perf_counter() - started, "trl_version": trl.__version__,
        "settings": {**asdict(settings), "bf16": trainer.args.bf16},
    }
