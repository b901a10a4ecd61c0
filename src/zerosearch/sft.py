"""Supervised fine-tuning on token ids with a per-token loss mask: the one SFT code path.

Both supervised steps of zerosearch go through here:

* the format warm-up (:mod:`zerosearch.warmup`): demonstration trajectories built with
  :meth:`Trajectory.append <zerosearch.rollout.Trajectory.append>`, whose ``loss_mask`` is 1 on the text
  the policy would write and 0 on what the environment inserts (documents, their tags);
* simulator tuning (:mod:`zerosearch.simulator_tuning.train`): chat examples whose mask is 1 on the
  assistant reply and the template's end-of-turn tokens (:func:`chat_example`, tokenised as TRL
  tokenises prompt-completion data).

Examples arrive tokenised (:class:`SFTExample`), so the mask is the one the caller built, never
reconstructed from text. The update is the RL trainer's own machinery: left-padded windows
(:func:`~zerosearch.policy.build_window`) and log-probs computed only where the mask is 1
(:func:`~zerosearch.policy.selected_logprobs`), so the vocabulary-wide head never runs on the documents.
That is why this is not TRL's ``SFTTrainer`` (which it replaced, with the same loss): on SmolLM2-135M with
warm-up demonstrations (4 x ~520 tokens, ~77 of them trained on per example, bf16 on a 2-core CPU) the
same 32-step warm-up took 576 s with TRL and 338 s here (1.7x); ``benchmarks/speed_levers.py`` measures
the head-on-selected-positions lever side by side.

Loss: the mean negative log-likelihood over the mask-1 tokens of an optimizer step (TRL's and verl's
token mean). Dropout is off, as in the RL update (the model and its LoRA adapters come from
:func:`~zerosearch.policy.load_policy`, through :func:`~zerosearch.llm.models.disable_dropout`): the warm-up trains the policy the RL update then trains, and the
train-mode loss and the eval-mode validation loss are one network's. Hugging Face's Trainer keeps whatever
dropout a config carries; the models this project trains (SmolLM2, Qwen2.5, Llama 3) ship with 0, so for them
nothing changes. Optimiser and schedule as Hugging Face's Trainer defaults: AdamW (no weight decay), the
learning rate decaying linearly to 0, gradients clipped at norm 1. The batch order is a fixed function of
the seed, and a checkpoint holds the model, optimizer, scheduler, step and RNG, so a resumed run continues
exactly (on CPU, bit for bit).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tqdm.auto import tqdm

from zerosearch import checkpoint as ckpt
from zerosearch.config import LoraConfig, check_lora_rank_alpha
from zerosearch.policy import Window, build_window, load_policy, right_align, selected_logprobs
from zerosearch.runtime import autocast_context, pick_device

__all__ = ["SFTExample", "SFTRun", "SFTSettings", "chat_example", "end_of_turn_ids", "fitting", "load_for_sft",
           "save_merged", "train_sft"]


@dataclass(frozen=True)
class SFTExample:
    """One training sequence: ``input_ids`` [T] and ``loss_mask`` [T] (1 = trained on, 0 = context only).

    Raises ValueError when the two lengths differ, the mask holds values other than 0/1, no token is
    trained on, or the first one is (nothing predicts it).
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
        if self.loss_mask[0]:
            raise ValueError("the first token cannot be trained on: nothing before it predicts it")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def context_length(self) -> int:
        """Tokens before the first trained-on one (never predicted: no loss can sit there)."""
        return self.loss_mask.index(1)


@dataclass
class SFTSettings:
    """How to train. Defaults follow the paper's simulator tuning (lr 1e-6, batch 2), for 3B-14B models.

    ``max_steps > 0`` wins over ``epochs``; an optimizer step takes ``batch_size x grad_accum`` examples.
    ``bf16``: mixed precision (fp32 master weights, autocast); None = on a CUDA device that supports it.
    On a CPU with bf16 instructions (avx512_bf16, AMX) it pays too (see :mod:`zerosearch.runtime`).
    ``save_steps``: a checkpoint every so many steps (0 = none) in ``out_dir/checkpoints``, resumed from
    by a rerun. ``logging_steps``: the loss curve's resolution.
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
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_lora_rank_alpha("lora_r", self.lora_r, "lora_alpha", self.lora_alpha)  # a ConfigError (ValueError)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("give max_steps > 0 or epochs > 0")

    def total_steps(self, n_examples: int) -> int:
        """Optimizer steps for ``n_examples`` training examples."""
        if self.max_steps > 0:
            return self.max_steps
        per_step = self.batch_size * self.grad_accum
        return max(1, math.ceil(self.epochs * n_examples / per_step))


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


def fitting(examples: Sequence[SFTExample], max_length: int) -> tuple[list[SFTExample], int]:
    """The examples of at most ``max_length`` tokens, and how many were longer (a cut-off example would
    teach an unfinished reply, so long ones are left out rather than truncated)."""
    kept = [e for e in examples if len(e) <= max_length]
    return kept, len(examples) - len(kept)


def _window(examples: Sequence[SFTExample], pad_id: int, device: torch.device) -> tuple[Window, torch.Tensor]:
    """A left-padded window over the examples (the part from the first trained-on token is the "response")
    and its [N, R] loss mask, right-aligned like the window."""
    starts = [e.context_length for e in examples]
    window = build_window([e.input_ids[:s] for e, s in zip(examples, starts)],
                          [e.input_ids[s:] for e, s in zip(examples, starts)], pad_id, device)
    mask = right_align([torch.tensor(e.loss_mask[s:]) for e, s in zip(examples, starts)], window.width, device)
    return window, mask


# ---------------------------------------------------------------------------------------------
# training


class SFTRun:
    """A supervised run over fixed examples: step by step, with exact checkpoints.

    Args:
        model: the causal LM to train (already on ``device``; LoRA-wrapped if only adapters train).
        pad_id: the tokenizer's pad id.
        examples: the training examples (each at most ``settings.max_length`` tokens).
        settings: see :class:`SFTSettings`.
    """

    def __init__(self, model: torch.nn.Module, pad_id: int, examples: Sequence[SFTExample], settings: SFTSettings,
                 device: torch.device) -> None:
        if not examples:
            raise ValueError("no training examples")
        self.model = model
        self.pad_id = pad_id
        self.examples = list(examples)
        self.settings = settings
        self.device = device
        self.total_steps = settings.total_steps(len(self.examples))
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.autocast = torch.bfloat16 if (cuda_bf16 if settings.bf16 is None else settings.bf16) else None
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        total = self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: max(0.0, 1.0 - s / total))
        self.step = 0
        self.order = self._order()

    def _order(self) -> list[int]:
        """Example indices in the order the whole run takes them: a fresh seeded permutation per epoch."""
        per_step = self.settings.batch_size * self.settings.grad_accum
        needed = self.total_steps * per_step
        order: list[int] = []
        epoch = 0
        while len(order) < needed:
            order += np.random.default_rng([self.settings.seed, epoch]).permutation(len(self.examples)).tolist()
            epoch += 1
        return order[:needed]

    def _loss_sum(self, examples: Sequence[SFTExample]) -> tuple[torch.Tensor, int]:
        """Summed NLL of the examples' trained-on tokens (differentiable) and how many tokens that is."""
        window, mask = _window(examples, self.pad_id, self.device)
        with autocast_context(self.device, self.autocast):
            logp = selected_logprobs(self.model, window, mask).logprobs
        return -(logp * mask).sum(), int(mask.sum())

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns its loss (token mean), grad norm and learning rate."""
        s = self.settings
        per_step = s.batch_size * s.grad_accum
        batch = [self.examples[i] for i in self.order[self.step * per_step:(self.step + 1) * per_step]]
        micro = [batch[i:i + s.batch_size] for i in range(0, len(batch), s.batch_size)]
        tokens = sum(sum(e.loss_mask) for e in batch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for chunk in micro:
            loss_sum, _ = self._loss_sum(chunk)
            (loss_sum / tokens).backward()
            total += loss_sum.item()
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"step": self.step, "loss": total / tokens, "grad_norm": grad_norm, "lr": lr}

    @torch.no_grad()
    def evaluate(self, examples: Sequence[SFTExample]) -> float:
        """Mean NLL per trained-on token of ``examples`` (no update)."""
        self.model.eval()
        total, tokens = 0.0, 0
        size = self.settings.batch_size
        for start in range(0, len(examples), size):
            loss_sum, n = self._loss_sum(examples[start:start + size])
            total, tokens = total + loss_sum.item(), tokens + n
        return total / max(1, tokens)

    # -- checkpoints -------------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {name for name, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.model.state_dict().items() if k in names}

    def save(self, root: Path, log: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint in ``root/checkpoints/step_N`` (keeping only the newest); returns it. ``log``: what
        the caller has recorded so far (losses, curve...), given back by :meth:`load`."""
        tmp = ckpt.begin(root, self.step)
        torch.save(self._trainable_state(), tmp / "model.pt")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(ckpt.capture_rng(), tmp / "rng.pt")
        ckpt.write_json(tmp / "state.json", {"step": self.step, "total_steps": self.total_steps, "log": log or {}})
        return ckpt.commit(root, tmp, self.step, keep=1)

    def load(self, path: Path) -> dict[str, Any]:
        """Continue from a checkpoint written by :meth:`save` for the same examples and settings; returns the
        ``log`` saved with it (``{}`` for checkpoints written without one)."""
        state = ckpt.read_json(path / "state.json")
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"{path} was written for a {state['total_steps']}-step run, this one has "
                             f"{self.total_steps}; delete the checkpoints or restore the settings")
        missing, unexpected = self.model.load_state_dict(torch.load(path / "model.pt", weights_only=True),
                                                         strict=False)
        if unexpected:
            raise ValueError(f"{path} does not match the model: unexpected {unexpected[:5]}")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        ckpt.restore_rng(torch.load(path / "rng.pt", weights_only=False))
        self.step = int(state["step"])
        return state.get("log", {})


class NoExampleFitsError(ValueError):
    """Every training example is longer than ``max_length`` tokens (callers name their own option)."""

    def __init__(self, max_length: int, too_long: int) -> None:
        self.max_length, self.too_long = max_length, too_long
        super().__init__(f"none of the {too_long} training examples fits max_length={max_length} tokens; "
                         "raise max_length")


def save_merged(model: torch.nn.Module, tokenizer: Any, out_dir: Path, lora: bool) -> None:
    """Save the trained model (LoRA merged into the base) and tokenizer as a plain HF directory."""
    if lora:
        model = model.merge_and_unload()
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    # generate (and vLLM) stop at generation_config's EOS: make it include the end of an assistant turn
    if getattr(tokenizer, "chat_template", None):
        eos_ids += end_of_turn_ids(tokenizer)
    model.generation_config.eos_token_id = list(dict.fromkeys(eos_ids))
    model.config.use_cache = True  # inference wants the KV cache
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_for_sft(base_model: str, settings: SFTSettings, device: str | torch.device) -> tuple[torch.nn.Module, Any]:
    """The model to train (fp32 weights on CPU, the device's default dtype elsewhere; gradient checkpointing and
    LoRA as ``settings`` say) and its tokenizer, by :func:`~zerosearch.policy.load_policy`."""
    lora = LoraConfig(enabled=settings.lora, r=settings.lora_r, alpha=settings.lora_alpha)
    policy = load_policy(base_model, device=device, lora=lora, gradient_checkpointing=settings.gradient_checkpointing)
    return policy.model, policy.tokenizer


def train_sft(base_model: str, train_examples: Sequence[SFTExample], val_examples: Sequence[SFTExample],
              out_dir: str | Path, settings: SFTSettings, *, device: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the examples and save it to ``out_dir``; return what happened.

    Examples longer than ``settings.max_length`` are left out (counted in ``too_long_dropped``).
    Checkpoints go to ``out_dir/checkpoints``; a rerun resumes from the newest, and they are removed once
    the model is saved. ``out_dir`` ends up a plain Hugging Face model directory (LoRA merged) whose
    generation config also stops at the end of an assistant turn.

    Returns: ``{"train_examples", "val_examples", "too_long_dropped", "steps", "train_loss",
    "eval_loss_before", "eval_loss_after", "loss_curve", "seconds", "settings"}``: losses are mean NLL per
    trained-on token; ``train_loss`` is the mean over all steps and ``loss_curve`` holds ``[step, loss]``
    averaged over every ``logging_steps`` steps, both carried across a resume by the checkpoints (as are
    ``eval_loss_before`` and ``seconds``), so a resumed run reports what an uninterrupted one would.

    Raises :class:`NoExampleFitsError` (a ValueError) when no training example fits ``max_length``.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    train_kept, too_long = fitting(train_examples, settings.max_length)
    val_kept = fitting(val_examples, settings.max_length)[0]
    if not train_kept:
        raise NoExampleFitsError(settings.max_length, too_long)
    torch_device = pick_device(device)
    torch.manual_seed(settings.seed)
    model, tokenizer = load_for_sft(base_model, settings, torch_device)
    run = SFTRun(model, tokenizer.pad_token_id, train_kept, settings, torch_device)
    checkpoints = out / ckpt.CHECKPOINTS  # out/checkpoints/step_N, as a training run keeps them
    latest = ckpt.latest_checkpoint(out)
    # what the summary reports, saved with each checkpoint so that a resumed run reports the whole training
    log: dict[str, Any] = {"losses": [], "curve": [], "window": [], "eval_loss_before": None, "seconds": 0.0}
    if latest is not None:
        log.update(run.load(latest))
        print(f"[zerosearch] resuming fine-tuning at step {run.step}/{run.total_steps} from {latest}",
              file=sys.stderr)
    elif val_kept:
        log["eval_loss_before"] = run.evaluate(val_kept)
    losses, curve, window = log["losses"], log["curve"], log["window"]
    seconds_before = log["seconds"]
    with tqdm(total=run.total_steps, initial=run.step, desc="fine-tune", unit="step", disable=not progress,
              dynamic_ncols=True) as bar:
        while run.step < run.total_steps:
            stats = run.train_step()
            losses.append(stats["loss"])
            window.append(stats["loss"])
            if run.step % settings.logging_steps == 0 or run.step == run.total_steps:
                curve.append([run.step, float(np.mean(window))])
                window.clear()  # in place: the log saved with a checkpoint holds this list
            if settings.save_steps > 0 and run.step % settings.save_steps == 0 and run.step < run.total_steps:
                log["seconds"] = seconds_before + time.perf_counter() - started
                run.save(out, log)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
    eval_after = run.evaluate(val_kept) if val_kept else None
    save_merged(run.model, tokenizer, out, settings.lora)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {
        "train_examples": len(train_kept), "val_examples": len(val_kept), "too_long_dropped": too_long,
        "steps": run.step, "train_loss": float(np.mean(losses)) if losses else None,
        "eval_loss_before": log["eval_loss_before"], "eval_loss_after": eval_after, "loss_curve": curve,
        "seconds": seconds_before + time.perf_counter() - started,
        "settings": {**asdict(settings), "bf16": run.autocast is not None},
    }

