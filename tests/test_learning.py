"""RL must raise the reward on a task the tiny policy can learn in seconds, for every algorithm.

The task: four colour questions whose gold answer is always "blue". The starting policy (the tiny model
warmed to answer with one of four colours at random, see conftest.answerer_model) earns about 0.25; a
working policy gradient finds out which answer pays. The question-conditioned version of this task is
beyond a 2-layer 64-wide model in a minute, so it is not what we test here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import COLOR_TASK
from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.config import load_train_config
from zerosearch.trainer import Trainer

STEPS = 30


@pytest.mark.parametrize("algorithm", ["reinforce", "grpo", "rloo", "ppo"])
def test_reward_rises(algorithm, answerer_model, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": ["blue"]}) + "\n"
                          for i, q in enumerate(COLOR_TASK)))
    template = tmp_path / "template.txt"
    template.write_text(SHORT_TEMPLATE)
    cfg = load_train_config(None, [
        f"model={answerer_model}", f"train_files={qa}", f"prompt_template={template}", f"algorithm={algorithm}",
        f"total_steps={STEPS}", "prompts_per_step=4", "rollouts_per_prompt=4", "max_turns=1", "max_turn_tokens=12",
        "lr=1e-3", "critic_lr=1e-3", "warmup_ratio=0", "kl_coef=0.001", f"output_dir={tmp_path / 'run'}",
        "save_every=1000",
    ])
    trainer = Trainer(cfg, tmp_path / "run", engine=FixedDocumentsEngine(["the sky is blue"]), progress=False)
    rewards = [trainer.train_step()[0]["reward_mean"] for _ in range(STEPS)]
    first, last = np.mean(rewards[:3]), np.mean(rewards[-5:])
    print(f"{algorithm}: first 3 steps {first:.2f}, last 5 steps {last:.2f}: {np.round(rewards, 2).tolist()}")
    assert first < 0.55  # steps 2-3 already learn a little
    assert last > 0.8 and last - first > 0.35
