"""benchmarks/ceilings.py's accounting: hand-worked FLOPs, and hooks that see generate's calls as they are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _ceilings():
    if "zerosearch_bench_ceilings" not in sys.modules:
        spec = importlib.util.spec_from_file_location("zerosearch_bench_ceilings", BENCHMARKS / "ceilings.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["zerosearch_bench_ceilings"]


def test_update_flops_by_hand():
    ceilings = _ceilings()
    meter = ceilings.Meter()
    sizes = {"policy": {"non_embedding": 10, "head": 6, "attention_width": 2, "layers": 3},
             "reference": {"non_embedding": 10, "head": 6, "attention_width": 2, "layers": 3}}
    meter.trunk = [{"model": "policy", "phase": "update", "tokens": 4, "context": 10, "trained": True},
                   {"model": "reference", "phase": "update", "tokens": 4, "context": 10, "trained": False},
                   {"model": "policy", "phase": "generate", "tokens": 99, "context": 99, "trained": False}]
    meter.head = [{"model": "policy", "phase": "update", "rows": 5, "trained": True}]
    # trained: 3 x (2*10*4 + 4*2*3*10) = 960; reference: 80 + 240 = 320; head: 3 x 2*6*5 = 180
    assert ceilings.update_flops(meter, sizes) == 960 + 320 + 180
    assert ceilings.update_flops(meter, sizes, trained=True) == 960 + 180
    assert ceilings.update_flops(meter, sizes, trained=False) == 320


def test_update_parts_split_its_seconds_and_flops():
    """The update's row and its parts: the no-grad pass and the optimizer step as timed, forward + backward the
    rest, each pass's FLOPs over its own seconds against the same ceiling."""
    ceilings = _ceilings()
    meter = ceilings.Meter()
    sizes = {"policy": {"non_embedding": 10, "head": 6, "attention_width": 2, "layers": 3},
             "reference": {"non_embedding": 10, "head": 6, "attention_width": 2, "layers": 3}}
    meter.trunk = [{"model": "policy", "phase": "update", "tokens": 4, "context": 10, "trained": True},
                   {"model": "reference", "phase": "update", "tokens": 4, "context": 10, "trained": False}]
    meter.part_seconds.update({"no-grad pass": 2.0, "optimizer step": 1.0})
    held = ceilings.Ceilings({"matmul": {"float32@8": {"model_mix": 100.0}, "float32@64": {"model_mix": 400.0}},
                              "bandwidth": {"read": 1e9}}, 8, 64, None)
    rows = {r["phase"]: r for r in ceilings.analyse(meter, sizes, held, [{"update_seconds": 10.0}])}
    assert rows["update"]["rate"] == (960 + 320) / 10.0
    assert rows["update: no-grad pass"]["seconds"] == 2.0 and rows["update: no-grad pass"]["rate"] == 320 / 2.0
    assert rows["update: forward + backward"]["seconds"] == 7.0
    assert rows["update: forward + backward"]["fraction"] == 960 / 7.0 / 400.0
    assert rows["update: optimizer step"]["seconds"] == 1.0 and rows["update: optimizer step"]["fraction"] is None


def test_meter_sees_prefill_and_decode_of_a_left_padded_generate():
    from transformers import AutoModelForCausalLM

    from zerosearch.models.tiny import tiny_model_dir

    ceilings = _ceilings()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir()).eval()
    sizes = ceilings.model_sizes(model)
    assert sizes["non_embedding"] + model.get_input_embeddings().weight.numel() == sum(
        p.numel() for p in model.parameters()) - (0 if sizes["tied"] else sizes["head"])
    meter = ceilings.Meter()
    meter.install(model, "policy")
    meter.phase = "generate"
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                       pad_token_id=0)
    kinds = [c["kind"] for c in meter.calls]
    assert kinds == ["prefill", "decode", "decode", "decode"]
    prefill, *decode = meter.calls
    assert prefill["tokens"] == 8 and prefill["rows"] == 2 and prefill["cached"] == 0
    assert prefill["context"] == 3 * 4 / 2 + 5 * 6 / 2  # each real token attends to itself and the ones before
    assert [d["cached"] for d in decode] == [5, 6, 7] and all(d["tokens"] == 2 for d in decode)
    assert decode[0]["context"] == (3 + 1) + (5 + 1)  # the new token attends to the real cached ones and itself
    assert [r["tokens"] for r in meter.trunk] == [8, 2, 2, 2] and not any(r["trained"] for r in meter.trunk)
    assert [r["rows"] for r in meter.head] == [2, 2, 2, 2]  # generate runs the head on the last column only


def test_train_pass_ceiling_counts_its_flops_and_leaves_the_model_as_it_was():
    from transformers import AutoModelForCausalLM

    from zerosearch.models.tiny import tiny_model_dir

    ceilings = _ceilings()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    size = {"non_embedding": 10, "head": 6, "attention_width": 2, "layers": 3}
    out = ceilings.train_pass_ceiling(model, size, tokens=9, rows=2, autocast=None, repeats=1)
    # 2 rows x 4 tokens: 3 x (2*10*8 + 4*2*3*(2 * 4*5/2) + 2*6*8) = 3 x (160 + 480 + 96)
    assert out["tokens"] == 8 and out["flops"] == 3 * (160 + 480 + 96)
    assert out["rate"] == out["flops"] / out["seconds"]
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_meter_wrap_times_phases_and_parts_across_a_reset():
    """A wrapped method sets its phase for the calls inside it (a part keeps the phase it runs in), and its
    seconds land in the counters that are current when it runs: reset() after the unmeasured steps replaces
    them, and the measured steps must still be counted."""
    ceilings = _ceilings()
    meter = ceilings.Meter()

    class Owner:
        def inner(self):
            return meter.phase

        def outer(self):
            return meter.phase, self.inner()

    owner = Owner()
    meter.wrap(owner, "inner", part="inner part")
    meter.wrap(owner, "outer", "update")
    assert owner.outer() == ("update", "update") and meter.phase == "other"
    meter.reset()
    assert owner.outer() == ("update", "update")
    assert set(meter.phase_seconds) == {"update"} and set(meter.part_seconds) == {"inner part"}
    assert meter.phase_seconds["update"] >= meter.part_seconds["inner part"] > 0
