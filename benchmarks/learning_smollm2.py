"""Learning that holds up: does RL improve SmolLM2-135M on top of its format warm-up? (not in CI)

The embedded default's pipeline at a size where the reward has room to move:

* warm-up: ``--warmup-examples`` demonstrations from the HotpotQA train questions (real BM25 documents,
  one or two searches), one epoch (cached, as in ``zerosearch train``);
* RL, one run per arm from the same warmed-up model, seed and questions: ``--steps`` REINFORCE steps of
  ``--prompts`` x ``--rollouts`` trajectories against the SmolLM2 prompt-mode simulator with the noise
  curriculum 0 -> 0.5; arm ``plain`` is the paper's F1 reward, arm ``format`` adds the format bonus
  ``format_reward=0.2`` (Jin et al. 2025);
* evaluation with real BM25 on ``--dev`` dev questions (greedy): the warmed-up model (b) and each arm's
  final policy (c); the untrained model (a) is 0 on every metric at this size (it never answers in the
  protocol; see the default run's table), so it is not re-run here unless ``--untrained``.

    python benchmarks/learning_smollm2.py                         # ~2 h on 2 CPU cores
    python benchmarks/learning_smollm2.py --steps 4 --dev 20 --arms plain --out runs/bench_learning_smoke

Writes ``<out>/results.json`` and ``<out>/results.md`` (the dev table, the reward curve by thirds of the
steps, the wall time), and a full run directory (metrics, rollouts, report) per arm. A rerun skips the
warm-up, the arms already trained and the evaluations already done (all cached or resumed).

Results (2026-11-30, 2 CPU cores, bf16 autocast, defaults above; 200 HotpotQA dev questions, real BM25,
greedy; measured before ``doc_format`` existed, when BM25 passages were shown Search-R1's way,
``Doc i(Title: t) text``: today's default shows them ``Doc i: text``, see benchmarks/fidelity_smollm2.py). Warm-up: 127 demonstrations (79 with one search, 48 with two), 32 steps, 312 s.

    metric                 after warm-up   plain: after RL   format: after RL
    EM (%)                      13.0             11.0              13.0
    cover-EM (%)                14.0             14.0              15.5
    F1 (%)                      17.6             16.2              16.8
    answered (%)               100.0            100.0              98.0
    searches / question         1.00             1.02              1.30
    invalid actions (%)          0.0              0.2               0.7

    training (30 steps x 8)       plain                       format
    reward, first -> last third   0.177 -> 0.153 (mid 0.284)  0.335 -> 0.341 (mid 0.413)
    F1, first -> last third       0.177 -> 0.153              0.204 -> 0.233
    well formed (sampled)         0.68 -> 0.76                0.86 -> 0.78
    KL to the warm-up             0.015 -> 0.145              0.037 -> 0.150
    RL wall time                  2,369 s (79 s / step)       2,816 s (94 s / step)

Evaluation: 1.9 s / question for the warmed-up model, 2.9 for the RL policies (longer responses). Total
about 1 h 55 min.

What it shows: at this size and budget RL does not improve on the warm-up. The per-step reward (8
rollouts, most scoring 0 or 1) swings between 0 and 0.57 with no trend, and dev F1 moves by about one
question either way. The format bonus keeps sampled trajectories well formed and raises cover-EM by 1.5
points with more second searches, but it does not raise EM or F1. The rollouts point at the simulator, not the
update: the prompt-mode SmolLM2 simulator copies its few-shot example (the George Washington Bridge)
into 14-22% of the documents it writes, and only 33-49% of its "useful" result sets contain the gold
answer. In the plain arm the policy learned to copy the simulator's own "Doc N:" text into its second
query (1% of queries in the first third, 34% in the last). The documents it sees in training are
not the real BM25 snippets it is evaluated with. The paper's answer is a tuned simulator
(``zerosearch tune-simulator``). Training against real search is the comparison this would need next.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import add_rl_options, check_arms, rl_overrides  # noqa: E402

ARMS = {"plain": [], "format": ["format_reward=0.2"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_rl_options(parser, steps=30, dev_help="dev questions evaluated (default 200)")
    parser.add_argument("--arms", default="plain,format", help="comma-separated: plain, format (default both)")
    parser.add_argument("--untrained", action="store_true", help="also evaluate the untrained model")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_learning")
    args = parser.parse_args(argv)
    check_arms(parser, args, ARMS)
    return args


def thirds(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last third of a curve (at least one value each)."""
    k = max(1, len(values) // 3)
    return float(np.mean(values[:k])), float(np.mean(values[-k:]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from zerosearch import checkpoint as ckpt
    from zerosearch.compare import comparison_table, eval_kwargs, evaluate_cached
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config, save_config
    from zerosearch.evaluate import evaluate
    from zerosearch.metrics import read_metrics
    from zerosearch.report import write_report
    from zerosearch.runtime import configure_threads
    from zerosearch.trainer import Trainer
    from zerosearch.warmup import run_warmup

    arms = args.arms
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    common = rl_overrides(args)
    base = load_train_config(EMBEDDED_DEFAULT, common)
    configure_threads(base.num_threads)

    t0 = time.perf_counter()
    warm = run_warmup(base)
    timings["warmup"] = time.perf_counter() - t0
    print(f"[bench] warm-up {'cached' if warm.cached else 'trained'}: {warm.model_dir}", file=sys.stderr)

    kwargs = eval_kwargs(base)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    if args.untrained:
        results["untrained"] = evaluate_cached(base.model, kwargs, args.out / "eval_untrained", True)
    results["warmup"] = evaluate_cached(str(warm.model_dir), kwargs, args.out / "eval_warmup", True)
    timings["eval_baselines"] = time.perf_counter() - t0

    curves: dict[str, dict[str, Any]] = {}
    for arm in arms:
        cfg = load_train_config(EMBEDDED_DEFAULT, common + ARMS[arm] + [f"output_dir={args.out / arm}"])
        run_dir = args.out / arm
        if run_dir.exists() and (run_dir / "metrics.jsonl").exists() and len(read_metrics(run_dir)) >= args.steps:
            print(f"[bench] {arm}: already trained in {run_dir}", file=sys.stderr)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            trainer = Trainer(cfg, run_dir, init_model=str(warm.model_dir))
            save_config(cfg, run_dir / "config.yaml")
            trainer.train()  # saves the last step's checkpoint
            timings[f"rl_{arm}"] = time.perf_counter() - t0
        rows = read_metrics(run_dir)
        rewards = [r["reward_mean"] for r in rows]
        f1s = [r["f1_mean"] for r in rows]
        curves[arm] = {
            "reward_first_third": thirds(rewards)[0], "reward_last_third": thirds(rewards)[1],
            "f1_first_third": thirds(f1s)[0], "f1_last_third": thirds(f1s)[1],
            "invalid_action_rate": float(np.mean([r["invalid_action_rate"] for r in rows])),
            "searches_per_rollout": float(np.mean([r["searches_per_rollout"] for r in rows])),
            "well_formed_rate": float(np.mean([r.get("well_formed_rate", float("nan")) for r in rows])),
            "search_failures": int(sum(r["search_failures"] for r in rows)),
            "seconds_per_step": float(np.mean([r["step_seconds"] for r in rows])),
            "rewards": rewards,
        }
        policy = ckpt.latest_checkpoint(run_dir) / "policy"
        t0 = time.perf_counter()
        results[arm] = evaluate(str(policy), output_dir=run_dir / "eval", progress=True, **kwargs)
        timings[f"eval_{arm}"] = time.perf_counter() - t0
        write_report(run_dir)

    wall = time.perf_counter() - started
    summary = {
        "settings": vars(args) | {"out": str(args.out)}, "warmup": warm.info, "curves": curves,
        "dev": {name: r["average"] for name, r in results.items()}, "timings_seconds": timings,
        "wall_seconds": wall, "machine": {"platform": platform.platform(), "cpus": base.num_threads or None},
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    lines = [f"# Learning benchmark: SmolLM2-135M, {args.steps} RL steps x {args.prompts * args.rollouts} "
             f"rollouts per arm, lr {args.lr}, {args.dev} dev questions", ""]
    # the comparison table's columns are untrained / warm-up / trained: one table per arm
    for arm in arms:
        table = {k: results[k] for k in ("untrained", "warmup") if k in results} | {"trained": results[arm]}
        lines += [f"## arm `{arm}`", "", comparison_table(table), ""]
        c = curves[arm]
        lines.append(f"training reward, first third of the steps {c['reward_first_third']:.3f} -> last third "
                     f"{c['reward_last_third']:.3f}; F1 {c['f1_first_third']:.3f} -> {c['f1_last_third']:.3f}; "
                     f"invalid actions {c['invalid_action_rate']:.3f}, searches / rollout "
                     f"{c['searches_per_rollout']:.2f}, well formed {c['well_formed_rate']:.2f}, search failures "
                     f"{c['search_failures']}, {c['seconds_per_step']:.1f} s / step")
        lines.append("")
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; wall {wall:.0f} s")
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
