"""The device the tests in tests/gpu run on, and how close two computations in one dtype must be.

The tests are marked ``gpu`` and run on CUDA. Where torch sees no CUDA device they skip (CI, a laptop),
cheaply: this module imports only torch, which the suite's conftest has imported already, and the tests
import transformers, peft and zerosearch's trainer inside their bodies.

``$ZEROSEARCH_GPU_TEST_DEVICE`` names another torch device to run them on: ``cpu`` dry-runs them here
(``ZEROSEARCH_GPU_TEST_DEVICE=cpu pytest tests/gpu``). Set to ``cuda`` (as ``benchmarks/gpu_session.py``
does on a lent GPU), a missing CUDA device fails the tests instead of skipping them, so a GPU window never
reports a clean run of nothing.
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_ENV = "ZEROSEARCH_GPU_TEST_DEVICE"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Relative error, ||a - b|| / ||b||, allowed between two computations of the same function in one dtype
# (the order of the sums and the kernels differ: a shared prompt pass against full rows, a carried cache
# against re-encoding). fp32 lands near 1e-6 (CUDA has TF32 off for matmuls unless asked); bf16 near 1e-3
# to 1e-2 (METHOD.md's ranges). A fault (a wrong position, mask or cache column) is off by O(1).
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def _device_name() -> str:
    return os.environ.get(DEVICE_ENV, "").strip() or "cuda"


def _unavailable(name: str) -> str | None:
    """Why ``name`` cannot run the tests here, or None."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        return f"${DEVICE_ENV}={name!r} is not a torch device ({exc})"
    if device.type == "cuda" and not torch.cuda.is_available():
        return (f"torch sees no CUDA device (set {DEVICE_ENV}=cpu to dry-run tests/gpu on the CPU)")
    return None


REASON = _unavailable(_device_name())
REQUIRED = bool(os.environ.get(DEVICE_ENV, "").strip())  # named explicitly: a missing device is a failure

# every test module: pytestmark = [pytest.mark.gpu, on_device]
on_device = pytest.mark.skipif(REASON is not None and not REQUIRED, reason=REASON or "")


def device() -> torch.device:
    """The device to test on; fails (rather than skips) where it was named in the environment but is absent."""
    if REASON is not None:
        pytest.fail(REASON)
    return torch.device(_device_name())


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (0 when both are zero); NaN anywhere gives NaN, which no bound passes."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    denominator = b.norm().item()
    difference = (a - b).norm().item()
    return difference / denominator if denominator else difference


def assert_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """``a`` and ``b`` agree within :data:`RELATIVE_TOLERANCE` for ``dtype``; the message gives the error."""
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)}"
    error = relative_error(a, b)
    bound = RELATIVE_TOLERANCE[dtype]
    assert error <= bound, f"{what}: relative error {error:.2e} over {bound:.0e} ({dtype})"


def synchronize(dev: torch.device) -> None:
    """Wait for the device's queued work, so that an asynchronous CUDA error surfaces in the test that made it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
