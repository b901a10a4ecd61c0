"""configs/verl: every launch script's arguments are keys of verl's own trainer config (composed with hydra as
verl's main_ppo composes it, and checked by verl's validate_config), and the agent loop file resolves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("verl.protocol", reason="verl is not installed (bash scripts/setup.sh --with-verl)")

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from zerosearch.models.tiny import tiny_model_dir  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "verl"
SCRIPTS = sorted(p.name for p in CONFIGS.glob("qwen2.5-*.sh"))


def launch_args(script: str, **env: str) -> list[str]:
    out = subprocess.run(["bash", str(CONFIGS / script)], env={**os.environ, "DRY_RUN": "1", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def compose_verl(args: list[str]):
    import verl

    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer", "config"),
                               version_base=None):
        return compose(config_name="ppo_trainer", overrides=args)


def test_twelve_paper_settings():
    assert len(SCRIPTS) == 12  # Qwen2.5 3B/7B, base/instruct, REINFORCE/GRPO/PPO


@pytest.mark.parametrize("script", SCRIPTS)
def test_launch_arguments_are_verl_config_keys(script):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    config = compose_verl(launch_args(script, NNODES="2", GPUS_PER_NODE="8"))
    size = "7B" if "7b" in script else "3B"
    assert config.actor_rollout_ref.model.path.startswith(f"Qwen/Qwen2.5-{size}")
    assert ("Instruct" in config.actor_rollout_ref.model.path) == ("instruct" in script)
    estimator = {"reinforce": "zerosearch_reinforce", "grpo": "zerosearch_grpo", "ppo": "gae"}[script.rsplit("-", 1)[1][:-3]]
    assert config.algorithm.adv_estimator == estimator
    env = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.ZEROSEARCH_NOISE_END == ("0.75" if size == "7B" else "0.25")
    assert config.actor_rollout_ref.rollout.response_length == 4096
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "zerosearch_agent"
    if estimator.startswith("zerosearch_"):
        assert config.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook == "zerosearch.verl.advantage.register"
    # verl's own checks (batch arithmetic over 2 x 8 GPUs, ...); they load the models' configs, so the tiny
    # model stands in for Qwen (no hub here)
    tiny = tiny_model_dir()
    config = compose_verl(launch_args(script, NNODES="2", GPUS_PER_NODE="8")
                          + [f"actor_rollout_ref.model.path={tiny}", f"critic.model.path={tiny}"])
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_rloo_launch_uses_zerosearch_rloo():
    """ALGORITHM=rloo (no paper wrapper): zerosearch's RLOO estimator, registered by the Ray setup hook; the
    arguments compose with verl's config and pass its checks."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    args = launch_args("train.sh", ALGORITHM="rloo", NNODES="2", GPUS_PER_NODE="8")
    config = compose_verl(args)
    assert config.algorithm.adv_estimator == "zerosearch_rloo"
    assert config.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook == "zerosearch.verl.advantage.register"
    tiny = tiny_model_dir()
    config = compose_verl(args + [f"actor_rollout_ref.model.path={tiny}", f"critic.model.path={tiny}"])
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_agent_loop_file_resolves_the_launch_settings(monkeypatch):
    monkeypatch.setenv("ZEROSEARCH_SIMULATOR_URL", "http://sim:6001/v1")
    monkeypatch.setenv("ZEROSEARCH_NOISE_END", "0.75")
    loops = OmegaConf.to_container(OmegaConf.load(CONFIGS / "agent_loops.yaml"), resolve=True)
    train, evaluation = loops
    assert (train["name"], evaluation["name"]) == ("zerosearch_agent", "zerosearch_agent_eval")
    assert train["engine"] == "simulated:http://sim:6001/v1"
    assert train["curriculum"] == {"start": 0.0, "end": 0.75, "base": 4.0}
    assert evaluation["engine_kind"] == "real" and evaluation["engine"] == "http://127.0.0.1:8000/retrieve"
