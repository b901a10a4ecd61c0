"""This machine's ceilings (matmul FLOP/s, memory bandwidth), and each phase of a real training step against them.

Ceilings, measured with torch in this process (its thread count, ``num_threads`` of the config):

* matmul: ``F.linear`` at every weight shape of the model (SmolLM2-135M: 576->576, 576->192, 576->1536,
  1536->576, and the 576->49152 output head), in fp32 and bf16, at the token count of a decode step (``--rows``,
  default the step's rollouts) and of a prefill / update micro-batch (``--tokens``, default
  ``micro_batch_tokens``). Best of ``--repeats``. The "model mix" is the whole model's matmuls at that token
  count (each shape as often as the model has it) over their summed best times: the ceiling a forward pass
  could reach if nothing but its matmuls took time. Forward shapes only; the backward pass's are transposes.
* memory bandwidth: a ``--bandwidth-mb`` fp32 tensor summed (read GB/s: the decode bound) and copied (read +
  write GB/s). Best of ``--repeats``.

The step: one (``--steps``) real ``Trainer.train_step`` of the embedded default config (``load_train_config``
of ``src/zerosearch/configs/default.yaml``, with its format warm-up, from the cache when there; ``--set``
overrides), after ``--skip`` unmeasured steps (first-call costs). Nothing is modelled from guesses: hooks on the
policy, reference and simulator models record every forward call (its phase, rows, new and cached columns, real
tokens from the attention mask, seconds), and the trainer's own metrics give the phases' seconds.

* eager training pass: one plain forward + backward of the policy at ``--tokens`` tokens (``rows`` full rows, no
  padding, the head on every token), model FLOPs as below: what eager PyTorch itself reaches at this size, with
  its elementwise ops, attention and autocast's casts. A ceiling for the update that a matmul alone overstates.
* update (``Trainer._update``: reference log-probs, forward + backward, optimizer step): model FLOPs =
  6 x N x tokens for the trained passes and 2 x N x tokens for the no-grad ones, N = the non-embedding
  parameters (the decoder's matmuls; norms included, a rounding error) with the output head's
  2 x hidden x vocab counted per row it actually runs on (the trainer runs it only at the policy's tokens),
  plus attention (4 x hidden x context per token and layer, x3 when trained; real tokens only, padding not
  counted). As a fraction of the model-mix matmul ceiling at ``--tokens`` (bf16 when the run autocasts to
  bf16). Head recomputation in the backward pass is not counted (model FLOPs, not hardware FLOPs). Its parts
  are rows of their own: the no-grad pass (``Trainer._score_tokens``), the trained forward + backward (the rest)
  and the optimizer step (timed by torch's step hooks).
* decode (one new column per call), policy and simulator: bytes read per step = the weights (non-embedding
  + head, in the dtype the matmuls read: bf16 under bf16 autocast, whose weight casts are cached for the
  whole ``generate``) + the KV cache (every cached column, padding included); over the measured forward time
  per step, as a fraction of the read bandwidth. "overhead" is the rest of the phase: sampling, stop checks,
  the dynamic cache's concatenation, tokenisation, the environment.
* prefill (several new columns), policy and simulator: FLOP/s as above (2 x N x tokens + head + attention).

A/B (``--pairs``, 0 to skip): the simulator with and without its prefix cache
(``engine.simulator.prefix_cache``) on the same search requests (those of the measured steps, or built from the
training questions when the policy made none), greedy, alternating which arm runs first; the replies must be
the same (counted), and the table gives each arm's median seconds and prefilled tokens.

    python benchmarks/ceilings.py --out runs/ceilings.json                 # the default run (SmolLM2-135M)
    python benchmarks/ceilings.py --model tiny --skip 0 --pairs 1          # a toy check (seconds)
    python benchmarks/ceilings.py --set prompts_per_step=1 max_turn_tokens=32 engine.simulator.max_tokens=32 \\
        --skip 0 --pairs 1                                                 # the smallest real-model run

Results at full size (2026-12-08, ``python benchmarks/ceilings.py --pairs 0``, the embedded default of da5a197:
rloo, 2 questions x 4 rollouts, KL 0.05, fused AdamW; from its cached warm-up, 2 threads on 2 idle cores, 137 s):

    ceilings (2 threads)      read 25.6 GB/s; bf16 matmul model mix 140 GFLOP/s @ 8 rows, 1.6 TFLOP/s @ 2048
    eager training pass       8 x 256 tokens, 4.82 s: 354 GFLOP/s = 21.6% of bf16 @ 2048
    step (2 prompts x 4)      25.1 s: rollout 19.2 (search 12.8), update 5.9
    update                    1255 GFLOP over 1281 trained tokens, 214 GFLOP/s: 13.0% of bf16 @ 2048
      no-grad pass            1.08 s, 290 GFLOP/s (17.7%)
      forward + backward      4.68 s, 201 GFLOP/s (12.3%; 57% of the eager training pass)
      optimizer step          0.11 s (fused AdamW; 0.45 s foreach)
    policy decode             67 steps x 7.6 rows, 74 ms a step: 16% of the read bandwidth
    simulator decode          127 steps x 8 rows, 85 ms a step: 16% of the read bandwidth

The bf16 model mix measured 2.1 TFLOP/s in the run below and 1.6 here (same machine, same day): the ceiling
itself moves by a quarter between runs, so read fractions to a few points. The update is below a sixth of
the matmul ceiling, but an eager forward + backward of the bare model at 2048 tokens reaches only a fifth of
it: the rest of a training pass's time is per-op memory traffic (casts between the fp32 residual stream and
bf16 matmuls, norms, rotary, SiLU, attention), which only a compiler that fuses ops would remove. The update's
trained pass runs at 57% of that eager pass (smaller micro-batches: 1,281 trained tokens in two).

Earlier (2026-12-08, ``--pairs 1``, the default of a297edb: REINFORCE 4 x 2, KL 0.001, foreach AdamW; 102 s):

    ceilings (2 threads)      read 26.0 GB/s, copy 27.5 GB/s
    matmul, model mix         fp32 117 GFLOP/s @ 8 rows, 401 @ 2048 tokens; bf16 208 @ 8 rows, 2.1 TFLOP/s @ 2048
    step (4 prompts x 2)      23.1 s: rollout 16.7 (search 10.3), update 6.3
    update                    1763 GFLOP over 1845 trained tokens, 280 GFLOP/s: 13.4% of bf16 @ 2048
    policy decode             85 steps x 7.5 rows, 57 ms a step: 21% of the read bandwidth, 18% of bf16 @ 8 rows
    simulator decode          127 steps x 8 rows, 69 ms a step: 20% of the read bandwidth
    prefill                   policy 316, simulator 355 GFLOP/s (15-17% of bf16 @ 2048)
    A/B (8 requests, 1 pair)  prefix cache on 4.58 s (704 tokens prefilled), off 10.07 s (3,082); same replies

The A/B's arms decoded 57 and 127 steps for the same parsed replies, so most of its 2.2x is the decode, not the
prefill (0.51 vs 1.10 s); why (a stop string seen earlier, or text past the last document that the parser drops)
is not yet explained. The update is the phase furthest from its ceiling.

The smallest real-model run above, with
``num_threads=1``, on 2 cores shared with other jobs (2026-12-07; wall time was about 3x the process's CPU time,
so these are a check that it runs, not a measurement), took 1.9 to 3.7 minutes in all:

    ceilings (1 thread)       read 5.8 GB/s, copy 6.6 GB/s
    matmul, model mix         fp32 9.1 GFLOP/s @ 2 rows, 69.8 @ 2048 tokens; bf16 10.3 @ 2 rows, 480.8 @ 2048
    step (1 prompt x 2)       62.6 s wall, 21.7 s CPU: rollout 47.8 (search 20.1), update 14.8
    update                    428.5 GFLOP over 436 trained tokens, 28.9 GFLOP/s: 6.0% of bf16 @ 2048
    policy decode             95 steps x 1.8 rows, 251 ms a step: 19% of the read bandwidth, 20% of bf16 @ 2 rows
    simulator decode          62 steps x 1.5 rows, 254 ms a step: 19% of the read bandwidth
    A/B (3 requests, 1 pair)  prefilled 269 tokens with the prefix cache, 1,154 without; same replies

bf16 pays for the update and prefill (7x fp32 at 2048 tokens, AMX) but not for decode, whose matmuls at a few
rows run at about 10 GFLOP/s in either precision. The first run of this benchmark showed the simulator's decode
at 544 ms a step against the policy's 236 (same model, same rows): ``generate`` ran under ``inference_mode``, in
which autocast does not keep its bf16 weight copies, so every step cast all the weights again; now under
``no_grad`` (``tests/test_transformers_backend.py``). On SmolLM2, 8 prompt-mode requests (useful and noisy) x 32
tokens, bf16, 1 thread, CPU seconds on the shared cores, 3 alternating pairs: 10.0 s before both changes, 7.9
with the prefix cache, 5.3 with it and the cast kept (6.9 without the prefix cache); the replies were the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import check_overrides, key_value, non_negative_int, positive_int  # noqa: E402

MODELS = {
    "default": [],  # the embedded default as it is: SmolLM2-135M-Instruct
    "tiny": ["model=zerosearch:tiny", "max_turn_tokens=24", "engine.simulator.max_tokens=32",
             "warmup.max_examples=16"],
}
# whatever is asked, a measured step writes no checkpoint, report or evaluation
HYGIENE = ["save_every=1000000", "report=false", "final_eval.enabled=false", "log_rollouts=0"]


# ------------------------------------------------------------------------------------------------ ceilings
def best_seconds(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.05) -> float:
    """The shortest time of one ``fn()`` over ``repeats`` timings (each of enough calls to last ``min_seconds``)."""
    fn()  # first-call costs (kernel selection, allocation)
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    calls = max(1, int(min_seconds / max(once, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def linear_shapes(model: Any) -> Counter:
    """(in_features, out_features) -> how many ``nn.Linear`` layers of that shape the model runs (head included)."""
    from torch import nn

    return Counter((m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear))


def matmul_ceilings(shapes: Counter, token_counts: list[int], repeats: int) -> dict[str, Any]:
    """FLOP/s of ``F.linear`` at each shape and token count, fp32 and bf16, and the model mix at each."""
    import torch
    import torch.nn.functional as F

    out: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        for tokens in token_counts:
            per_shape, total_flops, total_seconds = {}, 0.0, 0.0
            for (k, n), count in sorted(shapes.items()):
                x = torch.randn(tokens, k, dtype=dtype)
                w = torch.randn(n, k, dtype=dtype)
                with torch.inference_mode():
                    seconds = best_seconds(lambda: F.linear(x, w), repeats)
                flops = 2.0 * tokens * k * n
                per_shape[f"{k}x{n}"] = flops / seconds
                total_flops += flops * count
                total_seconds += seconds * count
            out[f"{name}@{tokens}"] = {"dtype": name, "tokens": tokens, "per_shape": per_shape,
                                       "peak": max(per_shape.values()), "model_mix": total_flops / total_seconds}
    return out


def bandwidth_ceilings(megabytes: int, repeats: int) -> dict[str, float]:
    """Bytes per second of summing (read) and copying (read + write) an fp32 tensor of ``megabytes``."""
    import torch

    x = torch.ones(megabytes * 2**20 // 4)
    y = torch.empty_like(x)
    nbytes = x.numel() * 4
    read = nbytes / best_seconds(lambda: x.sum(), repeats, 0.2)
    copy = 2 * nbytes / best_seconds(lambda: y.copy_(x), repeats, 0.2)
    return {"read": read, "copy": copy, "megabytes": megabytes}


def forward_flops(size: dict[str, Any], tokens: float, context: float, head_rows: float) -> float:
    """Model FLOPs of one forward pass: 2 x non-embedding parameters x tokens, attention's 4 x width x layers x
    context (the summed real tokens each new token attends to), and the head's 2 x hidden x vocab per row it
    runs on. A backward pass costs twice this (x3 in all for a trained pass)."""
    return (2 * size["non_embedding"] * tokens + 4 * size["attention_width"] * size["layers"] * context
            + 2 * size["head"] * head_rows)


def train_pass_ceiling(model: Any, size: dict[str, Any], tokens: int, rows: int, autocast: Any,
                       repeats: int) -> dict[str, Any]:
    """Model FLOP/s of one plain forward + backward of ``model`` (eager PyTorch, the run's autocast) on ``rows``
    full rows of ``tokens // rows`` random tokens, no padding, the head on every token, a mean log-sum-exp loss:
    the most an eager training pass reaches at this size, with every elementwise op, attention and cast it
    brings. Best of ``repeats`` (gradients cleared between; the parameters are not changed)."""
    import torch

    width = max(1, tokens // rows)
    ids = torch.randint(0, model.config.vocab_size, (rows, width))
    context = rows * width * (width + 1) / 2
    flops = 3 * forward_flops(size, rows * width, context, rows * width)
    was_training = model.training
    model.train()

    def once() -> None:
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            logits = model(input_ids=ids).logits
        logits.float().logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)

    try:
        seconds = best_seconds(once, repeats)
    finally:
        model.train(was_training)
    return {"tokens": rows * width, "rows": rows, "flops": flops, "seconds": seconds, "rate": flops / seconds}


# ------------------------------------------------------------------------------------------- instruments
def model_sizes(model: Any) -> dict[str, Any]:
    """What the accounting needs: non-embedding parameters, the head's matmul, the KV cache's shape."""
    config = model.config
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    params = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    non_embedding = params - embed.numel() - (0 if head is embed else head.numel())
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"params": params, "non_embedding": non_embedding, "head": head.numel(), "tied": head is embed,
            "layers": config.num_hidden_layers, "attention_width": heads * head_dim,
            "kv_width": getattr(config, "num_key_value_heads", heads) * head_dim,
            "weight_bytes": next(model.parameters()).element_size()}


class Meter:
    """Hooks that record every forward call of some models, tagged with the phase the step is in."""

    def __init__(self) -> None:
        self.phase = "other"
        self.calls: list[dict[str, Any]] = []  # top-level calls: timed, decode or prefill
        self.trunk: list[dict[str, Any]] = []  # decoder calls: tokens and attention context
        self.head: list[dict[str, Any]] = []  # output-head calls: rows
        self.phase_seconds: Counter = Counter()
        self.part_seconds: Counter = Counter()  # parts of a phase, timed without changing the phase
        self._handles: list[Any] = []

    def wrap(self, owner: Any, attribute: str, phase: str | None = None, part: str | None = None) -> None:
        """Run ``owner.attribute`` (a method) timed: in ``phase`` (the forward calls inside are tagged with it,
        its seconds go to ``phase_seconds``), or, given ``part`` instead, inside whatever phase is running, its
        seconds to ``part_seconds``."""
        inner = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            before = self.phase
            self.phase = phase or before
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                # looked up at each call: reset() replaces the counters
                if part is not None:
                    self.part_seconds[part] += time.perf_counter() - start
                else:
                    self.phase_seconds[phase] += time.perf_counter() - start
                self.phase = before

        setattr(owner, attribute, timed)

    def time_optimizer(self, optimizer: Any, part: str) -> None:
        """Time ``optimizer.step`` as ``part`` through torch's step hooks (replacing the method would make the LR
        scheduler warn that the step was overridden)."""
        started: list[float] = []
        optimizer.register_step_pre_hook(lambda *_: started.append(time.perf_counter()))

        def post(*_: Any) -> None:
            self.part_seconds[part] += time.perf_counter() - started.pop()

        optimizer.register_step_post_hook(post)

    def install(self, model: Any, name: str) -> None:
        import torch

        def columns(args: tuple, kwargs: dict) -> tuple[int, int, int, list[int], float]:
            """rows, new columns, cached columns, real new tokens per row, attention context (sum over the new
            real tokens of the real tokens each attends to)"""
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"]
            rows, new = ids.shape[0], ids.shape[1]
            mask = kwargs.get("attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[1] >= new:
                real_new = mask[:, mask.shape[1] - new:].sum(-1).tolist()
                real_past = mask[:, : mask.shape[1] - new].sum(-1).tolist()
                cached = mask.shape[1] - new
            else:
                cache = kwargs.get("cache", kwargs.get("past_key_values"))
                cached = cache.get_seq_length() if cache is not None else 0
                real_new, real_past = [new] * rows, [cached] * rows
            context = sum(t * p + t * (t + 1) / 2 for t, p in zip(real_new, real_past))
            return rows, new, cached, real_new, context

        started: list[float] = []

        def top_pre(module: Any, args: tuple, kwargs: dict) -> None:
            started.append(time.perf_counter())

        def top_post(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            seconds = time.perf_counter() - started.pop()
            rows, new, cached, real_new, context = columns(args, kwargs)
            self.calls.append({"model": name, "phase": self.phase, "kind": "decode" if new == 1 else "prefill",
                               "rows": rows, "new": new, "cached": cached, "tokens": sum(real_new),
                               "context": context, "seconds": seconds})

        def trunk_post(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            if torch._C._current_graph_task_id() != -1:  # a recomputation inside backward: not model FLOPs
                return
            _, _, _, real_new, context = columns(args, kwargs)
            self.trunk.append({"model": name, "phase": self.phase, "tokens": sum(real_new), "context": context,
                               "trained": torch.is_grad_enabled()})

        def head_post(module: Any, args: tuple, output: Any) -> None:
            if torch._C._current_graph_task_id() != -1:
                return
            self.head.append({"model": name, "phase": self.phase, "rows": args[0].numel() // args[0].shape[-1],
                              "trained": torch.is_grad_enabled()})

        self._handles += [model.register_forward_pre_hook(top_pre, with_kwargs=True),
                          model.register_forward_hook(top_post, with_kwargs=True),
                          model.get_decoder().register_forward_hook(trunk_post, with_kwargs=True),
                          model.get_output_embeddings().register_forward_hook(head_post)]

    def reset(self) -> None:
        self.calls, self.trunk, self.head = [], [], []
        self.phase_seconds, self.part_seconds = Counter(), Counter()


def update_flops(meter: Meter, sizes: dict[str, dict[str, Any]], phase: str = "update",
                 trained: bool | None = None) -> float:
    """Model FLOPs of the decoder and head calls made in ``phase`` (x3 for those run with gradients); with
    ``trained`` given, of only the calls run with (True) or without (False) gradients."""
    flops = 0.0
    for r in meter.trunk:
        if r["phase"] == phase and trained in (None, r["trained"]):
            s = sizes[r["model"]]
            flops += (3 if r["trained"] else 1) * forward_flops(s, r["tokens"], r["context"], 0)
    for r in meter.head:
        if r["phase"] == phase and trained in (None, r["trained"]):
            flops += (3 if r["trained"] else 1) * forward_flops(sizes[r["model"]], 0, 0, r["rows"])
    return flops


# -------------------------------------------------------------------------------------------------- step
def run_step(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    import torch

    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config
    from zerosearch.trainer import start_run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_train_config(EMBEDDED_DEFAULT, [*overrides, f"output_dir={tmp}/run"])
        cfg.total_steps = max(cfg.total_steps, args.skip + args.steps)  # the curriculum of the run being measured
        started = time.perf_counter()
        trainer = start_run(cfg, progress=False)
        load_seconds = time.perf_counter() - started
        meter = Meter()
        models = {"policy": trainer.policy}
        if trainer.reference is not None:
            models["reference"] = trainer.reference
        chat = getattr(trainer.engine, "chat_model", None)
        if chat is not None and hasattr(chat, "model"):
            models["simulator"] = chat.model
        sizes = {name: model_sizes(model) for name, model in models.items()}
        for name, model in models.items():
            meter.install(model, name)
        meter.wrap(trainer.runner, "_generate", "generate")
        meter.wrap(trainer.engine, "search", "search")
        meter.wrap(trainer, "_update", "update")
        # the update's parts: the no-grad pass (reference log-probs; old ones too when off-policy) and AdamW
        meter.wrap(trainer, "_score_tokens", part="no-grad pass")
        meter.time_optimizer(trainer.optimizer, "optimizer step")
        requests: list[Any] = []
        search = trainer.engine.search

        def recording(batch: Any, topk: int) -> Any:
            requests.extend(batch)
            return search(batch, topk)

        trainer.engine.search = recording
        for _ in range(args.skip):
            trainer.train_step()
        meter.reset()
        requests.clear()
        steps = []
        cpu = time.process_time()
        for _ in range(args.steps):
            steps.append(trainer.train_step()[0])
        cpu = time.process_time() - cpu  # with other processes on the cores, CPU time is the steadier figure
        threads = torch.get_num_threads()
        autocast = trainer.autocast
        print(f"step(s) done: {sum(s['step_seconds'] for s in steps):.1f} s; measuring the ceilings", file=sys.stderr)
        shapes = linear_shapes(trainer.policy)
        rows = args.rows or cfg.prompts_per_step * cfg.rollouts_per_prompt
        tokens = args.tokens or cfg.micro_batch_tokens
        ceilings = {"matmul": matmul_ceilings(shapes, [rows, tokens], args.repeats),
                    "bandwidth": bandwidth_ceilings(args.bandwidth_mb, args.repeats), "threads": threads}
        ceilings["train_pass"] = train_pass_ceiling(trainer.policy, sizes["policy"], tokens, rows, autocast,
                                                    args.repeats)
        held = Ceilings(ceilings, rows, tokens, autocast)
        phases = analyse(meter, sizes, held, steps)
        ab = None
        if args.pairs and chat is not None and hasattr(chat, "prefix_cache"):
            ab = prefix_ab(trainer, requests, args.pairs, meter)
            for on in (True, False):  # the simulator's own phases, from the last timing of each arm
                phases += generation_rows(ab.pop(f"calls_{on}"), sizes["simulator"], "simulator", f"ab-{on}",
                                          ab[f"{'on' if on else 'off'}_all"][-1], held,
                                          f"simulator (A/B, prefix cache {'on' if on else 'off'})")
    return {"config": {"model": cfg.model, "overrides": overrides, "rows": rows, "tokens": tokens,
                       "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
                       "simulator_mode": cfg.engine.simulator.mode, "kv_cache": cfg.kv_cache,
                       "prefix_cache": cfg.engine.simulator.prefix_cache},
            "load_seconds": load_seconds, "metrics": steps, "step_cpu_seconds": cpu, "sizes": sizes, "ceilings": ceilings,
            "phases": phases, "prefix_ab": ab}


class Ceilings:
    """The ceilings a phase is held against: matmul FLOP/s (model mix) at the decode rows and at the prefill /
    update tokens, in the dtype the run's matmuls use, and the read bandwidth."""

    def __init__(self, measured: dict[str, Any], rows: int, tokens: int, autocast: Any) -> None:
        self.dtype = "bfloat16" if autocast is not None and "bfloat16" in str(autocast) else "float32"
        self.rows, self.tokens = rows, tokens
        self.at_rows = measured["matmul"][f"{self.dtype}@{rows}"]["model_mix"]
        self.at_tokens = measured["matmul"][f"{self.dtype}@{tokens}"]["model_mix"]
        self.read = measured["bandwidth"]["read"]


def analyse(meter: Meter, sizes: dict[str, dict[str, Any]], ceilings: Ceilings,
            steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per phase of the measured steps: seconds, the achieved rate and the fraction of its ceiling."""
    update_seconds = sum(s["update_seconds"] for s in steps)
    flops = update_flops(meter, sizes)
    trained_tokens = sum(r["tokens"] for r in meter.trunk if r["phase"] == "update" and r["trained"])
    out = [{"phase": "update", "seconds": update_seconds,
            "work": f"{flops / 1e9:.1f} GFLOP, {trained_tokens} trained tokens",
            "rate": flops / max(update_seconds, 1e-9), "unit": "FLOP/s", "ceiling": ceilings.at_tokens,
            "ceiling_name": f"{ceilings.dtype} matmul @ {ceilings.tokens} tokens"}]
    out[0]["fraction"] = out[0]["rate"] / out[0]["ceiling"]
    # its parts: the no-grad pass, the trained forward + backward (the rest of the update), the optimizer step
    no_grad, opt = meter.part_seconds.get("no-grad pass", 0.0), meter.part_seconds.get("optimizer step", 0.0)
    for label, seconds, part_flops in (
            ("update: no-grad pass", no_grad, update_flops(meter, sizes, trained=False)),
            ("update: forward + backward", update_seconds - no_grad - opt, update_flops(meter, sizes, trained=True))):
        rate = part_flops / max(seconds, 1e-9)
        out.append({"phase": label, "seconds": seconds, "work": f"{part_flops / 1e9:.1f} GFLOP", "rate": rate,
                    "unit": "FLOP/s", "ceiling": ceilings.at_tokens, "ceiling_name": out[0]["ceiling_name"],
                    "fraction": rate / ceilings.at_tokens})
    out.append({"phase": "update: optimizer step", "seconds": opt, "work": "AdamW over the trained parameters",
                "rate": None, "unit": None, "ceiling": None, "ceiling_name": "", "fraction": None})
    for model, phase in (("policy", "generate"), ("simulator", "search")):
        if model in sizes and meter.phase_seconds.get(phase):
            out += generation_rows(meter.calls, sizes[model], model, phase, meter.phase_seconds.get(phase, 0.0),
                                   ceilings, model)
    return out


def generation_rows(calls: list[dict[str, Any]], size: dict[str, Any], model: str, phase: str, phase_seconds: float,
                    ceilings: Ceilings, label: str) -> list[dict[str, Any]]:
    """Prefill (FLOP/s), decode (bytes/s, and FLOP/s at the decode rows) and the rest of a generating phase."""
    calls = [c for c in calls if c["model"] == model and c["phase"] == phase]
    prefill = [c for c in calls if c["kind"] == "prefill"]
    decode = [c for c in calls if c["kind"] == "decode"]
    out = []
    if prefill:  # generate runs the head on each row's last column only (logits_to_keep=1)
        seconds = sum(c["seconds"] for c in prefill)
        flops = sum(forward_flops(size, c["tokens"], c["context"], c["rows"]) for c in prefill)
        out.append({"phase": f"{label} prefill", "seconds": seconds,
                    "work": f"{len(prefill)} calls, {sum(c['tokens'] for c in prefill)} tokens",
                    "rate": flops / max(seconds, 1e-9), "unit": "FLOP/s", "ceiling": ceilings.at_tokens,
                    "ceiling_name": f"{ceilings.dtype} matmul @ {ceilings.tokens} tokens"})
    if decode:
        seconds = sum(c["seconds"] for c in decode)
        element = 2 if ceilings.dtype == "bfloat16" else size["weight_bytes"]
        weight_bytes = (size["non_embedding"] + size["head"]) * element
        kv_bytes = sum(2 * size["layers"] * size["kv_width"] * c["cached"] * c["rows"] * element for c in decode)
        moved = weight_bytes * len(decode) + kv_bytes
        rows = statistics.mean(c["rows"] for c in decode)
        out.append({"phase": f"{label} decode", "seconds": seconds,
                    "work": f"{len(decode)} steps x {rows:.1f} rows, {1e3 * seconds / len(decode):.0f} ms a step, "
                            f"{weight_bytes / 1e6:.0f} MB weights + {kv_bytes / len(decode) / 1e6:.0f} MB KV a step",
                    "rate": moved / max(seconds, 1e-9), "unit": "B/s", "ceiling": ceilings.read,
                    "ceiling_name": "read bandwidth", "weights_only_fraction": weight_bytes * len(decode)
                    / max(seconds, 1e-9) / ceilings.read})
        flops = sum(forward_flops(size, c["tokens"], c["context"], c["tokens"]) for c in decode)
        out.append({"phase": f"{label} decode (matmuls)", "seconds": seconds,
                    "work": "the same steps as FLOP/s", "rate": flops / max(seconds, 1e-9), "unit": "FLOP/s",
                    "ceiling": ceilings.at_rows, "ceiling_name": f"{ceilings.dtype} matmul @ {ceilings.rows} rows"})
    out.append({"phase": f"{label} rest", "seconds": phase_seconds - sum(c["seconds"] for c in calls),
                "work": f"the {phase_seconds:.2f} s of the phase less its forward calls (sampling, stops, cache "
                        "copies, tokenising, the environment)", "rate": None, "unit": None, "ceiling": None,
                "ceiling_name": ""})
    for row in out:
        row["fraction"] = row["rate"] / row["ceiling"] if row["rate"] and row["ceiling"] else None
    return out


# ---------------------------------------------------------------------------------------------------- A/B
def prefix_ab(trainer: Any, requests: list[Any], pairs: int, meter: Meter) -> dict[str, Any]:
    """The simulator with and without its prefix cache on the same requests, greedy, alternating."""
    from zerosearch.search.base import SearchRequest
    from zerosearch.search.simulated import SimulatedSearchEngine

    cfg = trainer.cfg
    chat = trainer.engine.chat_model
    source = "the measured steps' searches"
    if not requests:  # the policy made no search: ask for its questions, useful and noisy in turn
        source = "the training questions (the policy made no search)"
        requests = [SearchRequest(query=row.question, question=row.question, golden_answers=row.golden_answers,
                                  noisy=bool(i % 2))
                    for i, row in enumerate(trainer.rows[: cfg.prompts_per_step * cfg.rollouts_per_prompt])]
    sim = cfg.engine.simulator
    engine = SimulatedSearchEngine(chat, mode=sim.mode, max_tokens=sim.max_tokens, temperature=0.0)
    saved = chat.prefix_cache
    seconds: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}  # process CPU time: steadier than wall on shared cores
    prefilled: dict[bool, int] = {}
    calls: dict[bool, list[dict[str, Any]]] = {}
    replies: dict[bool, Any] = {}
    mismatches = 0
    try:
        for on in (True, False):  # first-call costs (and, where the step made no search, the shared starts' runs)
            chat.prefix_cache = on
            engine.search(requests, cfg.topk)
        for pair in range(pairs):
            for on in ((True, False) if pair % 2 == 0 else (False, True)):
                chat.prefix_cache = on
                meter.reset()
                meter.phase = f"ab-{on}"
                start, start_cpu = time.perf_counter(), time.process_time()
                results = engine.search(requests, cfg.topk)
                seconds[on].append(time.perf_counter() - start)
                cpu[on].append(time.process_time() - start_cpu)
                meter.phase = "other"
                calls[on] = list(meter.calls)
                prefilled[on] = sum(c["tokens"] for c in meter.calls if c["model"] == "simulator"
                                    and c["kind"] == "prefill")
                replies.setdefault(on, results)
            mismatches += sum(a != b for a, b in zip(replies[True], replies[False]))
            replies.clear()
    finally:
        chat.prefix_cache = saved
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    return {"requests": len(requests), "source": source, "pairs": pairs, "on_s": on, "off_s": off,
            "ratio": statistics.median(b / a for a, b in zip(seconds[True], seconds[False])),
            "on_all": seconds[True], "off_all": seconds[False], "on_cpu_s": statistics.median(cpu[True]),
            "off_cpu_s": statistics.median(cpu[False]), "prefilled_tokens_on": prefilled.get(True),
            "prefilled_tokens_off": prefilled.get(False), "different_replies": mismatches,
            "calls_True": calls[True], "calls_False": calls[False]}


# ------------------------------------------------------------------------------------------------- output
def _si(value: float | None, unit: str | None) -> str:
    if value is None or unit is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def table(result: dict[str, Any]) -> str:
    c = result["ceilings"]
    lines = [f"ceilings ({c['threads']} threads): read {c['bandwidth']['read'] / 1e9:.1f} GB/s, copy "
             f"{c['bandwidth']['copy'] / 1e9:.1f} GB/s ({c['bandwidth']['megabytes']} MB)", "",
             "| matmul | tokens | model mix | peak shape | per shape |", "|---|---|---|---|---|"]
    for row in c["matmul"].values():
        shapes = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in row["per_shape"].items())
        lines.append(f"| {row['dtype']} | {row['tokens']} | {_si(row['model_mix'], 'FLOP/s')} | "
                     f"{_si(row['peak'], 'FLOP/s')} | {shapes} (GFLOP/s) |")
    tp = c.get("train_pass")
    if tp:
        mix = next(row for row in c["matmul"].values() if row["tokens"] == result["config"]["tokens"]
                   and row["dtype"] == (result["config"]["autocast"] or "float32"))
        lines += ["", f"eager forward + backward of the policy, {tp['rows']} x {tp['tokens'] // tp['rows']} tokens: "
                      f"{tp['seconds']:.2f} s, {_si(tp['rate'], 'FLOP/s')} = {100 * tp['rate'] / mix['model_mix']:.1f}% "
                      f"of the {mix['dtype']} matmul model mix at {mix['tokens']} tokens"]
    m = result["metrics"]
    lines += ["", f"step: {sum(s['step_seconds'] for s in m):.2f} s (rollout {sum(s['rollout_seconds'] for s in m):.2f}"
              f" of which search {sum(s['search_seconds'] for s in m):.2f}, update "
              f"{sum(s['update_seconds'] for s in m):.2f}); {len(m)} step(s), {result['step_cpu_seconds']:.1f} CPU s", "",
              "| phase | seconds | work | achieved | ceiling | fraction |", "|---|---|---|---|---|---|"]
    for row in result["phases"]:
        fraction = "-" if row["fraction"] is None else f"{100 * row['fraction']:.1f}%"
        if row.get("weights_only_fraction") is not None:
            fraction += f" ({100 * row['weights_only_fraction']:.1f}% weights only)"
        lines.append(f"| {row['phase']} | {row['seconds']:.2f} | {row['work']} | {_si(row['rate'], row['unit'])} | "
                     f"{_si(row['ceiling'], row['unit'])} {row['ceiling_name']} | {fraction} |")
    ab = result.get("prefix_ab")
    if ab:
        lines += ["", f"simulator prefix cache A/B: {ab['requests']} requests from {ab['source']}, {ab['pairs']} "
                  "pair(s), greedy", "", "| arm | median s | median CPU s | prefilled tokens |", "|---|---|---|---|",
                  f"| prefix cache on | {ab['on_s']:.2f} | {ab['on_cpu_s']:.2f} | {ab['prefilled_tokens_on']} |",
                  f"| prefix cache off | {ab['off_s']:.2f} | {ab['off_cpu_s']:.2f} | {ab['prefilled_tokens_off']} |",
                  "",
                  f"off / on {ab['ratio']:.2f}; replies that differ: {ab['different_replies']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", choices=list(MODELS), default="default",
                        help="default: the embedded default (SmolLM2-135M); tiny: a toy check")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="config overrides, e.g. prompts_per_step=1")
    parser.add_argument("--skip", type=non_negative_int, default=1, help="unmeasured steps first (default 1)")
    parser.add_argument("--steps", type=positive_int, default=1, help="measured steps (default 1)")
    parser.add_argument("--rows", type=positive_int, help="decode rows for the matmul ceiling (default: the "
                        "step's prompts_per_step x rollouts_per_prompt)")
    parser.add_argument("--tokens", type=positive_int, help="prefill/update tokens for the matmul ceiling "
                        "(default: micro_batch_tokens)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timings per ceiling, best kept (default 5)")
    parser.add_argument("--bandwidth-mb", type=positive_int, default=1024, help="tensor size for the bandwidth "
                        "ceiling (default 1024 MB; well past the caches)")
    parser.add_argument("--pairs", type=non_negative_int, default=3, help="prefix-cache A/B pairs (0: none)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.out and args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the JSON")
    from zerosearch.config import EMBEDDED_DEFAULT

    overrides = [*MODELS[args.model], *HYGIENE]
    problem = check_overrides(overrides, args.set, "--set", path=EMBEDDED_DEFAULT)
    if problem:
        parser.error(problem)
    started = time.perf_counter()
    result = run_step(args, [*overrides, *args.set])
    result["wall_seconds"] = time.perf_counter() - started
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\n{result['wall_seconds']:.0f} s in all (model loading and warm-up {result['load_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
