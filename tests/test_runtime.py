"""zerosearch.runtime: thread count from the CPUs this process may use, bf16 autocast choices."""

from __future__ import annotations

import pytest
import torch

from zerosearch import runtime


def test_threads_follow_the_affinity_set_and_the_override(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 3, 5})  # 3 CPUs of a bigger machine
        monkeypatch.setattr(runtime, "_cgroup_cpu_quota", lambda: None)
        assert runtime.configure_threads() == 3 and torch.get_num_threads() == 3
        monkeypatch.setattr(runtime, "_cgroup_cpu_quota", lambda: 2)  # a container quota of 2 CPUs caps it
        assert runtime.configure_threads() == 2
        monkeypatch.setenv(runtime.THREADS_ENV, "1")
        assert runtime.configure_threads() == 1
        assert runtime.configure_threads(4) == 4  # an explicit count wins over everything
        monkeypatch.setenv(runtime.THREADS_ENV, "two")
        with pytest.raises(ValueError, match="ZEROSEARCH_NUM_THREADS"):
            runtime.configure_threads()
        with pytest.raises(ValueError, match=">= 0"):
            runtime.configure_threads(-1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("text", "cpus"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                            ("garbage", None)])
def test_cgroup_quota(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text + "\n")
    assert runtime._cgroup_cpu_quota(tmp_path) == cpus
    assert runtime._cgroup_cpu_quota(tmp_path / "missing") is None


def test_autocast_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.resolve_autocast("auto", cpu) is torch.bfloat16
    assert runtime.resolve_autocast("auto", cuda) is None  # on GPUs the weights' dtype decides
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.resolve_autocast("auto", cpu) is None  # emulated bf16 is slower than fp32
    assert runtime.resolve_autocast("bf16", cpu) is torch.bfloat16
    assert runtime.resolve_autocast("off", cpu) is None
    with pytest.raises(ValueError, match="autocast='fp8'"):
        runtime.resolve_autocast("fp8", cpu)


def test_adamw_is_fused_on_cpu_and_steps_as_the_default_does():
    """The trainer's AdamW uses torch's fused kernel on CPU; its update is the foreach one's (to fp32 rounding),
    over several steps with weight decay, and a state saved by one loads into the other (a resumed run)."""
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]
    runs = {}
    for name, make in (("fused", lambda ps: runtime.adamw(ps, torch.device("cpu"), lr=1e-2, weight_decay=0.1)),
                       ("foreach", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, foreach=True))):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(params)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            opt.step()
        runs[name] = (params, opt)
    assert runs["fused"][1].param_groups[0]["fused"] is True
    assert not torch.equal(runs["fused"][0][0], start[0])  # the steps moved the parameters
    for a, b in zip(runs["fused"][0], runs["foreach"][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    fresh = runtime.adamw([torch.nn.Parameter(p.clone()) for p in start], torch.device("cpu"), lr=1e-2)
    fresh.load_state_dict(runs["foreach"][1].state_dict())  # a checkpoint of a run before the fused optimizer
    assert fresh.state_dict()["state"][0]["exp_avg"].equal(runs["foreach"][1].state_dict()["state"][0]["exp_avg"])


def test_adamw_falls_back_where_there_is_no_fused_kernel():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert runtime.adamw(params, torch.device("meta"), lr=1e-3).param_groups[0]["fused"] is None
