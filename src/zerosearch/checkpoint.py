"""Checkpoints: everything needed to continue a run exactly where it stopped.

Layout of ``runs/<name>/checkpoints/step_<N>/``:

- ``policy/``: the policy in Hugging Face format (the full model, or the LoRA adapter).
- ``critic.pt``: the critic's state (PPO).
- ``optimizer.pt``, ``critic_optimizer.pt``, ``scheduler.pt``.
- ``state.json``: step, data-sampler position, the numpy generators (curriculum draws, minibatch order).
- ``rng.pt``: torch (CPU and CUDA), numpy-global and python ``random`` states.

A checkpoint is written into ``step_<N>.tmp`` and renamed when complete, so a run killed while saving
leaves the previous checkpoint intact; ``latest_checkpoint`` ignores ``.tmp`` directories.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINTS = "checkpoints"


def capture_rng() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointError(ValueError):
    """A checkpoint that cannot be read back (a file missing, truncated or from another model)."""


def damaged(path: Path, why: Exception | str) -> CheckpointError:
    """The error for a damaged checkpoint, naming the one before it (what removing this one resumes from)."""
    run_dir = path.parent.parent
    older = [p for p in (run_dir / CHECKPOINTS).iterdir() if p != path and p.is_dir() and (p / "state.json").exists()
             and p.name.split("_", 1)[-1].isdigit()] if (run_dir / CHECKPOINTS).is_dir() else []
    before = max(older, key=lambda p: int(p.name.split("_", 1)[1]), default=None)
    then = f"resumes from {before.name}" if before else "starts the run over"
    reason = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
    return CheckpointError(f"checkpoint {path} cannot be read back ({reason[:200]}); moving it out of "
                           f"{path.parent} {then}")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step_{step}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    steps = [
        (int(p.name.split("_", 1)[1]), p)
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("step_") and p.name.split("_", 1)[1].isdigit()
        and (p / "state.json").exists()
    ]
    return max(steps)[1] if steps else None


def begin(run_dir: Path, step: int) -> Path:
    """A fresh temporary directory to write step ``step``'s checkpoint into."""
    tmp = checkpoint_dir(run_dir, step).with_name(f"step_{step}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(run_dir: Path, tmp: Path, step: int, keep: int) -> Path:
    """Atomically publish ``tmp`` as step ``step``'s checkpoint and prune to the newest ``keep``."""
    final = checkpoint_dir(run_dir, step)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    root = run_dir / CHECKPOINTS
    done = sorted(
        (int(p.name.split("_", 1)[1]), p) for p in root.iterdir()
        if p.is_dir() and p.name.split("_", 1)[1].isdigit()
    )
    for _, old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
