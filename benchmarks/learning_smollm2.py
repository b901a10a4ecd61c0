"""Does RL improve SmolLM2-135M on top of its format warm-up? Room, pool, RL, paired evaluation (not in CI).

The pipeline, each stage cached or resumed, so a rerun (or a run killed halfway) goes on where it stopped:

1. **warm-up**: the embedded default's format warm-up (64 demonstrations with real BM25 documents, one epoch;
   cached as in ``zerosearch train``).
2. **room**: the warmed-up policy answers the 300 bundled HotpotQA training questions (and, with ``--dev-room``,
   the ``--dev`` dev questions) K = ``--samples`` times at temperature 1 through the agent loop against real
   BM25, besides its greedy answer (``zerosearch eval --samples``): greedy EM / F1, pass@K, mean@K and the
   share of questions with mixed outcomes. The training half is exactly the pool's scoring, so the pool below reuses it.
3. **pool**: the training questions with mixed outcomes (0 < right < K by EM), without the ones the warm-up
   demonstrated (``pool.warmup_questions=exclude``; ``--set pool.warmup_questions=keep`` keeps them; the pool's
   statistics give both groups' pass rates).
4. **RL** on the pool from the warm-up: ``--algorithm`` (default ``rloo``, the leave-one-out group baseline),
   ``--prompts`` questions x ``--rollouts`` rollouts a step, ``--steps`` steps, against real BM25 (the cheaper
   engine; ``--set engine.kind=simulated`` for the simulator), ``--reward``, ``--ppo-epochs`` passes over each
   batch, KL ``--kl``, learning rate ``--lr``; any other setting by ``--set KEY=VALUE``.
5. **paired evaluation**: the warm-up and the trained policy answer greedily (i) the pool's questions and
   (ii) the ``--dev`` dev questions; ``zerosearch compare`` gives the differences with paired bootstrap 95% CIs
   and McNemar's exact p.

    python benchmarks/learning_smollm2.py                             # the main run (~1.7 h on 2 idle cores)
    python benchmarks/learning_smollm2.py --steps 15 --dev 0 --out runs/pilot_lr5e-5 --lr 5e-5   # a pilot
    python benchmarks/learning_smollm2.py --steps 2 --samples 2 --dev 4 --candidates 8 --out /tmp/learning-smoke

Writes ``<out>/results.md`` and ``<out>/results.json`` (the room table, the pool, the training curve by tenths
of the run with its moving average, the paired tables, wall times per stage), the run directory ``<out>/run``
(metrics, rollouts, ``pool.json``, the report with the reward's moving average) and the evaluations
``<out>/eval/{warmup,trained}_{pool,dev}`` with ``<out>/eval/compare_{pool,dev}``.

Results (2026-12-08, 2 idle cores, from the cached warm-up; the defaults, i.e. ``--samples 4 --dev 300 --steps 14
--prompts 4 --rollouts 8 --lr 1e-5 --kl 0.05 --mini-batch 16``, rloo, F1 reward, 2 epochs; 86 min: room 22 min
with its first 128 questions already scored by a pilot, RL 49 min, paired evaluation 15 min): the room is small
(greedy EM 13.7, pass@4 17.0, mean@4 6.8 on the 300 training questions; 249 never answered in 4 samples); the
pool is 34 questions (48 mixed, the warm-up's 14 left out; 17 of the 34 are binary choices). RL kept searching
(1.0 a rollout) and well-formed (0.9-1.0); the reward rose from 0.28 (steps 1-2) to 0.85 at step 12. Paired
greedy EM against the warm-up: **pool 47.1 -> 85.3 (+38.2 [+23.5, +55.9], McNemar p < 0.001; 13 gained, none
lost: binary 5 -> 15 of 17, others 11 -> 14 of 17)**; **held-out dev (300) 8.3 -> 12.3 (+4.0 [+0.7, +7.3],
p 0.036; 20 gained, 8 lost, binary choices 16 -> 25 of 63, others 9 -> 12 of 237)**, dev F1 +4.2 [+0.7, +7.8].
Much of what it learnt is answering "A or B?" / "both ...?" questions with one of the named options or yes/no.

Pilots on a 13-question pool (the first 128 training questions, K = 4; ``--candidates 128 --samples 4 --dev 150
--kl 0 --lr 3e-5 --steps 24``): no KL at lr 3e-5 broke the format (well-formed 0.95 -> 0.3-0.5 at steps 9-12) and
then stopped searching (pool EM 53.8 -> 23.1, -30.8 [-69.2, +7.7], p 0.29); lr 1e-5 with KL 0.05 (step 10) kept
searching: pool 53.8 -> 84.6 (+30.8 [+7.7, +53.8], p 0.125, 4 discordant pairs), dev (150) F1 +5.4 [+0.7, +10.4].
The earlier version (REINFORCE without a baseline, 200 unfiltered questions, 30 steps x 8 rollouts against the
SmolLM2 simulator) found no change (dev EM 13.0 -> 11.0).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import check_overrides, key_value, non_negative_int, positive_float, positive_int  # noqa: E402

TRAIN = REPO / "src" / "zerosearch" / "example_data" / "hotpotqa_distractor_train.jsonl"
DEV = REPO / "src" / "zerosearch" / "example_data" / "hotpotqa_distractor_dev.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_learning",
                        help="output directory (default runs/bench_learning); an existing one is resumed")
    parser.add_argument("--algorithm", default="rloo", choices=("rloo", "grpo", "reinforce", "ppo"),
                        help="advantage estimator (default rloo)")
    parser.add_argument("--steps", type=positive_int, default=14, help="RL steps (default 14)")
    parser.add_argument("--prompts", type=positive_int, default=4, help="questions per step (default 4)")
    parser.add_argument("--rollouts", type=positive_int, default=8, help="rollouts per question (default 8)")
    parser.add_argument("--lr", type=positive_float, default=1e-5, help="RL learning rate (default 1e-5)")
    parser.add_argument("--reward", default="f1", choices=("f1", "em"), help="the outcome reward (default f1)")
    parser.add_argument("--ppo-epochs", type=positive_int, default=2,
                        help="passes over each step's batch (default 2; mini-batches of --mini-batch)")
    parser.add_argument("--mini-batch", type=non_negative_int, default=16,
                        help="trajectories per optimizer step (default 16; 0 = the whole batch)")
    parser.add_argument("--kl", type=float, default=0.05,
                        help="KL coefficient to the warm-up (default 0.05; 0: off, which collapsed at lr 3e-5)")
    parser.add_argument("--samples", type=positive_int, default=4,
                        help="K answers sampled per question for the room table and the pool (default 4; "
                             "K = 8 doubles the room's ~35 min)")
    parser.add_argument("--candidates", type=non_negative_int, default=0,
                        help="training questions scored for the pool (default 0: all 300)")
    parser.add_argument("--dev", type=non_negative_int, default=300,
                        help="dev questions for the room table and the paired evaluation (default 300; 0: none)")
    parser.add_argument("--dev-room", action="store_true",
                        help="also sample the --dev questions K times for the room table (K + 1 times the cost "
                             "of the greedy-only default there)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="any other train setting, e.g. --set lora.enabled=true (repeatable)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file: give a directory (it is created if missing)")
    if args.kl < 0:
        parser.error(f"--kl {args.kl}: a KL coefficient is >= 0")
    from zerosearch.config import EMBEDDED_DEFAULT

    problem = check_overrides(overrides(args), args.overrides, path=EMBEDDED_DEFAULT)
    if problem:
        parser.error(problem)
    return args


def overrides(args: argparse.Namespace) -> list[str]:
    """The run's settings as ``key=value`` overrides of the embedded default (``--set`` items come after)."""
    return [
        f"algorithm={args.algorithm}", f"total_steps={args.steps}", f"prompts_per_step={args.prompts}",
        f"rollouts_per_prompt={args.rollouts}", f"lr={args.lr}", f"reward={args.reward}",
        f"ppo_epochs={args.ppo_epochs}", f"mini_batch_size={args.mini_batch}", f"kl_coef={args.kl}",
        f"seed={args.seed}", "engine.kind=real", "engine.spec=example",
        "pool.enabled=true", f"pool.samples={args.samples}", f"pool.limit={args.candidates}", "pool.batch_size=16",
        f"train_files=[{TRAIN}]", "final_eval.enabled=false", "save_every=5", "keep_checkpoints=1", "report=true",
    ]


def curve_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The training curve by tenths of the run: reward, EM of the sampled answers, informative groups."""
    from zerosearch.report import with_moving_average

    tenths = np.array_split(np.arange(len(rows)), min(10, len(rows))) if rows else []

    def mean(key: str, idx: np.ndarray) -> float | None:
        values = [rows[i][key] for i in idx if rows[i].get(key) is not None]
        return float(np.mean(values)) if values else None

    return {
        "steps": len(rows),
        # the report's own trailing mean, so the benchmark's curve and the run's reward plot agree
        "reward_moving_average_10": [r["reward_moving_average"] for r in with_moving_average(rows, window=10)],
        "by_tenth": [{"steps": [int(idx[0]) + 1, int(idx[-1]) + 1], "reward": mean("reward_mean", idx),
                      "em": mean("em_mean", idx), "f1": mean("f1_mean", idx),
                      "groups_uniform": mean("groups_uniform", idx), "entropy": mean("entropy", idx),
                      "searches": mean("searches_per_rollout", idx), "seconds": mean("step_seconds", idx)}
                     for idx in tenths],
        "seconds_per_step": float(np.mean([r["step_seconds"] for r in rows])) if rows else None,
    }


def room_table(room: dict[str, dict[str, Any]], k: int) -> str:
    lines = [f"| questions | n | greedy EM | greedy F1 | pass@{k} | mean@{k} (EM) | mean F1 of the samples | "
             f"mixed (0 < right < {k}) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, results in room.items():
        a = results["average"]
        lines.append(f"| {name} | {a['n']:.0f} | {100 * a['em']:.1f} | {100 * a['f1']:.1f} | "
                     f"{100 * a['pass_at_k']:.1f} | {100 * a['mean_at_k']:.1f} | {100 * a['sample_f1']:.1f} | "
                     f"{100 * a['mixed_rate']:.1f} |")
    return "\n".join(lines) + "\n"


def curve_table(curve: dict[str, Any]) -> str:
    lines = ["| steps | reward | EM (sampled) | F1 (sampled) | uniform groups | entropy | searches | s / step |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    for t in curve["by_tenth"]:
        lines.append(f"| {t['steps'][0]}-{t['steps'][1]} | {cell(t['reward'])} | {cell(t['em'])} | {cell(t['f1'])} | "
                     f"{cell(t['groups_uniform'], 1)} | {cell(t['entropy'])} | {cell(t['searches'], 2)} | "
                     f"{cell(t['seconds'], 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from zerosearch import checkpoint as ckpt
    from zerosearch.compare import eval_spec, evaluate_cached
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config
    from zerosearch.evaluate import evaluate
    from zerosearch.metrics import read_metrics
    from zerosearch.paired import compare_evaluations, format_comparison, write_comparison
    from zerosearch.pool import POOL_INFO, POOL_ROWS, pool_eval_spec, pool_table
    from zerosearch.runtime import configure_threads
    from zerosearch.trainer import finish_run, resume_run, start_run
    from zerosearch.warmup import run_warmup

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    cfg = load_train_config(EMBEDDED_DEFAULT, overrides(args) + args.overrides + [f"output_dir={run_dir}"])
    configure_threads(cfg.num_threads)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        print(f"[bench] {name}: {timings[name]:.0f} s", file=sys.stderr)

    t0 = time.perf_counter()
    warm = run_warmup(cfg)
    stage("warmup", t0)
    print(f"[bench] warm-up {'cached' if warm.cached else 'trained'}: {warm.model_dir}", file=sys.stderr)

    # the room: the training half is the pool's own scoring (same settings, so the run reads it from the cache)
    t0 = time.perf_counter()
    room: dict[str, dict[str, Any]] = {}
    pool_spec = pool_eval_spec(cfg)
    room["train"] = evaluate_cached(str(warm.model_dir), pool_spec, out / "room" / "train", True)
    if args.dev and args.dev_room:
        dev_spec = replace(pool_spec, data=replace(pool_spec.data, files=[str(DEV)], limit=args.dev, names=None))
        room["dev"] = evaluate_cached(str(warm.model_dir), dev_spec, out / "room" / "dev", True)
    stage("room", t0)

    t0 = time.perf_counter()
    if ckpt.latest_checkpoint(run_dir) is not None:
        trainer = resume_run(run_dir)
    else:
        trainer = start_run(cfg)  # scores the pool (from the room's cache) and trains on it
    if trainer.step < cfg.total_steps:
        trainer.train()
    finish_run(trainer)  # the report (final_eval is off: the paired evaluations follow)
    stage("rl", t0)
    pool_info = json.loads((run_dir / POOL_INFO).read_text(encoding="utf-8"))
    rows = read_metrics(run_dir)
    curve = curve_summary(rows)

    # paired greedy evaluations: the warm-up (cached by content) and the trained policy on the same questions
    t0 = time.perf_counter()
    policy = str(ckpt.latest_checkpoint(run_dir) / "policy")
    base = eval_spec(cfg)
    base = replace(base, settings=replace(base.settings, batch_size=32))
    pool_rows = [str(run_dir / POOL_ROWS)]
    sets = {"pool": replace(base, data=replace(base.data, files=pool_rows, limit=None, names=["pool"]))}
    if args.dev:
        sets["dev"] = replace(base, data=replace(base.data, files=[str(DEV)], limit=args.dev, names=["dev"]))
    comparisons: dict[str, dict[str, Any]] = {}
    markdown: list[str] = []
    for name, spec in sets.items():
        warm_dir, trained_dir = out / "eval" / f"warmup_{name}", out / "eval" / f"trained_{name}"
        evaluate_cached(str(warm.model_dir), spec, warm_dir, True)
        evaluate(policy, spec, trained_dir, progress=True)
        comparisons[name] = compare_evaluations(warm_dir, trained_dir, seed=args.seed)
        write_comparison(comparisons[name], out / "eval" / f"compare_{name}", "after warm-up", "after RL")
        markdown.append(format_comparison(comparisons[name], "after warm-up", "after RL")
                        .replace("# after RL vs after warm-up", f"### {name}: after RL vs after warm-up"))
    stage("paired_eval", t0)

    wall = time.perf_counter() - started
    summary = {
        "settings": {**vars(args), "out": str(out), "overrides": overrides(args) + args.overrides},
        "warmup": {"model_dir": str(warm.model_dir), "cached": warm.cached},
        "room": {name: r["average"] for name, r in room.items()}, "pool": pool_info, "curve": curve,
        "paired": comparisons, "timings_seconds": timings, "wall_seconds": wall,
        "machine": {"platform": platform.platform(), "threads": cfg.num_threads or None},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    k = args.samples
    text = "\n".join([
        f"# Learning benchmark: SmolLM2-135M, {args.algorithm}, {args.steps} steps x {args.prompts} questions x "
        f"{args.rollouts} rollouts, lr {args.lr}, reward {args.reward}, KL {args.kl}, "
        f"{args.ppo_epochs} epochs of mini-batches of {args.mini_batch or 'all'}"
        + (f"; {' '.join(args.overrides)}" if args.overrides else ""), "",
        f"## Room to learn: the warm-up, greedy and {k} samples at temperature {cfg.temperature:g} (real BM25)", "",
        room_table(room, k),
        "## The training pool (mixed outcomes, scored with the warm-up)", "", pool_table(pool_info),
        f"## Training (sampled at temperature {cfg.temperature:g}; means over each tenth of the steps)", "",
        curve_table(curve),
        "## Paired greedy evaluation against the warm-up (real BM25)", "", *markdown,
        "time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()) + f"; wall {wall:.0f} s",
    ]) + "\n"
    (out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
