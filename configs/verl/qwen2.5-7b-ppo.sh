#!/usr/bin/env bash
# The paper's ppo on Qwen/Qwen2.5-7B (curriculum 0 -> 0.75), on verl: see configs/verl/README.md.
MODEL="${MODEL:-Qwen/Qwen2.5-7B}" ALGORITHM=ppo NOISE_END="${NOISE_END:-0.75}" \
  exec bash "$(dirname "${BASH_SOURCE[0]}")/train.sh" "$@"
