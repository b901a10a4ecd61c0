"""Loading the policy (:func:`load_policy`) and computing per-token log-probs, entropies and values.

Sequences are *left*-padded ``[pad… | prompt | response]`` so that every row's response ends at the last
column. The model then only needs logits for the last ``R+1`` positions (``logits_to_keep``), where R is
the longest response in the micro-batch: for a 49k vocabulary this is most of the memory of a step.
Position ids are passed explicitly (cumsum of the attention mask), exactly as ``generate`` computes them
for left-padded batches, so the log-probs we train on are those of the distribution we sampled from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from zerosearch.config import ConfigError, LoraConfig
from zerosearch.llm.models import disable_dropout, load_causal_lm, load_tokenizer, resolve_model_path
from zerosearch.padding import left_pad
from zerosearch.runtime import pick_device, pick_dtype, resolve_autocast
from zerosearch.rl.losses import entropy_from_logits, token_logprobs
from zerosearch.shared_prefix import SharedPrefixWindow, shared_prefix_hidden


@dataclass
class LoadedPolicy:
    """A policy as :func:`load_policy` loads it: the model on its device, the tokenizer, whether prompts go through
    the chat template, and the precision it runs in (``autocast``: the dtype of mixed precision, or None)."""

    model: nn.Module | None  # None when loaded without weights (the tokenizer and the prompt encoding only)
    tokenizer: Any
    chat: bool
    device: torch.device
    dtype: torch.dtype
    autocast: torch.dtype | None

    def encode(self, prompt: str) -> list[int]:
        """The prompt's token ids as the policy reads them (:func:`encode_prompt`)."""
        return encode_prompt(self.tokenizer, prompt, self.chat)


def load_policy(model_spec: str, *, device: str | torch.device = "auto", dtype: str = "auto", autocast: str = "off",
                prompt_style: str = "auto", lora: LoraConfig | None = None, gradient_checkpointing: bool = False,
                tokenizer: Any = None, weights: bool = True) -> LoadedPolicy:
    """Load the policy ``model_spec`` names (a path, a hub id, ``zerosearch:*``): the one setup of every model
    zerosearch samples from, scores or trains (the trainer's policy and critic trunk, evaluation, simulator
    tuning's collection, the supervised fine-tuning of the warm-up and of the simulator). torchtune's
    ``_setup_model``, for this project.

    ``device`` / ``dtype`` / ``autocast``: the config's spellings (``auto`` or a name; :func:`~zerosearch.runtime.
    pick_device`, :func:`~zerosearch.runtime.pick_dtype`, :func:`~zerosearch.runtime.resolve_autocast`).
    ``prompt_style``: ``auto`` | ``chat`` | ``raw`` (:func:`use_chat_template`). The model is loaded with every
    dropout off (:func:`~zerosearch.llm.models.disable_dropout`); then gradient checkpointing, then peft LoRA
    adapters when ``lora`` is given and enabled (in that order: checkpointing must be on before LoRA wraps the
    model). ``tokenizer``: one already loaded for this model (the critic's trunk shares the policy's);
    ``weights=False``: the tokenizer and the prompt encoding only (``model`` None).

    Raises ConfigError for a device torch lacks, ``prompt_style=chat`` without a chat template and LoRA targets the
    model lacks; ModelNotFoundError for a model that is not there.
    """
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_spec)
    chat = use_chat_template(tokenizer, prompt_style)
    model = None
    if weights:
        model = load_causal_lm(model_spec, torch_device, torch_dtype)
        adapters = lora is not None and lora.enabled
        if gradient_checkpointing:
            enable_checkpointing(model, lora=adapters)
        if adapters:
            model = apply_lora(model, lora)
    return LoadedPolicy(model, tokenizer, chat, torch_device, torch_dtype, resolve_autocast(autocast, torch_device))


def enable_checkpointing(model: nn.Module, lora: bool = False) -> None:
    """Turn activation (gradient) checkpointing on, before LoRA wraps the model.

    transformers 5.24 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` (the
    old name warns and goes in v6); older releases have only the old name, so the new one is used where it
    exists. With LoRA the embeddings are frozen, and a checkpointed block whose input needs no gradient
    would give its adapters none: ``enable_input_require_grads`` makes that input need one.
    """
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    if lora:
        model.enable_input_require_grads()


def apply_lora(model: nn.Module, lora: LoraConfig) -> nn.Module:
    """``model`` with peft LoRA adapters as ``lora`` sets them. Raises ConfigError naming
    ``lora.target_modules`` when no module of the model matches them (peft's NoMatchingPeftModuleError)."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError

    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    )
    try:
        return disable_dropout(get_peft_model(model, peft_config))  # lora_dropout too, whatever it was set to
    except NoMatchingPeftModuleError as exc:
        names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                        if isinstance(module, nn.Linear)})
        raise ConfigError(f"lora.target_modules={lora.target_modules!r}: {str(exc).splitlines()[0]} (its linear "
                          f"modules: {', '.join(names[:12])}; or all-linear)") from None


def check_lora_targets(model_spec: str, lora: LoraConfig) -> None:
    """Raise ConfigError (from :func:`apply_lora`) if ``lora.target_modules`` matches no module of
    ``model_spec``, before a run directory exists: the model is built from its config on the meta device (no
    weights are read or allocated; about a second). A model that cannot be built that way is left to the
    real load to judge."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_path(model_spec)))
    except (OSError, ValueError, RuntimeError, TypeError, ImportError):  # e.g. remote code: the real load says why
        return
    apply_lora(skeleton, lora)


def frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def use_chat_template(tokenizer, prompt_style: str) -> bool:
    """``auto``: instruct models (tokenizer has a chat template) get it, base models the raw prompt."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if prompt_style == "chat" and not has_template:
        raise ConfigError("prompt_style=chat but the tokenizer has no chat template; use prompt_style=raw")
    return has_template if prompt_style == "auto" else prompt_style == "chat"


def encode_prompt(tokenizer, prompt: str, chat: bool) -> list[int]:
    """Token ids of the policy's prompt: the chat template's user turn + generation prompt, or raw."""
    if chat:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


# ---------------------------------------------------------------------------------------------
# micro-batches of (prompt, response) rows


@dataclass
class Window:
    """A left-padded micro-batch and the right-aligned response window of width R.

    input_ids, attention_mask, position_ids: [N, L]
    targets: [N, R] the response tokens (left-padded with pad id inside the window)
    response_mask: [N, R] 1 where the column holds a response token (policy *or* environment)
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    response_mask: torch.Tensor

    @property
    def width(self) -> int:
        return self.targets.shape[1]


def build_window(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> Window:
    rows = [list(p) + list(r) for p, r in zip(prompts, responses)]
    input_ids, attention = left_pad(rows, max(len(row) for row in rows), pad_id)
    targets, response_mask = left_pad(responses, max(1, max(len(r) for r in responses)), pad_id)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return Window(
        input_ids.to(device), attention.to(device), position_ids.to(device),
        targets.to(device), response_mask.to(device),
    )


def right_align(rows: Sequence[torch.Tensor], width: int, device: torch.device, fill: float = 0.0) -> torch.Tensor:
    """Stack 1-D per-trajectory tensors into [N, width], each right-aligned (matching :class:`Window`)."""
    out = torch.full((len(rows), width), fill, dtype=torch.float32)
    for i, row in enumerate(rows):
        if len(row):
            out[i, width - len(row):] = row.float()
    return out.to(device)


def unalign(matrix: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """Inverse of :func:`right_align`: per-row 1-D tensors (on CPU, float32)."""
    width = matrix.shape[1]
    return [matrix[i, width - n:].detach().float().cpu() if n else matrix.new_zeros(0).float().cpu()
            for i, n in enumerate(lengths)]


def response_logits(model: nn.Module, window: Window, temperature: float = 1.0) -> torch.Tensor:
    """Logits predicting each response-window token: [N, R, V] (float32, divided by temperature)."""
    out = model(
        input_ids=window.input_ids,
        attention_mask=window.attention_mask,
        position_ids=window.position_ids,
        logits_to_keep=window.width + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :].float()
    if temperature != 1.0 and temperature > 0:
        logits = logits / temperature
    return logits


# Architectures whose logits are exactly ``lm_head(final hidden state)``: for them the head runs only on
# the positions that are trained on. Others (logit soft-capping, logit scales) take the full forward.
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo2", "phi3", "smollm3"})


def plain_head(model: nn.Module) -> bool:
    """True when ``model``'s logits are its output embedding applied to the decoder's last hidden state."""
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) in _PLAIN_HEAD_TYPES
            and not getattr(config, "final_logit_softcapping", None)
            and callable(getattr(model, "get_decoder", None)))


@dataclass
class SelectedLogprobs:
    """Log-probs of the response-window tokens at selected positions.

    logprobs: [N, R] float32, the token's log-prob where ``select`` is True, 0 elsewhere.
    entropy: [M] float32 entropy of the (temperature-scaled) distribution at the M selected positions
        (row-major order), differentiable; ``None`` unless asked for.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None


# Logits elements computed at once by the output head (2**26 float32 = 256 MB): SmolLM2's 49k vocabulary
# takes 1,365 positions a chunk, Qwen2.5's 151k 443. Fewer selected positions than that run in one piece.
HEAD_CHUNK_ELEMENTS = 2**26


def selected_logprobs(model: nn.Module, window: Window | SharedPrefixWindow, select: torch.Tensor,
                      temperature: float = 1.0, *, entropy: bool = False, entropy_grad: bool = True,
                      chunk_elements: int = HEAD_CHUNK_ELEMENTS) -> SelectedLogprobs:
    """Log-probs of the window's tokens, computed only where ``select`` [N, R] is True.

    The loss of both the RL update and SFT lives on the policy's own tokens (``loss_mask == 1``); the
    environment's ``<information>`` blocks are often most of a response. For architectures with a plain
    head (:func:`plain_head`) the decoder runs once and the head (``hidden x vocab``, 49k wide for SmolLM2,
    151k for Qwen2.5) only on the selected positions, in chunks of ``chunk_elements // vocab`` positions
    whose logits are recomputed in the backward pass instead of kept (``torch.utils.checkpoint``): no
    ``[N, R, V]`` tensor is built, and memory for logits stays at one chunk however many tokens are trained
    on. Other models take the full :func:`response_logits` and select afterwards. The values at selected
    positions are the same either way (up to float summation order).

    ``window`` may be a :class:`~zerosearch.shared_prefix.SharedPrefixWindow` (plain heads only), whose
    rows of one prompt share that prompt's forward pass. ``entropy_grad=False`` returns the entropies
    detached (a metric only: autograd then keeps nothing of the softmax for them).

    Raises:
        ValueError: a shared-prefix window with a model without a plain head.
    """
    select = select.to(device=window.targets.device, dtype=torch.bool)
    targets = window.targets[select]
    if plain_head(model):
        if isinstance(window, SharedPrefixWindow):
            hidden = shared_prefix_hidden(model, window)
        else:
            out = model.get_decoder()(
                input_ids=window.input_ids, attention_mask=window.attention_mask,
                position_ids=window.position_ids, use_cache=False,
            )
            hidden = out.last_hidden_state[:, -(window.width + 1):-1, :]
        picked, ent = head_logprobs(model.get_output_embeddings(), hidden[select], targets, temperature,
                                    entropy=entropy, entropy_grad=entropy_grad, chunk_elements=chunk_elements)
    elif isinstance(window, SharedPrefixWindow):
        raise ValueError(f"{type(model).__name__} has no plain output head; build a full Window for it")
    else:
        logits = response_logits(model, window, temperature)[select]
        picked, ent = _logprobs_entropy(logits, targets, entropy, entropy_grad)
    logprobs = torch.zeros(window.targets.shape, dtype=torch.float32, device=picked.device)
    logprobs = logprobs.masked_scatter(select, picked)
    return SelectedLogprobs(logprobs, ent)


def head_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, *,
                  entropy: bool = False, entropy_grad: bool = True, chunk_elements: int = HEAD_CHUNK_ELEMENTS
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` [M] (and entropies, [M]) under ``head(hidden)`` [M, H], chunked over M.

    Each chunk's ``[chunk, V]`` float32 logits live only while that chunk is computed; under autograd the
    chunk is checkpointed, so the backward pass recomputes them one chunk at a time (one extra head matmul,
    only when there is more than one chunk). Liger-Kernel's fused linear cross-entropy does this in Triton
    on GPUs; this is the same idea in plain torch, so it also runs on CPU.
    """
    vocab = head.weight.shape[0]
    chunk = max(1, chunk_elements // vocab)
    if hidden.shape[0] <= chunk:
        return _head_chunk(head, hidden, targets, temperature, entropy, entropy_grad)
    from torch.utils.checkpoint import checkpoint

    grad = torch.is_grad_enabled()
    parts = [checkpoint(_head_chunk, head, h, t, temperature, entropy, entropy_grad, use_reentrant=False) if grad
             else _head_chunk(head, h, t, temperature, entropy, entropy_grad)
             for h, t in zip(hidden.split(chunk), targets.split(chunk))]
    logprobs = torch.cat([p[0] for p in parts])
    return logprobs, (torch.cat([p[1] for p in parts]) if entropy else None)


def _head_chunk(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                entropy: bool, entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits = head(hidden).float()
    if temperature != 1.0 and temperature > 0:
        logits = logits / temperature
    return _logprobs_entropy(logits, targets, entropy, entropy_grad)


def _logprobs_entropy(logits: torch.Tensor, targets: torch.Tensor, entropy: bool, entropy_grad: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not entropy:
        return token_logprobs(logits, targets), None
    return token_logprobs(logits, targets), entropy_from_logits(logits if entropy_grad else logits.detach())


class ValueModel(nn.Module):
    """A critic: a transformer trunk and a scalar head, V(prefix) at every position.

    ``trunk`` is either a separate copy of the base model (``critic=model``) or the policy itself
    (``critic=value_head``: the head reads the policy's hidden states, detached, so the value loss never
    moves the policy).
    """

    def __init__(self, trunk: nn.Module, hidden_size: int, detach_trunk: bool = False):
        super().__init__()
        self.trunk = trunk
        self.detach_trunk = detach_trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, window: Window) -> torch.Tensor:
        """Values for the states before each response-window token: [N, R] (float32)."""
        ctx = torch.no_grad() if self.detach_trunk else torch.enable_grad()
        with ctx:
            out = self.trunk(
                input_ids=window.input_ids, attention_mask=window.attention_mask,
                position_ids=window.position_ids, output_hidden_states=True, use_cache=False,
                logits_to_keep=1,
            )
            hidden = out.hidden_states[-1][:, -(window.width + 1):-1, :]
        if self.detach_trunk:
            hidden = hidden.detach()
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


def micro_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group indices so that ``len(group) * max(len in group) <= max_tokens`` (padded tokens).

    Indices are sorted by length first so rows of similar length share a micro-batch (less padding);
    a single row longer than ``max_tokens`` still forms its own micro-batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and (len(current) + 1) * new_longest > max_tokens:
            groups.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        groups.append(current)
    return groups
