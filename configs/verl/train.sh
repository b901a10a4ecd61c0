#!/usr/bin/env bash
# ZeroSearch on verl 0.9 (unmodified): one launch for every paper setting, chosen by environment variables.
#
#   MODEL=Qwen/Qwen2.5-3B ALGORITHM=reinforce NOISE_END=0.25 bash configs/verl/train.sh [hydra overrides...]
#
# or the wrappers beside this file (qwen2.5-3b-reinforce.sh, ...). DRY_RUN=1 prints the arguments it would
# pass to `python3 -m verl.trainer.main_ppo`, one a line, instead of running it. See configs/verl/README.md
# for the node layouts and the simulator server.
#
# Variables (default):
#   MODEL            policy: hub id or path (Qwen/Qwen2.5-3B)
#   ALGORITHM        reinforce (the paper's default: advantage = the outcome reward, zerosearch_reinforce)
#                    | grpo (zerosearch_grpo: verl's grpo without failed searches in the groups, 5 rollouts
#                    a prompt) | rloo (zerosearch_rloo: the leave-one-out baseline, likewise; not one of the
#                    paper's settings, no wrapper) | ppo (verl's gae with a critic, gamma = lam = 1)
#   NOISE_START, NOISE_END   the curriculum (0, 0.5); the paper: 3B 0 -> 0.25, 7B 0 -> 0.75
#   SIMULATOR_URL    the simulation LLM's OpenAI-compatible server (http://127.0.0.1:6001/v1)
#   SIMULATOR_MODE   finetuned (Simulation_LLM_*) | prompt (an off-the-shelf instruct model) (finetuned)
#   EVAL_ENGINE      the real engine of the validation rows (http://127.0.0.1:8000/retrieve)
#   TRAIN_FILES, VAL_FILES   zerosearch export-verl output (data/verl/train.parquet, data/verl/test.parquet)
#   NNODES, GPUS_PER_NODE    verl's share of the cluster (1, 8); ROLLOUT vllm | sglang (vllm); ROLLOUT_TP (1)
#   TOTAL_STEPS (203), EXPERIMENT (zerosearch-<model>-<algorithm>), LOGGER ('["console","wandb"]')
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-3B}"
ALGORITHM="${ALGORITHM:-reinforce}"
NOISE_START="${NOISE_START:-0.0}"
NOISE_END="${NOISE_END:-0.5}"
SIMULATOR_URL="${SIMULATOR_URL:-http://127.0.0.1:6001/v1}"
SIMULATOR_MODE="${SIMULATOR_MODE:-finetuned}"
EVAL_ENGINE="${EVAL_ENGINE:-http://127.0.0.1:8000/retrieve}"
TRAIN_FILES="${TRAIN_FILES:-data/verl/train.parquet}"
VAL_FILES="${VAL_FILES:-data/verl/test.parquet}"
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
ROLLOUT="${ROLLOUT:-vllm}"
ROLLOUT_TP="${ROLLOUT_TP:-1}"
TOTAL_STEPS="${TOTAL_STEPS:-203}"
EXPERIMENT="${EXPERIMENT:-zerosearch-$(basename "$MODEL" | tr 'A-Z' 'a-z')-$ALGORITHM}"
LOGGER="${LOGGER:-[\"console\",\"wandb\"]}"

# the paper's settings (arXiv 2505.04588; zerosearch's configs/qwen2.5-*.yaml): 64 prompts x 5 rollouts,
# lr 1e-6 with warm-up 0.95 (PPO 0.285), KL loss 0.001 low_var_kl, temperature 1, 2 search turns, top-5
# documents, 500 tokens a turn (in agent_loops.yaml), greedy validation
args=(
  algorithm.use_kl_in_reward=false
  data.train_files="$TRAIN_FILES"
  data.val_files="$VAL_FILES"
  data.train_batch_size=64
  data.max_prompt_length=1024
  data.max_response_length=4096
  data.filter_overlong_prompts=true
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.model.use_remove_padding=true
  actor_rollout_ref.model.enable_gradient_checkpointing=true
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=64
  actor_rollout_ref.actor.use_dynamic_bsz=true
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
  actor_rollout_ref.actor.use_kl_loss=true
  actor_rollout_ref.actor.kl_loss_coef=0.001
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.rollout.name="$ROLLOUT"
  actor_rollout_ref.rollout.mode=async
  actor_rollout_ref.rollout.n=5
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5
  actor_rollout_ref.rollout.agent.agent_loop_config_path="$HERE/agent_loops.yaml"
  actor_rollout_ref.rollout.agent.default_agent_loop=zerosearch_agent
  reward.custom_reward_function.path=pkg://zerosearch.verl.reward
  reward.custom_reward_function.name=compute_score
  trainer.total_training_steps="$TOTAL_STEPS"
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$GPUS_PER_NODE"
  trainer.project_name=zerosearch
  trainer.experiment_name="$EXPERIMENT"
  trainer.logger="$LOGGER"
  trainer.val_before_train=true
  trainer.test_freq=50
  trainer.save_freq=50
  # the agent loops' settings reach the Ray workers on every node as environment variables (Ray takes only
  # strings there: quoted for hydra)
  ++ray_kwargs.ray_init.runtime_env.env_vars.ZEROSEARCH_SIMULATOR_URL="'$SIMULATOR_URL'"
  ++ray_kwargs.ray_init.runtime_env.env_vars.ZEROSEARCH_SIMULATOR_MODE="'$SIMULATOR_MODE'"
  ++ray_kwargs.ray_init.runtime_env.env_vars.ZEROSEARCH_NOISE_START="'$NOISE_START'"
  ++ray_kwargs.ray_init.runtime_env.env_vars.ZEROSEARCH_NOISE_END="'$NOISE_END'"
  ++ray_kwargs.ray_init.runtime_env.env_vars.ZEROSEARCH_EVAL_ENGINE="'$EVAL_ENGINE'"
)
case "$ALGORITHM" in
  reinforce)
    # verl has no raw-reward estimator: zerosearch registers one, in every Ray worker process
    args+=(algorithm.adv_estimator=zerosearch_reinforce actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.95
           ++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=zerosearch.verl.advantage.register) ;;
  grpo)
    # zerosearch's GRPO: verl's, but a failed search stays out of its group's mean and std
    args+=(algorithm.adv_estimator=zerosearch_grpo actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.95
           ++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=zerosearch.verl.advantage.register) ;;
  rloo)
    # zerosearch's RLOO: verl's rloo, but a failed search stays out of its group's baseline
    args+=(algorithm.adv_estimator=zerosearch_rloo actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.95
           ++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=zerosearch.verl.advantage.register) ;;
  ppo)
    args+=(algorithm.adv_estimator=gae algorithm.gamma=1.0 algorithm.lam=1.0
           actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.285
           critic.model.path="$MODEL" critic.optim.lr=1e-5 critic.model.enable_gradient_checkpointing=true
           critic.ppo_max_token_len_per_gpu=32768) ;;
  *) echo "ALGORITHM must be reinforce, grpo, rloo or ppo, got '$ALGORITHM'" >&2; exit 2 ;;
esac
args+=("$@")

if [ "${DRY_RUN:-0}" = "1" ]; then
  printf '%s\n' "${args[@]}"
  exit 0
fi
exec python3 -m verl.trainer.main_ppo "${args[@]}"
