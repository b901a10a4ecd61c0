#!/usr/bin/env bash
# The paper's grpo on Qwen/Qwen2.5-3B (curriculum 0 -> 0.25), on verl: see configs/verl/README.md.
MODEL="${MODEL:-Qwen/Qwen2.5-3B}" ALGORITHM=grpo NOISE_END="${NOISE_END:-0.25}" \
  exec bash "$(dirname "${BASH_SOURCE[0]}")/train.sh" "$@"
