"""Kill-and-resume equals uninterrupted: same metrics (apart from timings), same final weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zerosearch.config import load_train_config
from zerosearch.trainer import resume_run, start_run

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
TIMINGS = {"rollout_seconds", "search_seconds", "generate_seconds", "update_seconds", "step_seconds"}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"step_{step}" / "policy" / "model.safetensors")


def _assert_same_run(a: Path, b: Path, steps: int) -> None:
    assert _metrics(a) == _metrics(b)
    wa, wb = _weights(a, steps), _weights(b, steps)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ra = (a / "rollouts" / f"step_{steps}.jsonl").read_text()
    assert ra == (b / "rollouts" / f"step_{steps}.jsonl").read_text()


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_interrupted_and_resumed_equals_uninterrupted(algorithm, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    common = [f"algorithm={algorithm}", "total_steps=4", "prompts_per_step=2", "rollouts_per_prompt=2"]
    full = tmp_path / "full"
    start_run(load_train_config(TINY, common + [f"output_dir={full}"]), progress=False).train()

    cut = tmp_path / "cut"
    trainer = start_run(load_train_config(TINY, common + [f"output_dir={cut}"]), progress=False)
    real_step = trainer.train_step

    def dies_in_step_3():
        if trainer.step == 2:
            real_step()  # step 3 runs, and the process "dies" before it is logged or saved
            raise KeyboardInterrupt
        return real_step()

    trainer.train_step = dies_in_step_3
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert [r["step"] for r in _metrics(cut)] == [1, 2]
    resumed = resume_run(cut, progress=False)
    assert resumed.step == 2
    resumed.train()
    _assert_same_run(full, cut, 4)


def test_dynamic_sampling_resumes_exactly(tmp_path, monkeypatch, answerer_model):
    """drop_uniform_groups draws a varying number of rounds, prompts and noise flags per step; the sampler,
    the noise generator and the torch RNG saved after each step make a resumed run draw exactly what the
    uninterrupted one did. "purple" questions are never answered right (uniform groups, always dropped)."""
    from support import SHORT_TEMPLATE, FixedDocumentsEngine

    questions = ["what colour is the sky", "what colour is grass", "what colour is an apple", "what colour is a banana"]
    qa = tmp_path / "qa.jsonl"
    rows = [(q, "blue") for q in questions] + [(q.replace("what", "which"), "purple") for q in questions]
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a]}) + "\n"
                          for i, (q, a) in enumerate(rows)))
    template = tmp_path / "template.txt"
    template.write_text(SHORT_TEMPLATE)
    common = [f"model={answerer_model}", f"train_files={qa}", f"prompt_template={template}", "algorithm=rloo",
              "drop_uniform_groups=true", "max_sampling_rounds=3", "prompts_per_step=2", "rollouts_per_prompt=3",
              "max_turns=1", "max_turn_tokens=12", "total_steps=4", "lr=1e-3", "warmup_ratio=0", "log_rollouts=100",
              "report=false"]

    def engine():
        return FixedDocumentsEngine(["the sky is blue"])

    full = tmp_path / "full"
    start_run(load_train_config(None, common + [f"output_dir={full}"]), engine=engine(), progress=False).train()
    rows = _metrics(full)
    assert any(r["groups_dropped"] for r in rows) and any(r["sampling_rounds"] > 1 for r in rows)
    assert any(r["groups_trained"] for r in rows)

    cut = tmp_path / "cut"
    trainer = start_run(load_train_config(None, common + [f"output_dir={cut}"]), engine=engine(), progress=False)
    real_step = trainer.train_step

    def dies_in_step_3():
        if trainer.step == 2:
            real_step()
            raise KeyboardInterrupt
        return real_step()

    trainer.train_step = dies_in_step_3
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    resumed = resume_run(cut, engine=engine(), progress=False)
    assert resumed.step == 2
    resumed.train()
    _assert_same_run(full, cut, 4)
    for step in (1, 2, 3):
        assert (full / "rollouts" / f"step_{step}.jsonl").read_text() == (cut / "rollouts" / f"step_{step}.jsonl").read_text()


def test_resume_overrides_change_only_what_a_resumed_run_can_honour(tmp_path, monkeypatch):
    """--resume with lr, algorithm, lora, seed or output_dir changed is refused before anything loads (the
    checkpoint's optimizer would silently keep the old lr; a PPO resume of a REINFORCE run found no critic),
    naming the way on; total_steps below the steps done is refused; total_steps up, logging and speed
    settings go through, are reported and saved."""
    from zerosearch.config import ConfigError

    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    start_run(load_train_config(TINY, ["total_steps=2", f"output_dir={run}"]), progress=False).train()
    saved = (run / "config.yaml").read_text()
    for overrides, message in [
        (["lr=0.5", "seed=3"], r"^lr \(0\.0001 -> 0\.5\), seed \(0 -> 3\): cannot change when .* resumes"),
        (["algorithm=ppo"], r"algorithm \('reinforce' -> 'ppo'\): cannot change"),
        (["lora.enabled=true"], r"lora\.enabled \(False -> True\): cannot change"),
        (["output_dir=/tmp/elsewhere"], r"output_dir and run_name cannot change"),
        (["total_steps=1"], r"total_steps=1 is below the 2 steps"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            resume_run(run, overrides, progress=False)
        assert (run / "config.yaml").read_text() == saved  # nothing written
    with pytest.raises(ConfigError) as caught:
        resume_run(run, ["lr=0.5"], progress=False)
    assert str(caught.value).endswith(f"zerosearch train {run / 'config.yaml'} model="
                                      f"{run / 'checkpoints' / 'step_2' / 'policy'} warmup.enabled=false "
                                      "output_dir=NEW_DIR lr=...")
    trainer = resume_run(run, ["total_steps=3", "log_rollouts=1", "micro_batch_tokens=2048"], progress=False)
    assert trainer.resume_changes == {"total_steps": (2, 3), "log_rollouts": (4, 1),
                                      "micro_batch_tokens": (4096, 2048)}
    assert load_train_config(run / "config.yaml").total_steps == 3
    trainer.train()
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3]


def test_resume_checks_config_yaml_edits_damaged_checkpoints_and_the_working_directory(tmp_path, monkeypatch,
                                                                                      capsys):
    """A resume is checked against what the newest checkpoint recorded, so an edit of config.yaml is refused
    like an override; a damaged newest checkpoint is one line naming the one before it; the data files are
    stored absolute, so the run resumes from any directory; the engine may move, not change kind."""
    from zerosearch.checkpoint import CheckpointError
    from zerosearch.cli import main
    from zerosearch.config import ConfigError

    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    start_run(load_train_config(TINY, ["total_steps=2", f"output_dir={run}"]), progress=False).train()
    saved = (run / "config.yaml").read_text()
    assert Path(load_train_config(run / "config.yaml").train_files[0]).is_absolute()
    (run / "config.yaml").write_text(saved.replace("algorithm: reinforce", "algorithm: grpo"))
    with pytest.raises(ConfigError, match=r"algorithm \('reinforce' -> 'grpo'\): cannot change .* an edit of its "
                                          r"config\.yaml"):
        resume_run(run, ["total_steps=3"], progress=False)
    (run / "config.yaml").write_text(saved)
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative train_files of configs/tiny.yaml still resolve
    relative = Path(load_train_config(TINY).train_files[0])
    same = str(REPO / relative)
    assert resume_run(run, [f"train_files={same}"], progress=False).resume_changes == {}
    (run / "checkpoints" / "step_2" / "state.json").write_text("")
    assert main(["train", "--resume", str(run), "total_steps=3", "--no-progress"]) == 2
    assert f"checkpoint {run / 'checkpoints' / 'step_2'} cannot be read back" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="moving it out of .* resumes from step_1"):
        resume_run(run, ["total_steps=3"], progress=False)
    (run / "checkpoints" / "step_2" / "state.json").unlink()  # step_1 is the newest readable one now
    (run / "checkpoints" / "step_1" / "policy" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="step_1 cannot be read back"):
        resume_run(run, ["total_steps=3"], progress=False)


def test_resume_may_move_the_engine_not_change_its_kind(tmp_path, monkeypatch):
    from zerosearch.config import ConfigError
    from zerosearch.trainer import check_resume_changes

    ok = {"engine.spec": ("http://a:8000/retrieve", "retrieval:http://b:9000/retrieve")}
    check_resume_changes(ok, tmp_path, 2)
    with pytest.raises(ConfigError, match="not change it for another kind"):
        check_resume_changes({"engine.spec": ("http://a:8000/retrieve", "example")}, tmp_path, 2)


@pytest.mark.integration
def test_sigkill_then_resume_from_the_command_line(tmp_path):
    """A real `kill -9` of `zerosearch train` at an arbitrary moment, then `--resume`."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    args = ["total_steps=6", "prompts_per_step=2", "rollouts_per_prompt=2"]
    cli = [sys.executable, "-m", "zerosearch.cli", "train"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(cli + [str(TINY), *args, f"output_dir={full}", "--no-progress"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    proc = subprocess.Popen(cli + [str(TINY), *args, f"output_dir={cut}", "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    seen: dict[int, float] = {}  # step -> when its checkpoint was first seen
    while 2 not in seen:
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        for step in (1, 2):
            if step not in seen and (cut / "checkpoints" / f"step_{step}" / "state.json").exists():
                seen[step] = time.time()
        time.sleep(0.01)
    # halfway through step 3 (or its checkpoint), by this machine's own pace rather than a fixed delay,
    # which a fast machine could overrun to the end of the run
    time.sleep(0.5 * (seen[2] - seen.get(1, seen[2])))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_metrics(cut)) < 6, "the kill came too late to test anything"
    subprocess.run(cli + ["--resume", str(cut), "--no-progress"], cwd=REPO, env=env, check=True, capture_output=True)
    _assert_same_run(full, cut, 6)
