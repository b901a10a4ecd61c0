"""The paper's comparisons in miniature on SmolLM2-135M: simulated vs real search, curriculum vs fixed noise,
and the trained agents against RAG and direct answering (not in CI).

From the same warmed-up SmolLM2-135M-Instruct (the embedded default's format warm-up: 64 real BM25
demonstrations), the same questions, seed and RL settings (the embedded default's: ``rloo``, 8 steps x 2
questions x 4 rollouts, KL 0.05 to the warm-up, lr 1e-5; ``--set`` changes any), train:

* ``simulated``: search simulated by the SmolLM2 prompt-mode simulator, noise curriculum 0 -> 0.5 (ZeroSearch);
* ``real``: real BM25 search over the bundled HotpotQA paragraphs (``engine.kind=real engine.spec=example``;
  the paper's Search-R1 baseline);
* ``fixed``: simulated search at a fixed noise probability 0.5 (``curriculum.start=end=0.5``; the paper's
  curriculum ablation);
* ``warmup``: no RL (the warm-up alone).

Then evaluate all four with real BM25 on the first ``--dev`` HotpotQA dev questions (greedy, ``agent``), and
the warmed-up model as ``rag`` (top-3 BM25 documents for the question) and ``direct`` (no search). Documents
are shown in the default ``doc_format`` (``zerosearch``: ``Doc i: text``) in training and evaluation alike.
The arms are compared on the same questions with :mod:`zerosearch.paired` (paired bootstrap 95% CI of the
difference, McNemar's exact p on EM): each against the warm-up, and the paper's two claims, simulated against
real search and the curriculum against fixed noise. The warm-up's evaluations go through the evaluation cache.

    python benchmarks/fidelity_smollm2.py                      # ~1 h on 2 CPU cores
    python benchmarks/fidelity_smollm2.py --steps 2 --dev 10 --out /tmp/fidelity-smoke

Writes ``<out>/results.json`` and ``<out>/results.md`` (a table of EM, F1, searches per question,
invalid-action rate, training and evaluation wall time per run, and the paired table), ``<out>/compare/B_vs_A/``
(``zerosearch compare``'s files) and a run directory (metrics, rollouts, report) per trained arm. A rerun
reuses the warm-up cache, arms already trained and evaluations already done.

Results (2026-12-08, 2 idle CPU cores, the defaults above, seed 0; 47 min in all, the warm-up and its dev
evaluation from the cache):

    | run       | EM (%) | F1 (%) | searches / q | invalid actions (%) | RL wall (s) | eval wall (s) |
    |-----------|-------:|-------:|-------------:|--------------------:|------------:|--------------:|
    | simulated |   10.0 |   15.1 |         1.00 |                 0.0 |         338 |           462 |
    | real      |    9.3 |   14.0 |         1.01 |                 0.3 |         317 |           487 |
    | fixed     |    9.3 |   13.2 |         1.00 |                 0.0 |         297 |           372 |
    | warmup    |    8.3 |   12.7 |         1.00 |                 0.0 |           - |      (cached) |
    | rag       |    4.7 |    5.7 |         1.00 |                 3.0 |           - |           429 |
    | direct    |    6.0 |    9.7 |         0.00 |                 0.3 |           - |            75 |

    | B vs A              |   n | EM A -> B   | EM diff [95% CI]  | p (McNemar) | F1 diff [95% CI]  |
    |---------------------|----:|-------------|-------------------|------------:|-------------------|
    | simulated vs warmup | 300 | 8.3 -> 10.0 | +1.7 [-1.0, +4.3] |       0.332 | +2.4 [-0.4, +5.3] |
    | real vs warmup      | 300 | 8.3 -> 9.3  | +1.0 [-2.3, +4.0] |       0.678 | +1.3 [-2.0, +4.6] |
    | fixed vs warmup     | 300 | 8.3 -> 9.3  | +1.0 [-1.0, +3.3] |       0.549 | +0.5 [-1.8, +2.7] |
    | simulated vs real   | 300 | 9.3 -> 10.0 | +0.7 [-2.0, +3.3] |       0.804 | +1.1 [-1.6, +3.9] |
    | simulated vs fixed  | 300 | 9.3 -> 10.0 | +0.7 [-2.7, +4.0] |       0.839 | +1.9 [-1.5, +5.3] |

    training (sampled, temperature 1)   simulated        real             fixed (p = 0.5)
    reward (F1), first -> last third    0.312 -> 0.004   0.104 -> 0.042   0.286 -> 0.062
    invalid actions (mean)              0.060            0.035            0.000
    searches / rollout                  0.81             1.14             0.83
    failed searches (left out)          17               0                13
    seconds / step                      42.2             39.6             37.1

What it shows: no detectable change anywhere. Every RL arm ends 1-2 EM points above the warm-up with an
interval that contains 0, and the paper's two comparisons (simulated > real, curriculum > fixed noise) come out
+0.7 EM with intervals about ±3 points wide: at 64 trajectories an arm, effects smaller than that cannot be
told from noise here. The ``simulated`` arm is exactly the default run
(same seed, settings and warm-up: the same rewards step by step), so its row is the default run's table on 300
questions instead of 50. The sampled reward falls as the simulator's noise rises (simulated, 0 -> 0.5) and is
low throughout against real BM25 (a simulator told the answer can write it into a useful document; BM25 has
to find it); none of it reached the greedy answers measurably. Searching helps the warmed-up model, which answers directly
at 6.0 EM and with search at 8.3 (+2.3; this comparison was not paired); RAG with the same model (top-3
documents pasted before the question, a prompt it was never warmed up on) is worse than either. The failed
searches are simulator replies with no parseable document, counted and left out of the update. Showing the
paper's comparisons needs the RL effect that ``benchmarks/learning_smollm2.py`` found (hundreds of
trajectories on questions of intermediate difficulty) in each arm: about 1.5 h an arm on this machine.

Earlier (2026-11-30; a 128-demonstration warm-up, REINFORCE, 10 steps x 4 questions x 2 rollouts, lr 2e-5, 200
questions, no paired statistics): simulated 12.5 / 18.7, real 12.5 / 19.2, fixed 13.0 / 18.0, warm-up 13.0 /
18.3 (EM / F1), 119-125 of 200 greedy answers unchanged.
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
from _args import add_rl_options, check_arms, check_overrides, key_value, positive_int, rl_overrides  # noqa: E402

# Overrides of each RL arm on top of the common settings (the embedded default's engine is the simulator).
ARMS = {
    "simulated": [],
    "real": ["engine.kind=real", "engine.spec=example"],
    "fixed": ["curriculum.start=0.5", "curriculum.end=0.5"],
}
RUNS = ("simulated", "real", "fixed", "warmup", "rag", "direct")
# Paired comparisons (B, A): B - A on the same dev questions. The paper's two claims are the last two.
PAIRS = (("simulated", "warmup"), ("real", "warmup"), ("fixed", "warmup"), ("simulated", "real"),
         ("simulated", "fixed"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_rl_options(parser, steps=8, dev_help="HotpotQA dev questions evaluated (default 300)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated RL arms (default {','.join(ARMS)})")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="questions answered together in the evaluations (default 32; results do not depend on it)")
    parser.add_argument("--set", dest="overrides", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every arm, on top of the embedded default and the options "
                             "above (repeatable), e.g. --set algorithm=reinforce --set kl_coef=0.001")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_fidelity")
    args = parser.parse_args(argv)
    check_arms(parser, args, ARMS)
    from zerosearch.config import EMBEDDED_DEFAULT

    problem = check_overrides(rl_overrides(args), args.overrides, path=EMBEDDED_DEFAULT)
    if problem:
        parser.error(problem)
    return args


def training_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the steps of ``metrics.jsonl``, and the reward in the first and last third."""
    k = max(1, len(rows) // 3)
    rewards = [r["reward_mean"] for r in rows]
    return {
        "reward_first_third": float(np.mean(rewards[:k])), "reward_last_third": float(np.mean(rewards[-k:])),
        "invalid_action_rate": float(np.mean([r["invalid_action_rate"] for r in rows])),
        "searches_per_rollout": float(np.mean([r["searches_per_rollout"] for r in rows])),
        "search_failures": int(sum(r["search_failures"] for r in rows)),
        "seconds_per_step": float(np.mean([r["step_seconds"] for r in rows])),
        "rewards": rewards,
    }


def searches_per_question(eval_dir: Path) -> float:
    """Searches the engine answered per question, from the examples' turns (a ``<search>`` written in the
    final turn is never sent; evaluations before that fix counted it in ``n_searches``)."""
    counts = []
    for path in sorted((eval_dir / "examples").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            turns = json.loads(line)["turns"]
            counts.append(sum(1 for t in turns if t["action"] in ("search", "retrieve")
                              and t.get("query") is not None and t.get("error") is None))
    return sum(counts) / len(counts) if counts else float("nan")


def table(results: dict[str, dict[str, Any]], seconds: dict[str, dict[str, float]]) -> str:
    head = ("| run | EM (%) | F1 (%) | searches / q | invalid actions (%) | RL wall (s) | eval wall (s) |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for name in RUNS:
        if name not in results:
            continue
        a = results[name]["average"]
        rl = seconds.get(name, {}).get("rl")
        searches = searches_per_question(Path(results[name]["output_dir"]))
        lines.append(f"| {name} | {100 * a['em']:.1f} | {100 * a['f1']:.1f} | {searches:.2f} | "
                     f"{100 * a['invalid_action_rate']:.1f} | {'-' if rl is None else f'{rl:.0f}'} | "
                     f"{seconds.get(name, {}).get('eval', float('nan')):.0f} |")
    return "\n".join(lines)


def paired_table(paired: dict[str, dict[str, Any]]) -> str:
    """A row per comparison of :data:`PAIRS` (B − A on the same questions, points): EM and F1 difference with
    the paired bootstrap 95% CI, McNemar's p on EM, and the reading ("no detectable change": both CIs span 0)."""
    from zerosearch.compare import paired_reading
    from zerosearch.paired import format_diff, format_p

    if not paired:
        return ""
    lines = ["| B vs A | n | EM A → B | EM diff [95% CI] | p (McNemar) | F1 diff [95% CI] | reading |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for key, comparison in paired.items():
        b, a = key.split("_vs_")
        row = comparison["average"]
        em, f1 = row["em"], row["f1"]
        lines.append(f"| {b} vs {a} | {row['n']} | {em['a']:.1f} → {em['b']:.1f} | {format_diff(em)} | "
                     f"{format_p(em['p_mcnemar'])} | {format_diff(f1)} | {paired_reading(row)} |")
    first = next(iter(paired.values()))
    boot = first["bootstrap"]
    lines += ["", f"95% CI: paired bootstrap over the questions ({boot['resamples']:,} resamples, seed {boot['seed']}). "
                  f"p: McNemar's exact two-sided test on EM. One question is {100 / max(1, first['average']['n']):.2f} "
                  "points."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from zerosearch import checkpoint as ckpt
    from zerosearch.compare import eval_spec, evaluate_cached
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config, save_config
    from zerosearch.evaluate import evaluate
    from zerosearch.metrics import read_metrics
    from zerosearch.paired import compare_evaluations, write_comparison
    from zerosearch.report import write_report
    from zerosearch.runtime import configure_threads
    from zerosearch.trainer import Trainer
    from zerosearch.warmup import run_warmup

    arms = args.arms
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    common = rl_overrides(args) + args.overrides
    base = load_train_config(EMBEDDED_DEFAULT, common)
    configure_threads(base.num_threads)

    t0 = time.perf_counter()
    warm = run_warmup(base)
    warmup_seconds = time.perf_counter() - t0
    print(f"[bench] warm-up {'cached' if warm.cached else 'trained'} ({warmup_seconds:.0f} s): {warm.model_dir}",
          file=sys.stderr)

    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, dict[str, float]] = {}
    training: dict[str, dict[str, Any]] = {}

    def run_eval(name: str, model: str, out: Path, cached: bool = False, **settings: Any) -> None:
        spec = eval_spec(base)
        # named "dev" as in learning_smollm2, whose evaluation of the same warm-up on the same questions the
        # cache then serves
        spec = replace(spec, data=replace(spec.data, names=["dev"]),
                       settings=replace(spec.settings, batch_size=args.batch_size, **settings))
        t = time.perf_counter()
        # the warm-up's evaluations come from the evaluation cache when another run made them (same model by
        # content, questions and settings): learning_smollm2's dev evaluation of the same warm-up, for one
        results[name] = (evaluate_cached if cached else evaluate)(model, spec, out, progress=True)
        # a resumed evaluation reports its own record of the time it took
        seconds.setdefault(name, {})["eval"] = results[name].get("wall_seconds", time.perf_counter() - t)

    run_eval("warmup", str(warm.model_dir), args.out / "eval_warmup", cached=True)
    for method in ("rag", "direct"):
        run_eval(method, str(warm.model_dir), args.out / f"eval_{method}", cached=True, method=method,
                 prompt_template=None)

    for arm in arms:
        cfg = load_train_config(EMBEDDED_DEFAULT, common + ARMS[arm] + [f"output_dir={args.out / arm}"])
        run_dir = args.out / arm
        if (run_dir / "metrics.jsonl").exists() and len(read_metrics(run_dir)) >= args.steps:
            print(f"[bench] {arm}: already trained in {run_dir}", file=sys.stderr)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            trainer = Trainer(cfg, run_dir, init_model=str(warm.model_dir))
            save_config(cfg, run_dir / "config.yaml")
            trainer.train()  # saves the last step's checkpoint
        rows = read_metrics(run_dir)
        training[arm] = training_summary(rows)
        seconds.setdefault(arm, {})["rl"] = float(sum(r["step_seconds"] for r in rows))
        run_eval(arm, str(ckpt.latest_checkpoint(run_dir) / "policy"), run_dir / "eval")
        write_report(run_dir)

    paired: dict[str, dict[str, Any]] = {}
    for b, a in PAIRS:
        if a in results and b in results:
            key = f"{b}_vs_{a}"
            paired[key] = compare_evaluations(results[a]["output_dir"], results[b]["output_dir"], seed=args.seed)
            write_comparison(paired[key], args.out / "compare" / key, a, b)

    wall = time.perf_counter() - started
    summary = {
        "settings": vars(args) | {"out": str(args.out), "overrides": common}, "warmup": warm.info,
        "warmup_seconds": warmup_seconds, "training": training, "dev": {name: r["average"] for name, r in results.items()},
        "paired": paired, "seconds": seconds, "wall_seconds": wall, "machine": {"platform": platform.platform()},
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    lines = [f"# Fidelity benchmark: SmolLM2-135M, {base.algorithm}, {args.steps} RL steps x {args.prompts} questions "
             f"x {args.rollouts} rollouts per arm, lr {args.lr:g}, KL {base.kl_coef:g}; {args.dev} HotpotQA dev "
             "questions, real BM25, greedy", "", table(results, seconds), "", paired_table(paired), ""]
    for arm, t in training.items():
        lines.append(f"- `{arm}` training: reward {t['reward_first_third']:.3f} (first third) -> "
                     f"{t['reward_last_third']:.3f} (last third); invalid actions {t['invalid_action_rate']:.3f}; "
                     f"searches / rollout {t['searches_per_rollout']:.2f}; search failures {t['search_failures']}; "
                     f"{t['seconds_per_step']:.1f} s / step")
    lines += ["", f"warm-up {warmup_seconds:.0f} s; wall {wall:.0f} s"]
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
