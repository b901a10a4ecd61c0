"""Whole RL steps of the embedded default run, this checkout against an earlier commit, paired and alternated.

Each arm runs in its own process from its own source tree (``PYTHONPATH=<tree>/src``): the base arm from a
temporary ``git worktree`` of ``--base`` (default ``86558cb``, main when issue 27 was filed), the new arm from
this checkout. Each loads its own tree's embedded default config (``src/zerosearch/configs/default.yaml``:
SmolLM2-135M, the in-process simulator in prompt mode) with the same seed; ``--set`` adds overrides to both.
The default's RL setting changed at eee5ede (REINFORCE with 4 questions x 2 rollouts and KL 0.001 before,
RLOO with 2 x 4 and KL 0.05 after): against a base before it, set both arms to one setting, e.g. ``--set
algorithm=reinforce prompts_per_step=4 rollouts_per_prompt=2 kl_coef=0.001``, or they do different work. A
process runs ``--skip`` unmeasured steps (first-call costs) and then ``--steps`` measured ones; the format
warm-up comes from its cache (each tree computes it once, outside the measured steps). The arms alternate, base
first in even pairs and new first in odd ones, so a drift of the machine's speed falls on both.

Reported per arm: the median over processes of the mean step seconds and of each phase (rollout, of which policy
generation and search; update), and the work done (response tokens and searches per rollout: sampling at
temperature 1 makes the trajectories the same only while both arms compute the same numbers); per pair the
ratio base / new of the mean step seconds, and the median, min and max of those ratios.

    python benchmarks/step_ab.py                                 # 3 pairs x (1 + 3) steps, ~25 min on 2 idle cores
    python benchmarks/step_ab.py --pairs 1 --steps 1 --skip 0    # a check that both arms run
    python benchmarks/step_ab.py --base HEAD --base-set engine.simulator.prefix_cache=false   # one setting's worth

Run it alone on idle cores: two heavy processes on 2 cores run several times slower each.

Results (2026-12-08, 2 idle cores, 14 min; ``--pairs 2 --steps 2 --skip 1 --set
model=<the cached warm-up> warmup.enabled=false engine.simulator.model=zerosearch:smollm2-135m-instruct``, so both
arms start from the same warmed-up policy and the same simulator, as the default run does after its warm-up):

    | arm     | step s | rollout s | generate s | search s | update s | response tokens | searches/rollout |
    | 86558cb | 44.51  | 37.79     | 14.40      | 23.38    | 6.71     | 144.56          | 1.06             |
    | 47eda78 | 25.56  | 19.36     | 7.58       | 11.78    | 6.20     | 126.69          | 0.94             |
    step seconds base / new, per pair: 1.76, 1.72; median 1.74

On the first measured step of each process the work was the same (141.6 vs 138.6 response tokens, 1.0 search a
rollout in both) and the ratio 1.70 (45.3 vs 26.6 s: search 19.1 -> 11.9 s, generation 19.5 -> 7.9 s, update
6.7 -> 6.8 s); on the second the sampled trajectories had drifted apart (147.5 vs 114.8 tokens). Between the
two commits: the simulator's prefix KV cache and its generate under ``no_grad`` (issue 27), dropout off
everywhere and ``plain_generation`` (a checkpoint's generation_config no longer reshapes sampling).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import check_overrides, key_value, non_negative_int, positive_int  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "src" / "zerosearch" / "configs" / "default.yaml"
PHASES = ["step_seconds", "rollout_seconds", "generate_seconds", "search_seconds", "update_seconds"]
WORK = ["response_tokens_mean", "searches_per_rollout"]
# Only APIs both arms have: load_train_config(path, overrides), start_run, Trainer.train_step's metrics row. The
# path is the arm's own default.yaml (the cwd is its tree): without a path the class defaults are the paper's.
CHILD = r"""
import json, sys
from zerosearch.config import load_train_config
from zerosearch.trainer import start_run
skip, steps, overrides = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
trainer = start_run(load_train_config("src/zerosearch/configs/default.yaml", overrides), progress=False)
rows = [trainer.train_step()[0] for _ in range(skip + steps)][skip:]
print("RESULT " + json.dumps(rows))
"""


def run_arm(tree: Path, skip: int, steps: int, extra: list[str]) -> list[dict]:
    """The measured steps' metrics rows of one process running from ``tree``'s sources."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"total_steps={skip + steps}", f"output_dir={tmp}/run", "save_every=100000",
                     "final_eval.enabled=false", "report=false", *extra]
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(skip), str(steps), json.dumps(overrides)],
                              capture_output=True, text=True, env=env, cwd=tree)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"the run from {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def summarize(rows: list[dict]) -> dict[str, float]:
    """Means over one process's measured steps."""
    return {k: statistics.fmean(float(r[k]) for r in rows) for k in PHASES + WORK if k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="86558cb", help="the earlier commit (default 86558cb)")
    parser.add_argument("--pairs", type=positive_int, default=3, help="processes per arm (default 3)")
    parser.add_argument("--steps", type=positive_int, default=3, help="measured steps per process (default 3)")
    parser.add_argument("--skip", type=non_negative_int, default=1, help="unmeasured first steps (default 1)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="config overrides for both arms")
    parser.add_argument("--base-set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="overrides for the base arm only, e.g. --base HEAD --base-set "
                             "engine.simulator.prefix_cache=false to price one setting")
    parser.add_argument("--out", type=Path, help="a JSON file for every process's steps and the table")
    args = parser.parse_args()
    if args.out and args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the JSON")
    # this checkout's keys, each list's errors under its own option; the base arm's config checks them again
    problem = (check_overrides([], args.set, "--set", path=EMBEDDED)
               or check_overrides(list(args.set), args.base_set, "--base-set", path=EMBEDDED))
    if problem:
        parser.error(problem)
    # a kill (SIGTERM) unwinds like Ctrl-C, so the finally below removes the temporary worktree
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base],
                              capture_output=True, text=True)
        if made.returncode:
            parser.error(f"--base {args.base}: git worktree add failed: {made.stderr.strip()}")
        try:
            runs: dict[str, list[dict]] = {"base": [], "new": []}
            trees = {"base": base_tree, "new": REPO}
            overrides = {"base": [*args.set, *args.base_set], "new": list(args.set)}
            for pair in range(args.pairs):
                for arm in (("base", "new") if pair % 2 == 0 else ("new", "base")):
                    rows = run_arm(trees[arm], args.skip, args.steps, overrides[arm])
                    runs[arm].append({"steps": rows, "mean": summarize(rows)})
                    print(f"pair {pair + 1}/{args.pairs} {arm}: {runs[arm][-1]['mean']['step_seconds']:.1f} s a step",
                          file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
                           capture_output=True)
    ratios = [b["mean"]["step_seconds"] / n["mean"]["step_seconds"] for b, n in zip(runs["base"], runs["new"])]
    table = {arm: {k: statistics.median(r["mean"][k] for r in runs[arm]) for k in runs[arm][0]["mean"]}
             for arm in runs}
    print(f"base {args.base} vs this checkout: {args.pairs} pairs x {args.steps} measured steps "
          f"(after {args.skip}), medians over processes")
    print("| arm | step s | rollout s | generate s | search s | update s | response tokens | searches/rollout |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arm, row in table.items():
        print(f"| {arm} | " + " | ".join(f"{row.get(k, float('nan')):.2f}" for k in PHASES + WORK) + " |")
    print(f"step seconds base / new, per pair: {', '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"base": args.base, "set": args.set, "base_set": args.base_set,
                                        "runs": runs, "median": table, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
