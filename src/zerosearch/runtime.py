"""How this process uses the machine: the device and dtype, torch's thread count, bf16 mixed precision on CPUs.

Device and dtype: :func:`pick_device` and :func:`pick_dtype` turn the config's ``device`` / ``dtype`` (``auto``
or a name) into torch's, for every model zerosearch loads (:func:`zerosearch.policy.load_policy`, the in-process
chat backend).

Threads: torch sizes its intra-op pool from the machine's core count, which counts cores this process
may not run on (a ``taskset``, a container's cpuset, a job scheduler's allocation). Two processes that
each spin two threads on two cores run about 7x slower each, so the count is taken from
``os.sched_getaffinity`` (and a cgroup CPU quota, where one is set) unless told otherwise.

Mixed precision: on CPUs with bf16 instructions (``avx512_bf16``, AMX) ``torch.autocast("cpu",
torch.bfloat16)`` runs the matmuls in bf16 while the weights and the optimizer stay fp32; on CPUs
without them bf16 is emulated and slower, so ``auto`` turns it on only where the instructions exist.
On CUDA, ``auto`` leaves precision to the model's dtype (bf16 weights by default there).
"""

from __future__ import annotations

import contextlib
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from zerosearch.config import AUTOCAST_CHOICES, ConfigError

__all__ = ["AUTOCAST_CHOICES", "autocast_context", "available_cpus", "configure_threads",
           "cpu_has_bf16", "pick_device", "pick_dtype", "resolve_autocast"]

THREADS_ENV = "ZEROSEARCH_NUM_THREADS"


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` quota (rounded up), or None when there is no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity set, capped by a cgroup quota if one is set."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(count, quota) if quota else count


def configure_threads(num_threads: int = 0) -> int:
    """Set torch's intra-op thread count and return it.

    ``num_threads``: > 0 is used as given; 0 means ``$ZEROSEARCH_NUM_THREADS`` if set, else
    :func:`available_cpus`. Raises ValueError for a negative count or a malformed environment value.
    """
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0 = the CPUs this process may use), got {num_threads}")
    if num_threads == 0:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise ValueError(f"${THREADS_ENV}={env!r} must be a positive integer")
            num_threads = int(env)
        else:
            num_threads = available_cpus()
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (x86 ``avx512_bf16`` or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_autocast(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``choice`` (``auto`` | ``bf16`` | ``off``) on ``device``, or None for none.

    ``auto``: bf16 on a CPU with bf16 instructions, none elsewhere (on CUDA the weights' dtype decides).
    Raises ValueError for an unknown choice.
    """
    if choice not in AUTOCAST_CHOICES:
        raise ValueError(f"autocast={choice!r} is not one of {', '.join(AUTOCAST_CHOICES)}")
    if choice == "off":
        return None
    if choice == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


@contextlib.contextmanager
def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast(device.type, dtype)`` when ``dtype`` is set, else nothing."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def adamw(params: list[torch.nn.Parameter], device: torch.device, **hyper: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``params``, fused (one kernel per parameter for the whole update) on CPU and
    CUDA, where torch has the fused kernel; the default (foreach) elsewhere.

    Same update rule and hyperparameters (``lr``, ``weight_decay``...) either way. Measured on the embedded
    default (SmolLM2-135M, 135M fp32 parameters, 2 CPU threads): 0.45 s a step foreach, 0.11 s fused
    (``benchmarks/ceilings.py`` prices the update it belongs to).
    """
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, fused=True if fused else None, **hyper)


def pick_device(spec: str = "auto") -> torch.device:
    """``auto``: the GPU if torch sees one, else the CPU; else the torch device ``spec`` names. Raises
    ConfigError for a name torch does not know and for a CUDA device that is not there (torch would fail
    later with 'Torch not compiled with CUDA enabled')."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"device={spec!r} is not a torch device (cpu, cuda, cuda:1, auto): {exc}") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):  # meta holds no data; the rest are not set up here
        raise ConfigError(f"device={spec!r}: zerosearch runs on cpu, cuda (cuda:N), mps or xpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={spec!r} but torch sees no CUDA device here; use device=cpu or device=auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={spec!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def pick_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU, fp32 elsewhere; else the dtype ``spec`` names (``float32``, ``bfloat16``,
    ``float16``: the config's checked choices)."""
    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec]
