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
