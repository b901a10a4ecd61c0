"""A zerosearch GRPO step against TRL's GRPOTrainer, side by side on the same work (not in CI).

Both sides train the same model by GRPO on the same prompts with the same batch and sampling:

* prompts: the policy prompt of the bundled HotpotQA train questions through the model's chat template,
  token-identical on both sides (checked before timing: TRL is given the same user message and applies
  the same template with the generation prompt);
* batch: ``--prompts`` questions x ``--generations`` completions a step, one mini-batch, one epoch;
* one turn of at most ``--tokens`` tokens, temperature 1, top-k off, top-p 1 (zerosearch: ``max_turns=0``,
  the answer turn only);
* reward: ``zerosearch.rewards`` F1 of the completion's ``<answer>`` against the gold answers on both sides;
* KL to a frozen reference with coefficient ``--kl`` (low-variance estimator on both sides), AdamW at a
  constant ``--lr``, weight decay 0.01, gradient clipping 1.0, fp32 on CPU, no logging, checkpoints or
  evaluation on either side.

Each side runs in its own process (its own peak RSS) with ``--threads`` torch threads, alternating
``--pairs`` times (zerosearch, TRL, zerosearch, TRL, ...), ``--steps`` steps each; a process reports its
mean seconds per step after its first (warm-up) step. The ratio is TRL seconds / zerosearch seconds over
the paired runs (> 1: zerosearch is faster).

What still differs, and why it is left so:

* Loss aggregation: TRL 1.16 defaults to ``loss_type="dapo"`` (token mean over the whole batch); zerosearch
  sums token losses and divides by the batch's policy tokens, the same normaliser. Advantages: both
  normalise within the group (mean and std).
* Stopping: TRL stops a completion at EOS; zerosearch stops at EOS or at a protocol stop string
  (``</search>``, ``</answer>``). The mean completion length of each side is printed so that the work can be
  compared; seconds per completion token are in the JSON output.
* zerosearch's step includes its rollout bookkeeping (loss masks, per-turn records); TRL's includes its
  own (reward gathering, metrics). Neither writes anything to disk during the timed steps.
* How the work is done, not what: zerosearch runs each prompt once for its ``--generations`` rollouts
  (one prefill in the rollout, one prompt pass per micro-batch in the reference scoring and the update:
  :mod:`zerosearch.shared_prefix`, same log-probs and gradients, ``tests/test_shared_prefix.py``), and takes
  the old log-probs from the update's own pass; TRL runs every (prompt, completion) row in full. With a
  ~300-token prompt and 32-token completions that is most of the difference.
  ``--zerosearch-override shared_prefix=false`` gives the row-by-row figure (the morning row below).

    python benchmarks/vs_trl.py                                  # tiny model, then SmolLM2-135M
    python benchmarks/vs_trl.py --models tiny --pairs 2 --steps 3 --threads 1
    python benchmarks/vs_trl.py --models tiny --zerosearch-override shared_prefix=false   # rows in full

Results (2026-11-30, 2-core AMD EPYC, one torch thread per process, TRL 1.16.0, defaults above, 2 pairs of
4 steps; runs/bench_vs_trl_shared.json):

    | model        | zerosearch s/step | TRL s/step | TRL / zerosearch        | completion tokens/step (zs / TRL) | peak RSS MB (zs / TRL) |
    | tiny         | 0.157             | 0.398      | 2.57 (2.35, 2.79)       | 484 / 500                         | 458 / 671              |
    | SmolLM2-135M | 24.3              | 80.3       | 3.31 (3.13, 3.50)       | 465 / 473                         | 5583 / 7743            |

Before prompts were shared (same morning, rows in full, one pair on SmolLM2): tiny 1.82x, SmolLM2 1.33x
(52.7 vs 70.0 s) with zerosearch's process peaking 12% *above* TRL's (8382 vs 7457 MB). Profiled by phase,
that peak was the update's activations for 16 full 330-token rows; sharing the 4 prompts cut the update's
peak to 5.6 GB, now 28% below TRL's. zerosearch generates 2-3% fewer tokens a step (it stops at protocol stop
strings); per completion token the SmolLM2 ratio is 3.25.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import check_overrides, key_value, non_negative_float, positive_float, positive_int  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QA = REPO / "src" / "zerosearch" / "example_data" / "hotpotqa_distractor_train.jsonl"
MODELS = {"tiny": "zerosearch:tiny", "smollm2-135m": "zerosearch:smollm2-135m-instruct"}

# Shared by both children: the rows, the prompts as user messages, and the reward.
COMMON = r"""
import json, resource, sys, time
import torch
spec = json.loads(sys.argv[1])
torch.manual_seed(spec["seed"])
torch.set_num_threads(spec["threads"])
from zerosearch.data import load_qa_files, policy_prompt
from zerosearch.llm.models import resolve_model_path
from zerosearch.prompts import load_template
from zerosearch.rewards import answer_metrics, extract_answer
rows = load_qa_files([spec["qa"]])[: spec["prompts"] * (spec["steps"] + 1)]
template = load_template("policy")
messages = [[{"role": "user", "content": policy_prompt(r.question, template)}] for r in rows]
model_path = resolve_model_path(spec["model"])

def f1(completion_text, golden_answers):
    prediction = extract_answer(completion_text)
    return answer_metrics(prediction, golden_answers)["f1"]

def report(step_seconds, completion_tokens):
    timed = step_seconds[1:] or step_seconds
    print("RESULT " + json.dumps({
        "seconds_per_step": sum(timed) / len(timed), "steps": step_seconds,
        "completion_tokens_per_step": sum(completion_tokens[1:] or completion_tokens) / len(timed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
"""

ZEROSEARCH_CHILD = COMMON + r"""
from zerosearch.config import load_train_config
from zerosearch.trainer import start_run
import tempfile
with tempfile.TemporaryDirectory() as tmp:
    cfg = load_train_config(None, spec["config"] + [f"output_dir={tmp}/run"])
    trainer = start_run(cfg, progress=False)
    seconds, tokens = [], []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        row = trainer.train_step()[0]
        seconds.append(time.perf_counter() - t0)
        tokens.append(row["response_tokens_mean"] * spec["prompts"] * spec["generations"])
report(seconds, tokens)
"""

TRL_CHILD = COMMON + r"""
import logging
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
logging.disable(logging.WARNING)
tokenizer = AutoTokenizer.from_pretrained(model_path)
dataset = Dataset.from_list([{"prompt": m, "golden_answers": list(r.golden_answers)} for m, r in zip(messages, rows)])

def reward(completions, golden_answers, **_):
    return [f1(c[0]["content"], g) for c, g in zip(completions, golden_answers)]

class Timer(TrainerCallback):
    def __init__(self):
        self.seconds, self.start = [], None
    def on_step_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        self.seconds.append(time.perf_counter() - self.start)

timer = Timer()
batch = spec["prompts"] * spec["generations"]
args = GRPOConfig(
    output_dir=spec["out"], per_device_train_batch_size=batch, gradient_accumulation_steps=1,
    num_generations=spec["generations"], max_completion_length=spec["tokens"], temperature=1.0, top_k=0,
    top_p=1.0, beta=spec["kl"], learning_rate=spec["lr"], lr_scheduler_type="constant",
    weight_decay=0.01, max_grad_norm=1.0, max_steps=spec["steps"], num_iterations=1, use_cpu=True,
    bf16=False, fp16=False, report_to="none", save_strategy="no", logging_strategy="no", seed=spec["seed"],
    disable_tqdm=True, dataloader_num_workers=0,
)
trainer = GRPOTrainer(model=model_path, reward_funcs=[reward], args=args, train_dataset=dataset,
                      processing_class=tokenizer, callbacks=[timer])
completion_tokens = []
original = trainer._generate_and_score_completions
def counting(inputs):
    out = original(inputs)
    completion_tokens.append(float(out["completion_mask"].sum()))
    return out
trainer._generate_and_score_completions = counting
trainer.train()
report(timer.seconds, completion_tokens)
"""


def zerosearch_config(spec: dict[str, Any]) -> list[str]:
    """zerosearch's side as ``key=value`` overrides (its child adds ``output_dir``); checked before any run."""
    return [
        f"model={spec['model']}", "algorithm=grpo", f"total_steps={spec['steps']}",
        f"prompts_per_step={spec['prompts']}", f"rollouts_per_prompt={spec['generations']}", "max_turns=0",
        f"max_turn_tokens={spec['tokens']}", "max_context_tokens=2048", "temperature=1.0",
        f"kl_coef={spec['kl']}", "kl_estimator=low_var_kl", f"lr={spec['lr']}", "warmup_ratio=0.0",
        "weight_decay=0.01", "grad_clip=1.0", "dtype=float32", "autocast=off", f"num_threads={spec['threads']}",
        f"train_files={spec['qa']}", "save_every=1000000", "log_rollouts=0",
        "report=false", f"seed={spec['seed']}", *spec["overrides"],
    ]


def model_spec(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """What both children of model ``name`` are given."""
    spec = {"model": MODELS[name], "qa": str(QA), "prompts": args.prompts, "generations": args.generations,
            "tokens": args.tokens, "kl": args.kl, "lr": args.lr, "steps": args.steps, "threads": args.threads,
            "seed": args.seed, "out": str(args.out.parent / "bench_vs_trl_tmp"),
            "overrides": args.zerosearch_override}
    spec["config"] = zerosearch_config(spec)
    return spec


def check_prompts_identical(model: str) -> int:
    """The prompt token ids zerosearch builds equal those TRL builds for the same message; returns the count."""
    sys.path.insert(0, str(REPO / "src"))
    from transformers import AutoTokenizer
    from trl.data_utils import maybe_apply_chat_template

    from zerosearch.data import load_qa_files, policy_prompt
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.policy import encode_prompt, use_chat_template
    from zerosearch.prompts import load_template

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    template = load_template("policy")
    rows = load_qa_files([str(QA)])[:8]
    for row in rows:
        text = policy_prompt(row.question, template)
        ours = encode_prompt(tokenizer, text, use_chat_template(tokenizer, "auto"))
        theirs_text = maybe_apply_chat_template({"prompt": [{"role": "user", "content": text}]}, tokenizer)["prompt"]
        theirs = tokenizer(theirs_text, add_special_tokens=False)["input_ids"]
        if ours != theirs:
            raise SystemExit(f"prompt tokens differ for {row.question!r}:\n{ours}\n{theirs}")
    return len(rows)


def run_child(code: str, spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child failed:\n{proc.stderr[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--prompts", type=positive_int, default=4)
    parser.add_argument("--generations", type=positive_int, default=4, help="completions per prompt (>= 2)")
    parser.add_argument("--tokens", type=positive_int, default=32, help="completion tokens at most (default 32)")
    parser.add_argument("--kl", type=non_negative_float, default=0.04,
                        help="KL coefficient on both sides (default 0.04)")
    parser.add_argument("--lr", type=positive_float, default=1e-6)
    parser.add_argument("--steps", type=positive_int, default=4, help="steps per process; the first is not timed")
    parser.add_argument("--pairs", type=positive_int, default=3, help="alternating zerosearch/TRL process pairs")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zerosearch-override", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                        help="extra zerosearch config for its side, e.g. shared_prefix=false (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_vs_trl.json")
    args = parser.parse_args()
    if args.generations < 2:  # GRPO normalises within a group, on both sides
        parser.error(f"argument --generations: GRPO needs at least 2 completions per prompt, got {args.generations}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the JSON")
    for name in args.models:  # zerosearch's config, as its child will load it (a key typo is caught here)
        config = model_spec(args, name)["config"]
        own = config[: len(config) - len(args.zerosearch_override)]
        problem = check_overrides(own, args.zerosearch_override, "--zerosearch-override")
        if problem:
            parser.error(problem)
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}, "models": {}}
    for name in args.models:
        model = MODELS[name]
        n = check_prompts_identical(model)
        print(f"[bench] {name}: prompt tokens identical on both sides ({n} prompts checked)", file=sys.stderr)
        spec = model_spec(args, name)
        runs: dict[str, list[dict[str, Any]]] = {"zerosearch": [], "trl": []}
        for pair in range(args.pairs):
            for side, code in (("zerosearch", ZEROSEARCH_CHILD), ("trl", TRL_CHILD)):
                r = run_child(code, spec)
                runs[side].append(r)
                print(f"[bench] {name} pair {pair + 1}/{args.pairs} {side}: {r['seconds_per_step']:.3f} s/step, "
                      f"{r['completion_tokens_per_step']:.0f} completion tokens/step, {r['peak_rss_mb']:.0f} MB",
                      file=sys.stderr)
        ours = [r["seconds_per_step"] for r in runs["zerosearch"]]
        theirs = [r["seconds_per_step"] for r in runs["trl"]]
        ratios = [t / o for o, t in zip(ours, theirs)]
        results["models"][name] = {
            "runs": runs, "ratio_trl_over_zerosearch": float(np.mean(ratios)), "ratios": ratios,
            "zerosearch_seconds": float(np.mean(ours)), "trl_seconds": float(np.mean(theirs)),
            "zerosearch_tokens": float(np.mean([r["completion_tokens_per_step"] for r in runs["zerosearch"]])),
            "trl_tokens": float(np.mean([r["completion_tokens_per_step"] for r in runs["trl"]])),
            "zerosearch_rss_mb": max(r["peak_rss_mb"] for r in runs["zerosearch"]),
            "trl_rss_mb": max(r["peak_rss_mb"] for r in runs["trl"]),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("| model | zerosearch s/step | TRL s/step | TRL / zerosearch | completion tokens/step (zs / TRL) "
          "| peak RSS MB (zs / TRL) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in results["models"].items():
        print(f"| {name} | {m['zerosearch_seconds']:.3f} | {m['trl_seconds']:.3f} | "
              f"{m['ratio_trl_over_zerosearch']:.2f} (pairs {', '.join(f'{x:.2f}' for x in m['ratios'])}) | "
              f"{m['zerosearch_tokens']:.0f} / {m['trl_tokens']:.0f} | "
              f"{m['zerosearch_rss_mb']:.0f} / {m['trl_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
