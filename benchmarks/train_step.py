"""Time and peak memory of one training step, split into rollout (generation) / search / update.

Each configuration runs in its own process (so peak RSS is its own), for ``--steps`` steps after one
warm-up step; the table reports the mean seconds per step of each phase and the process's peak RSS.

    python benchmarks/train_step.py                       # tiny model + SmolLM2-135M-Instruct, REINFORCE
    python benchmarks/train_step.py --models tiny --algorithms reinforce grpo rloo ppo --out bench.json

Machines are shared and noisy: compare rows of one run with each other, not with another day's run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import check_overrides, key_value, positive_int  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": ["model=zerosearch:tiny", "max_turn_tokens=24", "engine.simulator.max_tokens=48"],
    "smollm2-135m": ["model=zerosearch:smollm2-135m-instruct", "max_turn_tokens=128",
                     "engine.simulator.max_tokens=160"],
}
CHILD = r"""
import json, resource, sys, time
import numpy as np
from zerosearch.config import load_train_config
from zerosearch.trainer import start_run
cfg = load_train_config(None, json.loads(sys.argv[1]))
trainer = start_run(cfg, progress=False)
rows = [trainer.train_step()[0] for _ in range(cfg.total_steps)]
timed = rows[1:] or rows
keys = ["step_seconds", "rollout_seconds", "generate_seconds", "search_seconds", "update_seconds",
        "response_tokens_mean", "searches_per_rollout"]
out = {k: float(np.mean([r[k] for r in timed])) for k in keys}
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


def overrides_for(model: str, algorithm: str, steps: int, batch: tuple[int, int], extra: Sequence[str] = (),
                  output_dir: str = "run") -> list[str]:
    """The config of one run as ``key=value`` overrides (checked in ``main`` before any run starts)."""
    return MODELS[model] + [
        f"algorithm={algorithm}", f"total_steps={steps + 1}", f"prompts_per_step={batch[0]}",
        f"rollouts_per_prompt={batch[1]}", "max_turns=2", "max_context_tokens=2048",
        f"train_files={REPO / 'src/zerosearch/example_data/hotpotqa_distractor_train.jsonl'}",
        f"output_dir={output_dir}", "save_every=1000", *extra,
    ]


def run_one(model: str, algorithm: str, steps: int, batch: tuple[int, int], threads: int,
            extra: Sequence[str] = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = overrides_for(model, algorithm, steps, batch, extra, f"{tmp}/run")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(overrides)], capture_output=True,
                              text=True, env=env, cwd=REPO)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"{model}/{algorithm} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--algorithms", nargs="+", default=["reinforce"], choices=["reinforce", "grpo", "rloo", "ppo"])
    parser.add_argument("--steps", type=positive_int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--prompts", type=positive_int, default=4)
    parser.add_argument("--rollouts", type=positive_int, default=2)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="config overrides for every run, e.g. micro_batch_tokens=2048")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out and args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the JSON")
    grouped = [a for a in args.algorithms if a in ("grpo", "rloo")]
    if grouped and args.rollouts < 2:
        verb = "compare" if len(grouped) > 1 else "compares"
        parser.error(f"argument --rollouts: {' and '.join(grouped)} {verb} the rollouts of a group: give --rollouts 2 "
                     "or more")
    for model in args.models:  # each run's config, as its process will load it (a key typo is caught here)
        for algorithm in args.algorithms:
            problem = check_overrides(overrides_for(model, algorithm, args.steps, (args.prompts, args.rollouts)),
                                      args.set, "--set")
            if problem:
                parser.error(problem)
    results = []
    for model in args.models:
        for algorithm in args.algorithms:
            r = run_one(model, algorithm, args.steps, (args.prompts, args.rollouts), args.threads, args.set)
            results.append({"model": model, "algorithm": algorithm, **r})
            print(f"done {model}/{algorithm}", file=sys.stderr)
    header = ("| model | algorithm | step s | rollout s (generate / search) | update s | response tokens | "
              "searches/rollout | peak RSS MB |")
    print(header)
    print("|" + "---|" * 8)
    for r in results:
        print(f"| {r['model']} | {r['algorithm']} | {r['step_seconds']:.2f} | {r['rollout_seconds']:.2f} "
              f"({r['generate_seconds']:.2f} / {r['search_seconds']:.2f}) | {r['update_seconds']:.2f} | "
              f"{r['response_tokens_mean']:.0f} | {r['searches_per_rollout']:.2f} | {r['peak_rss_mb']:.0f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"batch": [args.prompts, args.rollouts], "results": results}, indent=2))


if __name__ == "__main__":
    main()
