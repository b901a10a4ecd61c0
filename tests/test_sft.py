"""The one SFT code path (zerosearch.sft): the loss, the head on selected positions, exact resume, saving."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from zerosearch import checkpoint as ckpt
from zerosearch import policy
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.policy import build_window, plain_head, response_logits, selected_logprobs
from zerosearch.rl.losses import entropy_from_logits, token_logprobs
from zerosearch.sft import SFTExample, SFTRun, SFTSettings, chat_example, end_of_turn_ids, fitting, train_sft

CPU = torch.device("cpu")


def tiny():
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir()), AutoTokenizer.from_pretrained(tiny_model_dir())


def examples() -> list[SFTExample]:
    return [
        SFTExample([3, 4, 5, 6, 7], [0, 0, 1, 0, 1]),
        SFTExample([8, 9, 10], [0, 1, 1]),
        SFTExample([11, 12, 13, 14], [0, 0, 0, 1]),
        SFTExample([15, 16, 17, 18, 19, 20], [0, 1, 1, 1, 0, 1]),
    ]


def test_example_is_validated():
    with pytest.raises(ValueError, match="loss_mask 1"):
        SFTExample([1, 2], [0])
    with pytest.raises(ValueError, match="at least one token"):
        SFTExample([1, 2], [0, 0])
    with pytest.raises(ValueError, match="only 0 and 1"):
        SFTExample([1, 2], [0, 2])
    with pytest.raises(ValueError, match="first token"):
        SFTExample([1, 2], [1, 1])  # nothing predicts the first token
    assert SFTExample([5, 6, 7], [0, 1, 0]).context_length == 1
    kept, dropped = fitting(examples(), 5)
    assert (len(kept), dropped) == (3, 1)


def test_selected_logprobs_equal_the_full_heads(monkeypatch):
    model, tok = tiny()
    window = build_window([[1, 2, 3], [4]], [[5, 6, 7, 8], [9, 10]], tok.pad_token_id, CPU)
    # right-aligned like the window: row 2's response fills the last two columns
    select = torch.tensor([[True, False, True, True], [False, False, True, False]])
    with torch.no_grad():
        full = token_logprobs(response_logits(model, window), window.targets)
        fast = selected_logprobs(model, window, select, entropy=True)
        monkeypatch.setattr(policy, "plain_head", lambda m: False)  # the generic path: full logits, then select
        slow = selected_logprobs(model, window, select, entropy=True)
    assert plain_head(model)
    assert fast.entropy.shape == (int(select.sum()),)
    assert torch.allclose(fast.entropy, entropy_from_logits(response_logits(model, window)[select]), atol=1e-5)
    assert torch.allclose(slow.entropy, fast.entropy, atol=1e-5)
    assert selected_logprobs(model, window, select).entropy is None  # only when asked for
    assert torch.allclose(fast.logprobs[select], full[select], atol=1e-5)
    assert (fast.logprobs[~select] == 0).all()
    assert torch.allclose(slow.logprobs, fast.logprobs, atol=1e-5)


def test_loss_is_the_mean_nll_of_the_trained_on_tokens():
    model, tok = tiny()
    data = examples()
    run = SFTRun(model, tok.pad_token_id, data, SFTSettings(batch_size=4, save_steps=0), CPU)
    expected = []
    with torch.no_grad():
        for e in data:  # by hand: one sequence at a time, no padding; token t is predicted at position t-1
            logp = torch.log_softmax(model(torch.tensor([e.input_ids])).logits[0].float(), dim=-1)
            expected += [-logp[t - 1, e.input_ids[t]].item() for t in range(1, len(e)) if e.loss_mask[t]]
    assert len(expected) == 9
    assert run.evaluate(data) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    first = run.train_step()
    assert first["loss"] == pytest.approx(sum(expected) / len(expected), rel=1e-5)  # before the update
    assert run.evaluate(data) < first["loss"]


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resumed_run_continues_exactly(tmp_path):
    settings = SFTSettings(batch_size=2, lr=1e-2, epochs=2, save_steps=0, seed=3)
    data = examples() * 2

    torch.manual_seed(0)
    whole = SFTRun(tiny()[0], 0, data, settings, CPU)
    assert whole.total_steps == 8
    losses = [whole.train_step()["loss"] for _ in range(whole.total_steps)]

    first = SFTRun(tiny()[0], 0, data, settings, CPU)
    for _ in range(3):
        first.train_step()
    first.save(tmp_path / "ck")
    second = SFTRun(tiny()[0], 0, data, settings, CPU)
    second.load(ckpt.latest_checkpoint(tmp_path / "ck"))
    assert second.step == 3
    rest = [second.train_step()["loss"] for _ in range(5)]
    assert rest == losses[3:]
    for name, value in _params(whole.model).items():
        assert torch.equal(value, _params(second.model)[name]), name

    other = SFTRun(tiny()[0], 0, data, SFTSettings(batch_size=2, lr=1e-2, epochs=3, save_steps=0), CPU)
    with pytest.raises(ValueError, match="8-step run"):
        other.load(ckpt.latest_checkpoint(tmp_path / "ck"))


@pytest.mark.parametrize("lora", [False, True])
def test_train_sft_learns_and_saves_a_plain_model(tmp_path, lora):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    data = [chat_example(tok, [{"role": "user", "content": f"colour {i}?"}, {"role": "assistant", "content": "blue"}])
            for i in range(4)]
    out = tmp_path / "model"
    info = train_sft("zerosearch:tiny", data, data[:2], out,
                     SFTSettings(lr=1e-2 if not lora else 5e-2, max_steps=8, batch_size=2, save_steps=4,
                                 logging_steps=2, lora=lora), progress=False)
    assert info["eval_loss_after"] < info["eval_loss_before"]
    assert [step for step, _ in info["loss_curve"]] == [2, 4, 6, 8]
    assert info["steps"] == 8 and info["train_examples"] == 4 and info["settings"]["lora"] is lora
    assert not (out / "checkpoints").exists()  # removed once the model is saved
    assert not (out / "adapter_config.json").exists()  # LoRA merged: a plain model directory
    model = AutoModelForCausalLM.from_pretrained(out)
    eos = model.generation_config.eos_token_id
    assert set(end_of_turn_ids(tok)) <= set(eos if isinstance(eos, list) else [eos])  # generation stops there
    json.dumps(info)  # the record is JSON as it is


def test_train_sft_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    data = [chat_example(tok, [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}])
            for i in range(4)]
    settings = SFTSettings(lr=1e-2, max_steps=6, batch_size=2, save_steps=2, logging_steps=1)
    calls = {"n": 0}
    original = SFTRun.train_step

    def dies_after_five(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(SFTRun, "train_step", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        train_sft("zerosearch:tiny", data, data[:2], tmp_path / "m", settings, progress=False)
    assert (tmp_path / "m" / "checkpoints" / "step_4" / "state.json").is_file()  # as a training run keeps them
    assert ckpt.latest_checkpoint(tmp_path / "m").name == "step_4"
    monkeypatch.setattr(SFTRun, "train_step", original)
    info = train_sft("zerosearch:tiny", data, data[:2], tmp_path / "m", settings, progress=False)
    full = train_sft("zerosearch:tiny", data, data[:2], tmp_path / "full", settings, progress=False)
    # the summary covers the whole training, as the uninterrupted run's does (it once held steps 5-6 only,
    # a mean over those two steps and no loss before training)
    assert info["steps"] == 6 and [s for s, _ in info["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in info["loss_curve"]] == pytest.approx([loss for _, loss in full["loss_curve"]])
    assert info["train_loss"] == pytest.approx(full["train_loss"])
    assert info["eval_loss_before"] == pytest.approx(full["eval_loss_before"]) and info["eval_loss_before"] > 0
