#!/usr/bin/env bash
# Install verl (0.9.x, from PyPI, unmodified) and zerosearch (editable) into their own virtualenv
# (default <repo>/.venv-verl), idempotently. `bash scripts/setup.sh --with-verl` runs this.
#
# verl pins transformers <5.11 and numpy/pyarrow versions of its own, so it does not go into .venv.
# What goes in, and why:
#   torch            the CPU build 2.13.0 on a machine without CUDA (pip.conf's find-links has its wheel),
#                    passed again with every later install so that nothing resolves another torch
#                    (verl's [vllm]/[sglang]/[fsdp] extras pin torch 2.11 with CUDA: not installed here);
#   zerosearch[verl] verl[verl-core] (what verl's agent loop module imports: cachetools, ...), editable;
#   pytest           for tests/verl.
# Then torchcodec is uninstalled: verl-core pulls it from PyPI built for another torch, its native library
#   fails to load ("Could not load this library: .../libtorchcodec_image.so"), and transformers imports
#   it when present; text-only models never need it.
# No vLLM or SGLang: the tests drive verl's AgentLoopWorker with an in-process server. A GPU run needs
# `pip install "verl[vllm]==0.9.1"` (or [sglang]) instead; see configs/verl/README.md.
# Measured: about 1.5 min from an empty pip cache on a loaded 2-core machine.
#
# Environment: VERL_VENV (default <repo>/.venv-verl), PYTHON (default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VERL_VENV:-$REPO/.venv-verl}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "[setup] installing torch (CUDA) into $VENV"; pip install -q torch
  else
    echo "[setup] installing torch 2.13.0 (CPU build) into $VENV"; pip install -q torch==2.13.0
  fi
fi
TORCH="torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "[setup] installing verl and zerosearch[verl] into $VENV (keeping $TORCH)"
pip install -q -e "$REPO[verl]" pytest "$TORCH"
pip uninstall -q -y torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import verl, zerosearch.verl.agent_loop; print('[setup] verl', verl.__version__, 'ready in $VENV')"
echo "[setup] verl venv took $(( SECONDS - start )) s"
