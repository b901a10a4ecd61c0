"""What makes the default run fit in 15 minutes on 2 CPU cores: each speed lever measured on and off.

Every lever runs a fixed piece of the default run's work on SmolLM2-135M-Instruct (forced lengths, fixed
seeds), on and off in turn (A B A B ...), in one process; the table gives the median seconds of each and
the ratio off / on (> 1: the lever pays).

    lever           the work                                                        on / off
    autocast        rollout generation: 8 rows, 500-token prompts, 64 new tokens    bf16 autocast / fp32
                    reference log-probs: 8 x 520 tokens, no grad                     bf16 autocast / fp32
                    update: forward + backward, 4 x 520 tokens                       bf16 autocast / fp32
    kv_cache        the same generation (bf16)                                      static / dynamic cache
    head            the update (bf16), 77 of 520 tokens trained on per row           head at those / everywhere
    stop            the simulator: 8 prompt-mode calls, top-3, max_tokens 128 / 512  stop at "Doc 4" / none
    threads         two processes doing the update (x2) at once on the machine's CPUs  1 thread each / all each
    kv_reuse        the default's rollout: 8 rows, 3 turns of <= 128 tokens (bf16)  turn cache kept / re-encode
                    the same, against the static cache (which cannot be carried)     dynamic + kept / static

    python benchmarks/speed_levers.py                   # all levers, 3 pairs each (~15 min on 2 idle cores)
    python benchmarks/speed_levers.py --levers stop,head --pairs 5
    python benchmarks/speed_levers.py --work update --threads 1   # one piece of work once (used by `threads`)

bf16 needs CPU bf16 instructions (avx512_bf16 or AMX) to pay; elsewhere it is emulated and slower, which is
why the default's ``autocast: auto`` turns it on only where they exist.

Results (2026-11-30, 2 CPU cores with AMX, 3 pairs, medians; ``runs/speed_levers.json``):

    lever      work                                   on        off     off / on   kept
    autocast   generation (dynamic cache)           12.98 s   14.09 s    1.08      yes (auto)
    autocast   reference log-probs                   3.82 s    6.31 s    1.65      yes
    autocast   update                                6.33 s   10.33 s    1.63      yes
    kv_cache   generation (bf16)                    10.44 s   14.12 s    1.35      single-turn only (below)
    head       update (bf16)                         6.45 s    7.99 s    1.20      yes (always)
    stop       simulator calls, max_tokens 128      11.53 s   12.56 s    1.07      yes (free; see below)
    stop       simulator calls, max_tokens 512      14.86 s   15.01 s    1.01
    threads    two concurrent updates (x2 each)     24.68 s   53.56 s    2.23      yes (override)
    kv_reuse   turn-2 prefill, 25 x 773 tokens      12.04 s   18.61 s    1.55      (the upper bound, before it was built)

Generation in bf16 with the static cache is 1.35x as fast as in fp32 with the dynamic cache (14.09 / 10.44);
in the embedded default's evaluation of 50 questions the two settings measured 103 s against 151 s.
``stop``: SmolLM2 in prompt mode writes 1.5 of the 3 documents asked on average (12 of 24, 39 tokens
each) and then ends its reply itself, so it never reaches "Doc 4" and the stop string cannot save anything
for it. The lever is kept because it costs nothing and it helps any simulator that writes all the
documents the prompt asks for: the prompt asks for five, the original cut at ``topk``.
``threads``: torch already limits itself to the CPUs in the affinity set; the lever is the override
(``num_threads`` / ``ZEROSEARCH_NUM_THREADS``) and the cgroup quota, for processes sharing cores.
``kv_reuse``: turn 2 re-reads the prompt and turn 1 (253 of 773 tokens here), and skipping them saves
at most a third of that prefill. Prefill is a small part of a step, so this is about 2 s of a 40-60 s RL
step, or up to 13 s of the 50-question evaluation.

``kv_reuse``, built (:mod:`zerosearch.turn_cache`; 2026-11-30, 3 pairs, ``runs/speed_levers_kv_reuse.json``):

    lever      work                                   on        off     off / on   kept
    kv_reuse   rollout, dynamic cache               23.16 s   25.28 s    1.10      yes (with kv_cache=dynamic)
    kv_reuse   rollout, vs static cache             22.92 s   27.75 s    1.14      default: dynamic + kept

Same tokens with the turn cache and without (1,159: the same seed samples the same rollouts), so the 1.10 is
the same work done faster; every pair agreed (22.2-23.2 s against 25.2-25.6 s). Re-checked with the order
alternating within pairs (4 pairs in one process): 23.93 s against 25.94 s, every pair for the turn cache
(1.07-1.21). A whole process doing one rollout from cold (model load included, 5 pairs) showed no difference
beyond the noise (ratio 1.00, range 0.93-1.03): the saving is about 2 s of prefill, within the run-to-run
spread of a fresh process. The static cache sampled
other tokens (1,014: bf16 rounds differently there), so that row compares different work: per generated
token it is 19.8 ms against 27.4 ms for the static cache.

Whole runs, measured next (2026-11-30, one quick-start run each, from the same warm-up): the RL steps took the
same time both ways (251 s of step time with the turn cache, 250 s with the static cache), and the 50-question
evaluation was faster with the turn cache (1.3-1.4 against 1.5-2.4 s a question across the three models
evaluated). Timed alone as whole processes, the warmed-up model's evaluation took a median 73.2 s against 89.7
s with the static cache (3 alternating pairs, ratio 0.82, range 0.69-0.85; the same answers and response
tokens), with 0.6 GB more peak memory. So the embedded default now has ``kv_cache: dynamic``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import non_negative_int, positive_int  # noqa: E402
LEVERS = ("autocast", "kv_cache", "head", "stop", "threads", "kv_reuse")


def _model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerosearch.llm.models import resolve_model_path

    path = resolve_model_path("zerosearch:smollm2-135m-instruct")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


def _ids(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(100, 40000, (rows, length), generator=torch.Generator().manual_seed(seed))


def _autocast(on: bool):
    from zerosearch.runtime import autocast_context

    return autocast_context(torch.device("cpu"), torch.bfloat16 if on else None)


def work_generate(model, bf16: bool, static: bool) -> None:
    x = _ids(8, 500)
    extra = {"cache_implementation": "static"} if static else {}
    torch.manual_seed(0)
    with torch.no_grad(), _autocast(bf16):
        model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=64, min_new_tokens=64,
                       do_sample=True, top_k=0, top_p=1.0, pad_token_id=0, **extra)


def _window(rows: int):
    from zerosearch.policy import build_window, right_align

    x = _ids(rows, 520)
    window = build_window([r[:100].tolist() for r in x], [r[100:].tolist() for r in x], 0, torch.device("cpu"))
    mask = torch.zeros(rows, 420)
    mask[:, :40] = 1  # the think + search the policy wrote
    mask[:, -37:] = 1  # and its answer turn; the documents between them are the environment's
    return window, right_align(list(mask), window.width, torch.device("cpu"))


def work_score(model, bf16: bool) -> None:
    from zerosearch.policy import selected_logprobs

    window, mask = _window(8)
    with torch.no_grad(), _autocast(bf16):
        selected_logprobs(model, window, mask)


def work_update(model, bf16: bool, head_on_selected: bool = True) -> None:
    from zerosearch.policy import response_logits, selected_logprobs
    from zerosearch.rl.losses import token_logprobs

    window, mask = _window(4)
    model.train()
    with _autocast(bf16):
        if head_on_selected:
            logp = selected_logprobs(model, window, mask).logprobs
        else:
            logp = token_logprobs(response_logits(model, window), window.targets)
        loss = -(logp * mask).sum() / mask.sum()
    loss.backward()
    model.zero_grad(set_to_none=True)


def work_simulator(stop: bool, max_tokens: int = 128) -> dict[str, float]:
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.search.base import SearchRequest
    from zerosearch.search.documents import parse_simulated_documents
    from zerosearch.search.simulated import SimulatedSearchEngine, stop_strings

    global _CHAT
    if "_CHAT" not in globals():
        _CHAT = TransformersChatModel(resolve_model_path("zerosearch:smollm2-135m-instruct"), seed=0,
                                      autocast=torch.bfloat16, kv_cache="static")
    engine = SimulatedSearchEngine(_CHAT, mode="prompt", max_tokens=max_tokens)
    questions = [("Who wrote Hamlet?", "William Shakespeare"), ("Where is the Eiffel Tower?", "Paris"),
                 ("When did World War II end?", "1945"), ("What is the capital of Japan?", "Tokyo")]
    requests = [SearchRequest(query=q, question=q, golden_answers=(a,), noisy=bool(i % 2))
                for i, (q, a) in enumerate(questions * 2)]
    conversations = [engine.conversation_for(r) for r in requests]
    start = time.perf_counter()
    outs = _CHAT.complete(conversations, max_tokens=max_tokens, temperature=0.8, stop=stop_strings(3) if stop else None,
                          seed=0)
    seconds = time.perf_counter() - start
    tokens = sum(len(_CHAT.tokenizer(o.text, add_special_tokens=False)["input_ids"]) for o in outs)
    docs = sum(len(parse_simulated_documents(o.text, 3)) for o in outs)
    return {"seconds": seconds, "tokens_per_document": tokens / max(1, docs), "documents": docs}


class _ThreeDocuments:
    """A search engine that always returns the same three ~30-word documents (no index, no simulator)."""

    name = "three-documents"

    def search(self, requests, topk):
        from zerosearch.search.base import Document, SearchResult

        text = ("The Eiffel Tower was designed by the engineering firm of Gustave Eiffel and completed in 1889 for "
                "the World's Fair in Paris, France, where it still stands on the Champ de Mars today.")
        return [SearchResult(documents=[Document(text)] * min(topk, 3)) for _ in requests]


def work_rollout(model, tokenizer, kv_cache: str, kv_reuse: bool) -> dict[str, float]:
    """The default's rollout: 4 prompts x 2 rollouts, max_turns 2, 128 tokens a turn, sampled with one seed.

    SmolLM2 does not follow the protocol, so every turn ends in the corrective message and the next turn
    continues after it: three turns a row, each context longer than the last. The same seed gives the same
    tokens whichever cache is used (checked: the token counts are printed)."""
    from zerosearch.data import policy_prompt
    from zerosearch.policy import encode_prompt
    from zerosearch.prompts import load_template
    from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory

    questions = ["who designed the eiffel tower", "what is the capital of france", "who wrote hamlet",
                 "when did world war two end"]
    template = load_template("policy")
    settings = RolloutSettings(max_turns=2, topk=3, max_turn_tokens=128, max_obs_tokens=512, max_context_tokens=2048,
                               temperature=1.0, kv_cache=kv_cache, kv_reuse=kv_reuse)
    runner = RolloutRunner(model, tokenizer, _ThreeDocuments(), settings, torch.device("cpu"), autocast=torch.bfloat16)
    trajectories = [Trajectory(q, ("x",), encode_prompt(tokenizer, policy_prompt(q, template), True), group=g)
                    for g, q in enumerate(questions) for _ in range(2)]
    torch.manual_seed(0)
    start = time.perf_counter()
    runner.run(trajectories)
    return {"seconds": time.perf_counter() - start, "tokens": sum(len(t.response_ids) for t in trajectories)}


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _threads_pair(threads: int) -> float:
    """Two processes doing the update at once, each with ``threads`` torch threads: seconds of the slower.

    Each process times its own updates after loading the model, so start-up and loading (which also
    overlap) stay out of the number.
    """
    command = [sys.executable, __file__, "--work", "update", "--threads", str(threads)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    seconds = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{command} failed")
        seconds.append(float(out.strip().splitlines()[-1]))
    return max(seconds)


def measure(levers: list[str], pairs: int) -> list[dict[str, object]]:
    model, tokenizer = _model()
    work_update(model, True)  # first-call costs (oneDNN kernels, allocations) out of the way
    work_generate(model, True, True)
    cases: dict[str, list[tuple[str, Callable[[], float], Callable[[], float]]]] = {
        "autocast": [
            ("generation", lambda: _timed(lambda: work_generate(model, True, False)),
             lambda: _timed(lambda: work_generate(model, False, False))),
            ("reference log-probs", lambda: _timed(lambda: work_score(model, True)),
             lambda: _timed(lambda: work_score(model, False))),
            ("update", lambda: _timed(lambda: work_update(model, True)), lambda: _timed(lambda: work_update(model, False))),
        ],
        "kv_cache": [("generation", lambda: _timed(lambda: work_generate(model, True, True)),
                      lambda: _timed(lambda: work_generate(model, True, False)))],
        "head": [("update", lambda: _timed(lambda: work_update(model, True, True)),
                  lambda: _timed(lambda: work_update(model, True, False)))],
        "stop": [(f"simulator calls, max_tokens {n}", lambda n=n: work_simulator(True, n)["seconds"],
                  lambda n=n: work_simulator(False, n)["seconds"]) for n in (128, 512)],
        "threads": [("two concurrent updates", lambda: _threads_pair(1), lambda: _threads_pair(os.cpu_count() or 2))],
        "kv_reuse": [("rollout, dynamic cache", lambda: work_rollout(model, tokenizer, "dynamic", True)["seconds"],
                      lambda: work_rollout(model, tokenizer, "dynamic", False)["seconds"]),
                     ("rollout, vs static cache", lambda: work_rollout(model, tokenizer, "dynamic", True)["seconds"],
                      lambda: work_rollout(model, tokenizer, "static", False)["seconds"])],
    }
    rows = []
    for lever in levers:
        for name, on, off in cases[lever]:
            on_times, off_times = [], []
            for _ in range(pairs):
                on_times.append(on())
                off_times.append(off())
            row = {"lever": lever, "work": name, "on_s": statistics.median(on_times),
                   "off_s": statistics.median(off_times),
                   "ratio": statistics.median(b / a for a, b in zip(on_times, off_times)),
                   "on_all": on_times, "off_all": off_times}
            rows.append(row)
            print(f"{lever:9s} {name:26s} on {row['on_s']:7.2f} s  off {row['off_s']:7.2f} s  off/on {row['ratio']:.2f}",
                  flush=True)
    if "kv_reuse" in levers:
        tokens = {(c, r): work_rollout(model, tokenizer, c, r)["tokens"]
                  for c, r in (("dynamic", True), ("dynamic", False), ("static", False))}
        print(f"kv_reuse  rollout tokens (dynamic + reuse, dynamic, static): {list(tokens.values())}", flush=True)
        if len(set(tokens.values())) != 1:
            print("kv_reuse  WARNING: the arms generated different tokens, so the work differs", flush=True)
    if "stop" in levers:
        for n in (128, 512):
            for mode in (True, False):
                stats = work_simulator(mode, n)
                rows.append({"lever": "stop", "work": f"max_tokens {n}, stop {'on' if mode else 'off'}",
                             "tokens_per_document": stats["tokens_per_document"], "documents": stats["documents"]})
                print(f"stop      max_tokens {n}, stop {'on ' if mode else 'off'}: {stats['documents']} documents "
                      f"of 24, {stats['tokens_per_document']:.0f} tokens per document", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of {', '.join(LEVERS)}")
    parser.add_argument("--pairs", type=positive_int, default=3, help="on/off pairs per lever (default 3)")
    parser.add_argument("--work", choices=["update"], help="run one piece of work once and exit")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="torch threads for --work (0: the CPUs we may use)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    levers = [lever.strip() for lever in args.levers.split(",") if lever.strip()]
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        parser.error(f"--levers: unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    if not levers and not args.work:
        parser.error(f"--levers: name at least one of {', '.join(LEVERS)}")
    if args.out and args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the JSON")
    from zerosearch.runtime import configure_threads

    configure_threads(args.threads)
    if args.work:
        model, _ = _model()
        work_update(model, True)  # first-call costs
        print(_timed(lambda: [work_update(model, True) for _ in range(2)]), flush=True)
        return 0
    rows = measure(levers, args.pairs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
