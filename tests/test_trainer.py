"""The trainer on the tiny config: all algorithms run, the run directory is complete, weights move,
and the gradient ignores what the environment inserted."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.cli import main
from zerosearch.config import load_train_config
from zerosearch.rollout import ANSWERED, Trajectory
from zerosearch.search.base import Document
from zerosearch.search.documents import information_block
from zerosearch.trainer import Trainer, start_run

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
REQUIRED_METRICS = {
    "step", "noise_probability", "reward_mean", "f1_mean", "em_mean", "cover_em_mean", "searches_per_rollout",
    "turns_mean", "invalid_action_rate", "response_tokens_mean", "loss_mask_fraction", "search_failures",
    "search_echoes", "policy_loss", "kl", "entropy", "grad_norm", "lr", "rollout_seconds", "search_seconds",
    "update_seconds", "step_seconds",
}


@pytest.mark.parametrize("algorithm", ["reinforce", "grpo", "rloo", "ppo"])
def test_tiny_config_runs_two_steps(algorithm, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / algorithm
    assert main(["train", str(TINY), f"algorithm={algorithm}", f"output_dir={out}", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    missing = REQUIRED_METRICS - set(rows[0])
    assert not missing
    if algorithm == "ppo":
        assert rows[0]["value_loss"] is not None
    assert 0 <= rows[1]["loss_mask_fraction"] <= 1
    assert rows[1]["noise_probability"] == pytest.approx(0.5)  # last step of the curriculum 0 -> 0.5
    assert (out / "config.yaml").exists() and (out / "rollouts" / "step_2.jsonl").exists()
    record = json.loads((out / "rollouts" / "step_1.jsonl").read_text().splitlines()[0])
    assert {"question", "golden_answers", "turns", "answer", "reward"} <= set(record)
    ckpt = out / "checkpoints" / "step_2"
    for name in ("policy/model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"):
        assert (ckpt / name).exists(), name
    assert json.loads((ckpt / "policy" / "zerosearch.json").read_text()) == {"doc_format": "zerosearch"}
    assert (ckpt / "critic.pt").exists() == (algorithm == "ppo")
    # the weights moved
    from zerosearch.llm.models import resolve_model_path

    before = load_file(Path(resolve_model_path("zerosearch:tiny")) / "model.safetensors")
    after = load_file(ckpt / "policy" / "model.safetensors")
    moved = sum(not torch.equal(before[k], after[k]) for k in before if k in after)
    assert moved > len(before) // 2


def test_lora_saves_an_adapter(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "lora"
    assert main(["train", str(TINY), "lora.enabled=true", "lora.r=4", "total_steps=1", f"output_dir={out}",
                 "--no-progress"]) == 0
    assert (out / "checkpoints" / "step_1" / "policy" / "adapter_model.safetensors").exists()


def test_existing_run_is_not_overwritten(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    assert main(["train", str(TINY), "total_steps=1", f"output_dir={out}", "--no-progress"]) == 0
    assert main(["train", str(TINY), "total_steps=1", f"output_dir={out}", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C in step 2 of `zerosearch train`: exit 130 and two lines naming the kept checkpoint and the
    resume command (not a traceback); that command then finishes the run."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    real_step = Trainer.train_step

    def step(self):
        if self.step == 1:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    assert main(["train", str(TINY), "total_steps=2", f"output_dir={out}", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: {out} is kept and its newest checkpoint is step_1; go on with\n" \
           f"  zerosearch train --resume {out}\n" in err
    assert err.rstrip().endswith("[zerosearch] stopped by Ctrl-C") and "Traceback" not in err
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("overrides, message", [
    (["model=/nonexistent/model"], "error: no model directory at '/nonexistent/model'"),
    (["engine.kind=real", "engine.spec=nope"], "error: engine.spec='nope': unknown search engine 'nope'"),
    (["model=zerosearch:tiny-base"], "error: engine.simulator.model=policy: the simulator writes documents as a "
                                     "chat model, but the policy's model zerosearch:tiny-base has no chat template"),
    (["device=cuda:7"], "error: device='cuda:7' but torch sees"),
    # used only after the last step: found wrong before the first
    (["final_eval.enabled=true", "final_eval.engine=bm25:/nonexistent/corpus.jsonl"],
     "error: final_eval.engine='bm25:/nonexistent/corpus.jsonl': bm25: corpus file /nonexistent/corpus.jsonl does not "
     "exist"),
    (["final_eval.enabled=true", "final_eval.engine=bing"], "error: final_eval.engine='bing': unknown search engine"),
])
def test_a_run_that_cannot_start_says_what_to_fix_in_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    """Faults in what the user named (a model, an engine, the simulator for a base policy, a device) end
    `zerosearch train` with exit 2 and one line naming the key, not a traceback; the same output_dir then
    takes the corrected run."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    assert main(["train", str(TINY), *overrides, "total_steps=1", f"output_dir={out}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing written for a run that never started
    assert main(["train", str(TINY), "total_steps=1", f"output_dir={out}", "--no-progress"]) == 0


def test_bad_data_row_stops_with_file_row_field(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q?", "golden_answers": ["a"]}\n{"id": "2", "golden_answers": ["b"]}\n')
    code = main(["train", str(TINY), f"train_files={bad}", f"output_dir={tmp_path / 'r'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.jsonl" in err and "line 2" in err and "question" in err


# ------------------------------------------------------------------------------------------------
# the gradient ignores environment tokens


def _trainer(tmp_path, searcher_model, **overrides):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}\n')
    tpl = tmp_path / "short.txt"
    tpl.write_text(SHORT_TEMPLATE)
    items = [f"model={searcher_model}", f"train_files={qa}", f"prompt_template={tpl}", "prompts_per_step=1",
             "rollouts_per_prompt=1", "lr=1e-2", "warmup_ratio=0", "kl_coef=0.1", "total_steps=1"]
    items += [f"{k}={v}" for k, v in overrides.items()]
    cfg = load_train_config(None, items)
    return Trainer(cfg, tmp_path / "run", engine=FixedDocumentsEngine(["x"]), progress=False)


def _traj(trainer, documents, answer="blue"):
    tok = trainer.tokenizer
    t = Trajectory("what colour is the sky", ("blue",), trainer._prompt_ids(0))
    for text, m in [("<search> sky </search>", 1), (information_block([Document(d) for d in documents]), 0),
                    (f"<answer> {answer} </answer>", 1)]:
        t.append(tok(text, add_special_tokens=False)["input_ids"], m, text)
    t.answer_text, t.status = f"<answer> {answer} </answer>", ANSWERED
    return t


def _params_after_update(trainer, traj, reward):
    """Policy (and critic, prefixed ``critic.``) parameters after one update from the trainer's current
    state, which is then restored."""
    modules = [m for m in (trainer.policy, trainer.optimizer, trainer.critic, trainer.critic_optimizer) if m is not None]
    saved = [copy.deepcopy(m.state_dict()) for m in modules]
    trainer._update([traj], [reward])
    after = {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}
    if trainer.critic is not None:
        after |= {f"critic.{k}": v.detach().clone() for k, v in trainer.critic.state_dict().items()}
    for m, state in zip(modules, saved):
        m.load_state_dict(state)
    return after


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_information_text_does_not_change_the_update_of_the_tokens_before_it(tmp_path, searcher_model, algorithm):
    """A trajectory that ends with an <information> block: its text must not reach the gradient."""
    trainer = _trainer(tmp_path, searcher_model, algorithm=algorithm)
    tok = trainer.tokenizer

    def ending_in_information(docs):
        t = Trajectory("what colour is the sky", ("blue",), trainer._prompt_ids(0))
        for text, m in [("<search> sky </search>", 1), (information_block([Document(d) for d in docs]), 0)]:
            t.append(tok(text, add_special_tokens=False)["input_ids"], m, text)
        t.status = "context_exhausted"
        return t

    a = _params_after_update(trainer, ending_in_information(["the sky is blue"]), 1.0)
    b = _params_after_update(trainer, ending_in_information(["completely different words here, and more of them"]), 1.0)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # control: the reward matters. For PPO it is the critic that moves: one trajectory's whitened advantages
    # are all equal (the zero-initialised critic makes every token's advantage the reward), so exactly 0
    c = _params_after_update(trainer, ending_in_information(["the sky is blue"]), 0.3)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_gradient_is_zero_on_environment_positions(tmp_path, searcher_model):
    """d loss / d logits is exactly zero at every mask-0 position (policy loss and KL alike)."""
    from zerosearch.policy import build_window, response_logits, right_align
    from zerosearch.rl.losses import aggregate_token_loss, kl_estimate, ppo_clip_loss, token_logprobs

    trainer = _trainer(tmp_path, searcher_model)
    t = _traj(trainer, ["the sky is blue", "grass is green"])
    window = build_window([t.prompt_ids], [t.response_ids], trainer.tokenizer.pad_token_id, torch.device("cpu"))
    logits = response_logits(trainer.policy, window)
    logits.retain_grad()
    logp = token_logprobs(logits, window.targets)
    mask = right_align([torch.tensor(t.loss_mask)], window.width, torch.device("cpu"))
    loss, _ = ppo_clip_loss(logp, logp.detach() - 0.1, torch.ones_like(logp), mask)
    loss = loss + aggregate_token_loss(kl_estimate(logp, logp.detach() + 0.2), mask)
    loss.backward()
    per_position = logits.grad.abs().sum(-1)[0]
    assert torch.all(per_position[mask[0] == 0] == 0)
    assert torch.all(per_position[mask[0] == 1] > 0)


def test_tensorboard_logging_writes_events(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "tb"
    assert main(["train", str(TINY), "total_steps=1", "tensorboard=true", f"output_dir={out}", "--no-progress"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"reward_mean", "noise_probability", "loss_mask_fraction"} <= set(events.Tags()["scalars"])


@pytest.mark.parametrize("model,chat", [("zerosearch:tiny", True), ("zerosearch:tiny-base", False)])
def test_base_models_get_the_raw_prompt_and_instruct_models_the_chat_template(model, chat, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_train_config(TINY, [f"model={model}", f"output_dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path, engine=FixedDocumentsEngine(["x"]), progress=False)
    text = trainer.tokenizer.decode(trainer._prompt_ids(0))
    question = trainer.rows[0].question
    assert text.endswith(f"Question: {question}{'' if question.endswith('?') else '?'}\n" + ("<|im_end|>\n<|im_start|>assistant\n" if chat else ""))
    assert text.startswith("<|im_start|>user\nAnswer the given question.") == chat
    assert text.startswith("Answer the given question.") == (not chat)


@pytest.mark.integration
def test_train_then_evaluate_with_real_bm25_then_report(tmp_path, monkeypatch, capsys):
    """The whole loop of the embedded default, at tiny scale: RL with simulated search, evaluation of the
    trained policy against a real BM25 index, and the run report."""
    monkeypatch.chdir(REPO)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": f'"Doc {i}"\nthe sky is blue number {i}'}) + "\n"
                              for i in range(20)))
    out = tmp_path / "run"
    code = main(["train", str(TINY), "total_steps=1", "report=true", "final_eval.enabled=true",
                 "final_eval.limit=3", f"final_eval.engine=bm25:{corpus}", f"output_dir={out}", "--no-progress"])
    assert code == 0
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results  # one dataset (the bundled dev questions), 3 examples
    assert (out / "eval" / "results.md").exists()
    html = (out / "report" / "index.html").read_text()
    assert "<img" in html
    err = capsys.readouterr().err
    assert "report:" in err and "evaluation:" in err


# ------------------------------------------------------------------------------------------------
# work saved per step: the update's own log-probs when on-policy, bf16 autocast


def test_on_policy_update_needs_no_separate_old_logprob_pass(tmp_path, searcher_model, monkeypatch):
    """One epoch over one mini-batch: the update's detached log-probs are the old ones. The update is the
    one a separate scoring pass gives (to float rounding), and that pass is skipped."""
    trainer = _trainer(tmp_path, searcher_model, device="cpu")  # fp32's tolerance; a GPU would load bf16
    trajs = [_traj(trainer, ["the sky is blue"]), _traj(trainer, ["grass is green"], answer="green")]
    assert trainer._on_policy(2)
    scored = trainer._score_tokens(trajs)
    assert scored["old"] == [None, None] and all(r is not None for r in scored["ref"])
    fused = _params_after_update(trainer, trajs[0], 1.0)
    monkeypatch.setattr(Trainer, "_on_policy", lambda self, n: False)
    separate = _params_after_update(trainer, trajs[0], 1.0)
    start = {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}
    moved = [k for k in fused if not torch.equal(fused[k], start[k])]
    assert moved  # the update did something
    for k in fused:
        assert torch.allclose(fused[k], separate[k], atol=1e-6, rtol=0), k
    # several epochs (or mini-batches) need the old log-probs of the sampling policy
    trainer.cfg.ppo_epochs = 2
    monkeypatch.undo()
    assert not trainer._on_policy(2)
    assert all(r is not None for r in trainer._score_tokens(trajs)["old"])


def test_bf16_autocast_loss_matches_fp32(tmp_path, searcher_model):
    """bf16 mixed precision (fp32 weights) changes the policy's log-probs by little: the documented
    tolerance is 0.05 nats per token on average and a loss within 5% of fp32's."""
    from zerosearch.policy import build_window, right_align, selected_logprobs
    from zerosearch.runtime import autocast_context

    trainer = _trainer(tmp_path, searcher_model)
    t = _traj(trainer, ["the sky is blue", "grass is green"])
    cpu = torch.device("cpu")
    window = build_window([t.prompt_ids], [t.response_ids], trainer.tokenizer.pad_token_id, cpu)
    mask = right_align([torch.tensor(t.loss_mask)], window.width, cpu)
    with torch.no_grad():
        fp32 = selected_logprobs(trainer.policy, window, mask).logprobs
        with autocast_context(cpu, torch.bfloat16):
            bf16 = selected_logprobs(trainer.policy, window, mask).logprobs
    sel = mask.bool()
    assert bf16.dtype == torch.float32  # log-probs are upcast whatever the matmul precision
    assert (bf16[sel] - fp32[sel]).abs().mean() < 0.05
    assert abs(bf16[sel].mean() - fp32[sel].mean()) / fp32[sel].mean().abs() < 0.05


def test_format_reward_is_mixed_in(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "fmt"
    assert main(["train", str(TINY), "total_steps=1", "format_reward=0.5", f"output_dir={out}", "--no-progress"]) == 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    records = [json.loads(line) for line in (out / "rollouts" / "step_1.jsonl").read_text().splitlines()]
    assert 0 <= row["well_formed_rate"] <= 1
    for r in records:  # reward = 0.5 * F1 + 0.5 * well_formed
        assert r["reward"] == pytest.approx(0.5 * r["f1"] + 0.5 * r["well_formed"])


@pytest.mark.integration
def test_default_pipeline_at_tiny_scale(tmp_path, monkeypatch, capsys):
    """What `zerosearch train` does with no arguments, on the tiny model: the format warm-up, RL, the
    untrained / warmed-up / trained models evaluated on the same questions with real BM25, the before/after
    table in the summary and the report; a second run takes the warm-up and the baselines from the cache."""
    from zerosearch import compare, warmup

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(warmup, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(compare, "cache_dir", lambda: tmp_path / "cache")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": f'"Doc {i}"\nthe sky is blue number {i}'}) + "\n"
                              for i in range(20)))
    common = [str(TINY), "total_steps=1", "report=true", "final_eval.enabled=true", "final_eval.limit=3",
              "final_eval.baselines=true", f"final_eval.engine=bm25:{corpus}", "warmup.enabled=true",
              f"warmup.engine=bm25:{corpus}", "warmup.max_examples=4", "warmup.require_grounded=false",
              "warmup.batch_size=2"]
    assert main(["train", *common, f"output_dir={tmp_path / 'run1'}", "--no-progress"]) == 0
    run = tmp_path / "run1"
    for stage in ("untrained", "warmup"):
        assert (run / "eval" / stage / "results.json").exists(), stage
    table = (run / "eval" / "comparison.md").read_text()
    assert "| metric | untrained | after warm-up | after RL |" in table
    summary = json.loads((run / "eval" / "comparison.json").read_text())
    assert summary.keys() == {"untrained", "warmup", "trained", "paired"}
    assert list(summary["paired"]) == ["trained_vs_warmup", "trained_vs_untrained"]
    assert summary["paired"]["trained_vs_warmup"]["average"]["n"] == 3
    assert "| after RL vs after warm-up | 3 |" in table and "p (McNemar)" in table
    html = (run / "report" / "index.html").read_text()
    assert "Before and after" in html and "Format warm-up" in html and "id='plot-warmup'" in html
    err = capsys.readouterr().err
    assert "after warm-up" in err and "time:" in err and "warm-up " in err

    # resumed to more steps and finished again: the trained column is the new checkpoint's
    assert main(["train", "--resume", str(run), "total_steps=2", "--no-progress"]) == 0
    assert json.loads((run / "eval" / "results.json").read_text())["model"].endswith("step_2/policy")
    assert "| metric | untrained | after warm-up | after RL |" in (run / "eval" / "comparison.md").read_text()
    assert "resuming" in capsys.readouterr().err
    # resumed with nothing left: says so, and how to go on, instead of "resuming at step 3/2"
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "already finished its 2 steps" in err and "total_steps=12" in err and "step 3/2" not in err

    assert main(["train", *common, f"output_dir={tmp_path / 'run2'}", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warm-up cached" in err
    assert json.loads((tmp_path / "run2" / "warmup.json").read_text())["cached"] is True


class _FailsForQuestion(FixedDocumentsEngine):
    """Every search made while answering ``question`` fails, as a network engine reports an error."""

    def __init__(self, documents, question):
        super().__init__(documents)
        self.question = question

    def search(self, requests, topk):
        from zerosearch.search.base import SearchResult

        ok = super().search(requests, topk)
        return [SearchResult(error="connection refused (test)", noisy=r.noisy) if r.question == self.question else res
                for r, res in zip(requests, ok)]


def test_failed_searches_are_left_out_of_the_update(tmp_path, searcher_model, monkeypatch):
    """A trajectory whose search failed is scored, counted and logged, but never reaches the update."""
    from zerosearch.rollout import SEARCH_FAILED

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}\n'
                  '{"id": "2", "question": "what colour is grass", "golden_answers": ["green"]}\n')
    tpl = tmp_path / "short.txt"
    tpl.write_text(SHORT_TEMPLATE)
    cfg = load_train_config(None, [f"model={searcher_model}", f"train_files={qa}", f"prompt_template={tpl}",
                                   "prompts_per_step=2", "rollouts_per_prompt=2", "temperature=0.05",
                                   "kl_coef=0", "total_steps=1", "log_rollouts=4"])
    trainer = Trainer(cfg, tmp_path / "run", engine=_FailsForQuestion(["the colour is green"], "what colour is the sky"),
                      progress=False)
    seen = {}
    run = trainer.runner.run
    monkeypatch.setattr(trainer.runner, "run", lambda trajs, *a, **k: seen.setdefault("all", trajs) and run(trajs, *a, **k))
    update = trainer._update
    monkeypatch.setattr(trainer, "_update", lambda trajs, rewards: seen.setdefault("updated", list(trajs)) and update(trajs, rewards))
    metrics, records = trainer.train_step()
    failed = [t for t in seen["all"] if t.status == SEARCH_FAILED]
    assert [t.question for t in failed] == ["what colour is the sky"] * 2  # the searcher always searches first
    assert metrics["search_failures"] == 2 and metrics["trajectories_updated"] == 2
    assert all(t.question == "what colour is grass" for t in seen["updated"])
    assert len(records) == 4  # logged all the same


def test_a_simulator_that_echoes_its_prompt_is_counted_and_never_trained_on(tmp_path, searcher_model, monkeypatch):
    """The simulation LLM repeats its prompt ("... whose answer is blue") for one question: those searches
    fail (never shown to the policy), are counted in search_echoes and left out of the update; the other
    question's simulated documents are served and trained on."""
    from zerosearch.llm.base import Completion
    from zerosearch.search.simulated import SimulatedSearchEngine

    class ParrotsForTheSky:
        name = "parrot"

        def complete(self, conversations, *, max_tokens, temperature, stop=None):
            prompts = [c[-1]["content"] for c in conversations]
            return [Completion(text=p if "the sky" in p else "Doc 1: grass is green in spring.") for p in prompts]

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}\n'
                  '{"id": "2", "question": "what colour is grass", "golden_answers": ["green"]}\n')
    tpl = tmp_path / "short.txt"
    tpl.write_text(SHORT_TEMPLATE)
    cfg = load_train_config(None, [f"model={searcher_model}", f"train_files={qa}", f"prompt_template={tpl}",
                                   "prompts_per_step=2", "rollouts_per_prompt=2", "temperature=0.05",
                                   "kl_coef=0", "total_steps=1", "log_rollouts=4"])
    engine = SimulatedSearchEngine(ParrotsForTheSky(), mode="finetuned")
    trainer = Trainer(cfg, tmp_path / "run", engine=engine, progress=False)
    update = trainer._update
    seen = {}
    monkeypatch.setattr(trainer, "_update",
                        lambda trajs, rewards: seen.setdefault("updated", list(trajs)) and update(trajs, rewards))
    metrics, records = trainer.train_step()
    assert metrics["search_echoes"] == 2 == engine.echoes and metrics["search_failures"] == 2
    assert metrics["trajectories_updated"] == 2 and all(t.question == "what colour is grass" for t in seen["updated"])
    sky = [r for r in records if r["question"] == "what colour is the sky"]
    assert len(sky) == 2 and all(r["status"] == "search_failed" for r in sky)
    assert all("whose answer is" not in r["response"] for r in records)  # the prompt never reached the policy
    assert all(t["error"].startswith("simulator echoed its prompt") for r in sky for t in r["turns"] if t["error"])


@pytest.mark.parametrize("singleton, expected", [("verl", 1.0), ("zero", 0.0)])
def test_grpo_singleton_rule_is_a_config_choice(tmp_path, searcher_model, singleton, expected):
    """A prompt left with one rollout (its others failed) gets its raw reward (verl's rule) or 0."""
    trainer = _trainer(tmp_path, searcher_model, algorithm="grpo", rollouts_per_prompt=2, grpo_singleton=singleton)
    t = _traj(trainer, ["the sky is blue"])
    adv, _ = trainer._advantages([t], [1.0], None)
    policy = torch.tensor(t.loss_mask, dtype=torch.bool)
    assert torch.allclose(adv[0][policy], torch.full((int(policy.sum()),), expected), atol=1e-5)
    assert torch.equal(adv[0][~policy], torch.zeros(int((~policy).sum())))
    with pytest.raises(Exception, match="grpo_singleton"):
        load_train_config(None, ["grpo_singleton=raw"])


@pytest.mark.parametrize("overrides, expected", [
    # one group, rewards [1, 0]: mean 0.5, unbiased std sqrt(0.5)
    ({"algorithm": "grpo"}, 0.5 / (0.5 ** 0.5 + 1e-6)),  # (r - mean) / (std + eps) = 0.7071
    ({"algorithm": "grpo", "grpo_scale_by_std": "false"}, 0.5),  # Dr. GRPO: r - mean
    ({"algorithm": "rloo"}, 1.0),  # r - the other's reward: 1 - 0 (and 0 - 1)
])
def test_group_advantages_follow_the_config(tmp_path, searcher_model, overrides, expected):
    trainer = _trainer(tmp_path, searcher_model, rollouts_per_prompt=2, **overrides)
    trajs = [_traj(trainer, ["the sky is blue"]), _traj(trainer, ["the sky is blue"], answer="green")]
    adv, _ = trainer._advantages(trajs, [1.0, 0.0], None)
    for t, a, sign in zip(trajs, adv, (1, -1)):
        policy = torch.tensor(t.loss_mask, dtype=torch.bool)
        assert torch.allclose(a[policy], torch.full((int(policy.sum()),), sign * expected), atol=1e-6)
        assert torch.equal(a[~policy], torch.zeros(int((~policy).sum())))


@pytest.mark.integration
def test_training_against_a_real_engine_has_no_curriculum(tmp_path, searcher_model):
    """engine.kind=real, as Search-R1 trains: BM25 over the bundled paragraphs answers every search; no
    noise is scheduled or drawn, and the metrics say so with null rather than a made-up number."""
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}\n')
    tpl = tmp_path / "short.txt"
    tpl.write_text(SHORT_TEMPLATE)
    cfg = load_train_config(None, [f"model={searcher_model}", f"train_files={qa}", f"prompt_template={tpl}",
                                   "prompts_per_step=1", "rollouts_per_prompt=2", "total_steps=2", "topk=2",
                                   "temperature=0.05", "engine.kind=real", "engine.spec=example",
                                   f"output_dir={tmp_path / 'run'}"])
    trainer = start_run(cfg, progress=False)
    assert trainer.engine.name == "bm25"
    state = trainer.noise_rng.bit_generator.state
    trainer.train()
    assert trainer.noise_rng.bit_generator.state == state  # nothing drawn
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["noise_probability"] for r in rows] == [None, None]
    assert [r["noisy_share"] for r in rows] == [None, None]
    searches = [turn for line in (tmp_path / "run" / "rollouts" / "step_1.jsonl").read_text().splitlines()
                for turn in json.loads(line)["turns"] if turn["action"] == "search"]
    assert searches and all(t["noisy"] is None and t["error"] is None and len(t["documents"]) == 2 for t in searches)


def test_a_run_that_cannot_search_loads_no_simulator(tmp_path, monkeypatch):
    import zerosearch.llm.transformers_backend as backend

    def refuse(*args, **kwargs):
        raise AssertionError("max_turns=0 loaded a simulator model")

    monkeypatch.setattr(backend, "TransformersChatModel", refuse)
    cfg = load_train_config(None, ["model=zerosearch:tiny", "max_turns=0", "total_steps=1", "prompts_per_step=2",
                                   "rollouts_per_prompt=1", "max_turn_tokens=8", f"output_dir={tmp_path / 'run'}",
                                   "save_every=1000", "report=false"])
    trainer = start_run(cfg, progress=False)
    assert trainer.engine.name == "none"
    row = trainer.train_step()[0]
    assert row["searches_per_rollout"] == 0


@pytest.mark.filterwarnings("error::FutureWarning")  # transformers 5.24 deprecates gradient_checkpointing_enable
@pytest.mark.parametrize("lora", [False, True])
def test_checkpointing_is_turned_on_without_the_deprecated_name(lora):
    from zerosearch.policy import enable_checkpointing, load_causal_lm

    model = load_causal_lm("zerosearch:tiny", torch.device("cpu"), torch.float32)
    enable_checkpointing(model, lora=lora)
    renamed = hasattr(model, "is_activation_checkpointing")  # transformers >= 5.24
    assert model.is_activation_checkpointing if renamed else model.is_gradient_checkpointing
    if lora:  # LoRA freezes the embeddings, yet the checkpointed blocks' input must need a gradient
        for p in model.parameters():
            p.requires_grad_(False)
        assert model.get_input_embeddings()(torch.tensor([[1, 2, 3]])).requires_grad


# ------------------------------------------------------------------------------------------------
# dynamic sampling: uniform groups are dropped and further prompts drawn


def _dynamic_trainer(tmp_path, monkeypatch, **overrides):
    """Six questions whose rewards the test decides (the tiny model only has to write something): "always"
    rows score 1 on every rollout, "never" rows 0, "mixed" rows 1 on their group's first rollout and 0 on
    the others, and "flaky" rows like "mixed" but their first rollout's search fails, so what is left of
    the group is uniform. The sampler's seeded order (seed 0, six rows) is asserted below."""
    from zerosearch.rollout import SEARCH_FAILED

    kinds = ["never", "always", "mixed", "always", "mixed", "flaky"]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": f"{kind} question {i}", "golden_answers": ["x"]})
                          + "\n" for i, kind in enumerate(kinds)))
    items = ["model=zerosearch:tiny", f"train_files={qa}", "algorithm=rloo", "max_turns=0", "max_turn_tokens=4",
             "prompts_per_step=2", "rollouts_per_prompt=3", "drop_uniform_groups=true", "max_sampling_rounds=3",
             "kl_coef=0", "total_steps=2", "log_rollouts=100", "lr=1e-3", "warmup_ratio=0"]
    cfg = load_train_config(None, items + [f"{k}={v}" for k, v in overrides.items()])
    trainer = Trainer(cfg, tmp_path / "run", engine=FixedDocumentsEngine(["x"]), progress=False)
    seen: set[tuple[int, int]] = set()

    def score(t):
        kind = t.question.split()[0]
        first = (trainer.step, t.group) not in seen
        seen.add((trainer.step, t.group))
        value = float(kind == "always" or (kind in ("mixed", "flaky") and first))
        return {"f1": value, "em": value, "cover_em": value}

    run = trainer.runner.run

    def run_with_flaky_search(trajs, *args, **kwargs):
        stats = run(trajs, *args, **kwargs)
        firsts = {}
        for t in trajs:
            if t.question.startswith("flaky") and firsts.setdefault(t.group, t) is t:
                t.status = SEARCH_FAILED  # the rollout that would have scored 1
        return stats

    updates = []
    update = trainer._update
    monkeypatch.setattr(trainer, "_score", score)
    monkeypatch.setattr(trainer.runner, "run", run_with_flaky_search)
    monkeypatch.setattr(trainer, "_update", lambda trajs, rewards: updates.append((list(trajs), list(rewards)))
                        or update(trajs, rewards))
    return trainer, updates


def test_uniform_groups_are_dropped_and_more_prompts_drawn(tmp_path, monkeypatch):
    from zerosearch.data import PromptSampler

    sampler = PromptSampler(6, seed=0)
    assert sampler.next_batch(6) + sampler.next_batch(6) == [3, 2, 5, 4, 0, 1] + [1, 4, 3, 0, 2, 5]
    trainer, updates = _dynamic_trainer(tmp_path, monkeypatch)

    # Step 1. Round 1 draws 2 prompts: 3 (always: uniform), 2 (mixed: informative) -> 1 of 2 in hand.
    # Round 2 draws the 1 missing: 5 (flaky: the 1 failed, the two left are 0, 0: uniform).
    # Round 3 draws 1: 4 (mixed) -> 2 of 2: the step is full after 3 rounds, 4 groups drawn, 2 dropped.
    # reward_mean is over all 12 trajectories: 3 (row 3) + 1 (row 2) + 1 (row 5, failed) + 1 (row 4) = 6 / 12.
    metrics, records = trainer.train_step()
    assert {k: metrics[k] for k in ("sampling_rounds", "groups_sampled", "groups_uniform", "groups_dropped",
                                    "groups_trained", "trajectories_updated")} == {
        "sampling_rounds": 3, "groups_sampled": 4, "groups_uniform": 2, "groups_dropped": 2, "groups_trained": 2,
        "trajectories_updated": 6}
    assert metrics["reward_mean"] == pytest.approx(6 / 12) and metrics["f1_mean"] == pytest.approx(6 / 12)
    trajs, rewards = updates[0]
    assert [t.question for t in trajs] == ["mixed question 2"] * 3 + ["mixed question 4"] * 3
    assert rewards == [1.0, 0.0, 0.0] * 2
    assert [t.group for t in trajs] == [1, 1, 1, 3, 3, 3]  # group ids run on across the step's rounds
    assert len(records) == 12
    assert [r["round"] for r in records] == [1] * 6 + [2] * 3 + [3] * 3
    assert [r["question"].split()[0] for r in records[::3]] == ["always", "mixed", "flaky", "mixed"]
    assert [r["dropped_uniform"] for r in records[::3]] == [True, False, True, False]
    assert [r["reward"] for r in records] == [1, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0]

    # Step 2 (the sampler goes on where step 1 stopped). Round 1: 0 (never), 1 (always) -> 0 in hand.
    # Round 2 draws 2 (the new epoch's first): 1 (always), 4 (mixed) -> 1. Round 3 draws 1: 3 (always) -> 1.
    # No rounds left: the step trains on the 1 group it has and says so (groups_trained 1 < prompts_per_step 2).
    # reward_mean: 0 + 3 + 3 + 1 + 3 = 10 over 15 trajectories.
    metrics, records = trainer.train_step()
    assert (metrics["sampling_rounds"], metrics["groups_sampled"], metrics["groups_uniform"], metrics["groups_dropped"],
            metrics["groups_trained"], metrics["trajectories_updated"]) == (3, 5, 4, 4, 1, 3)
    assert metrics["reward_mean"] == pytest.approx(10 / 15)
    assert [t.question for t in updates[1][0]] == ["mixed question 4"] * 3
    assert trainer.sampler.state_dict()["epoch"] == 1 and trainer.sampler.state_dict()["position"] == 3


def test_without_dynamic_sampling_uniform_groups_are_counted_not_dropped(tmp_path, monkeypatch):
    # One round of 2 prompts: 3 (always) and 2 (mixed); both train, the uniform one counted.
    trainer, updates = _dynamic_trainer(tmp_path, monkeypatch, drop_uniform_groups="false")
    metrics, records = trainer.train_step()
    assert (metrics["sampling_rounds"], metrics["groups_sampled"], metrics["groups_uniform"], metrics["groups_dropped"],
            metrics["groups_trained"], metrics["trajectories_updated"]) == (1, 2, 1, 0, 2, 6)
    assert [t.question.split()[0] for t in updates[0][0]] == ["always"] * 3 + ["mixed"] * 3
    assert "round" not in records[0] and "dropped_uniform" not in records[0]


@pytest.mark.parametrize("override, message", [
    ("lora.alpha=0", "error: the key=value overrides: lora.alpha=0 must be > 0"),
    ("lora.target_modules=[q_projj]", "error: lora.target_modules=['q_projj']: Target modules {'q_projj'} not "
                                      "found in the base model"),
])
def test_a_bad_lora_setting_is_one_line_exit_2_and_no_run_directory(tmp_path, monkeypatch, capsys, override,
                                                                     message):
    """Module names need the model: they are matched on a skeleton built on the meta device, before the run
    directory is made (peft used to raise from inside the Trainer, after it)."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    assert main(["train", str(TINY), "lora.enabled=true", override, f"output_dir={out}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_the_first_mini_batch_log_ratio_is_exactly_zero_whatever_dropout_the_model_carries(
        tmp_path, searcher_model, monkeypatch, algorithm):
    """Old log-probs are scored in eval mode, the update runs in train mode. With the checkpoint's attention
    dropout (0.5 here) and LoRA adapters that have moved (lora_B non-zero), the first mini-batch's
    |log ratio| was far from 0 before any optimizer step (issue 25 measured 0.198 with lora.dropout=0.1).
    Every pass must be one deterministic network: the ratio is exactly 1, and the critic's values (ppo) in
    train mode equal the ones scored in eval mode."""
    import shutil

    model = tmp_path / "dropout_model"
    shutil.copytree(searcher_model, model)
    config = json.loads((model / "config.json").read_text())
    config["attention_dropout"] = 0.5
    (model / "config.json").write_text(json.dumps(config))
    trainer = _trainer(tmp_path, model, device="cpu", algorithm=algorithm, **{"lora.enabled": "true", "lora.r": 4,
                                                                              "mini_batch_size": 1})
    torch.manual_seed(0)
    for name, param in trainer.policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    trajs = [_traj(trainer, ["the sky is blue"]), _traj(trainer, ["grass is green"], answer="green")]
    assert not trainer._on_policy(len(trajs))  # old log-probs come from a separate eval-mode pass

    import zerosearch.trainer as trainer_module

    ratios = []
    original = trainer_module.ppo_clip_loss

    def recording(logp, old, adv, mask, *args, **kwargs):
        ratios.append(((logp.detach() - old) * mask).abs().max().item())
        return original(logp, old, adv, mask, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "ppo_clip_loss", recording)
    trainer._update(trajs, [1.0, 0.0])
    assert ratios[0] == 0.0  # before any optimizer step: the sampling policy scored by itself
    if algorithm == "ppo":
        from zerosearch.policy import build_window

        window = build_window([trajs[0].prompt_ids], [trajs[0].response_ids], trainer.tokenizer.pad_token_id,
                              torch.device("cpu"))
        trainer.critic.train()
        trained = trainer.critic(window)[0, -len(trajs[0].response_ids):].detach()
        trainer.critic.eval()
        assert torch.equal(trained, trainer.critic(window)[0, -len(trajs[0].response_ids):].detach())
