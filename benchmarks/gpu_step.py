"""One paper-sized training step on a GPU: rollout tokens per second, update MFU, peak memory (not in CI).

A Qwen2.5-3B-shaped model with random weights built from its config (nothing to download), bf16, gradient
checkpointing, the paper's batch: 64 prompts x 5 rollouts, one 500-token turn each with forced lengths (EOS
never ends a sequence, so the work is fixed), ~256-token prompts. Two phases, each timed after one untimed
warm-up pass:

* rollout: ``model.generate`` as the rollout calls it (:func:`zerosearch.llm.sampling.plain_generation`,
  sampling at temperature 1, a static KV cache), ``--rollout-batch`` sequences a call;
* update: the trainer's own pieces on the sampled sequences: :func:`zerosearch.policy.micro_batches` by
  ``--micro-batch-tokens`` padded tokens, :func:`zerosearch.policy.build_window`,
  :func:`zerosearch.policy.selected_logprobs` at the policy's tokens, the on-policy clipped loss
  (:func:`zerosearch.rl.losses.ppo_clip_loss`, old log-probs from the same pass, as the trainer does when
  one epoch covers one mini-batch), backward, gradient clipping, one AdamW step. With gradient
  checkpointing the trainer runs every row in full (the checkpointed layers cannot fill the KV cache that
  :mod:`zerosearch.shared_prefix` shares), so this measures that path; the output head's logits are built
  443 positions at a time (:func:`zerosearch.policy.head_logprobs`), never ``[tokens, 151,936]`` at once.

MFU counts the model FLOPs of the update, ``6 x parameters x tokens`` plus attention
(``12 x layers x hidden x context`` per token, causal halved), against ``--peak-tflops`` (default 989, the
H200's dense bf16 figure); gradient checkpointing's recomputation is not counted, as is the custom.

    python benchmarks/gpu_step.py                          # on one H200, ~3-5 minutes
    python benchmarks/gpu_step.py --size tiny --device cpu --prompts 4 --rollouts 2 --turn-tokens 16 \\
        --prompt-tokens 32                                 # a CPU check that it runs (seconds)

    python benchmarks/gpu_step.py --no-checkpointing                  # the update without recomputation
    python benchmarks/gpu_step.py --no-checkpointing --shared-prefix  # ... and a prompt's rollouts share it

Run on CPU at the tiny size (2026-11-30, 2 cores): it runs end to end; the figures mean nothing there.

First run on one H200 (2026-11-30; torch 2.11, transformers 5.17): no figures. With gradient checkpointing
the warm-up rollout failed inside ``torch.compile``, which ``generate`` starts by itself on CUDA when the
cache is static; the model was also still in train mode, where transformers drops the KV cache under
gradient checkpointing. Without checkpointing the rollout had not finished after 130 s (compiling, then
recompiling for the next batch shape). Both are fixed here and in the trainer's path:
:func:`zerosearch.llm.sampling.plain_generation` turns the automatic compile off, and the rollout runs in
eval mode as the trainer's does. Not yet re-run on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Qwen2.5-3B's config (hidden 2048, 36 layers, 16 query / 2 key-value heads, vocabulary 151,936, tied
# embeddings); "tiny" keeps its shape at toy size for a CPU check.
SIZES = {
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples: see the top of benchmarks/gpu_step.py")
    parser.add_argument("--size", choices=list(SIZES), default="3b",
                        help="3b: Qwen2.5-3B's shape (the paper's model); tiny: the same shape at toy size")
    parser.add_argument("--device", default="cuda", help="a torch device: cuda, cuda:1, cpu (default cuda)")
    parser.add_argument("--prompts", type=_positive, default=64, help="prompts per step (the paper's 64)")
    parser.add_argument("--rollouts", type=_positive, default=5, help="rollouts per prompt (the paper's 5)")
    parser.add_argument("--prompt-tokens", type=_positive, default=256, help="tokens per prompt")
    parser.add_argument("--turn-tokens", type=_positive, default=500,
                        help="tokens generated per rollout (forced: EOS never ends one)")
    parser.add_argument("--rollout-batch", type=int, default=0, help="sequences per generate call (0: all)")
    parser.add_argument("--micro-batch-tokens", type=_positive, default=16384, help="padded tokens per micro-batch")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (MFU's "
                        "denominator; default: the H200's 989)")
    parser.add_argument("--no-checkpointing", action="store_true", help="turn gradient checkpointing off")
    parser.add_argument("--shared-prefix", action="store_true",
                        help="update with a prompt's rollouts sharing its pass (needs --no-checkpointing)")
    parser.add_argument("--seed", type=int, default=0, help="for the random weights and prompts")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.shared_prefix and not args.no_checkpointing:
        parser.error("--shared-prefix needs --no-checkpointing: checkpointed layers drop the shared KV cache")
    if args.rollout_batch < 0:
        parser.error(f"--rollout-batch must be 0 (all) or more, got {args.rollout_batch}")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device!r} is not a torch device ({exc})")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device here; for a CPU check that it runs: "
                     "--size tiny --device cpu --prompts 4 --rollouts 2 --turn-tokens 16 --prompt-tokens 32")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"


def build_model(size: str, device: torch.device, checkpointing: bool):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from zerosearch.policy import enable_checkpointing

    config = Qwen2Config(**SIZES[size], max_position_embeddings=32768, rope_theta=1_000_000.0,
                         rms_norm_eps=1e-6)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if checkpointing:
        enable_checkpointing(model)  # as the trainer turns it on (gradient_checkpointing=true)
    model.config.use_cache = True  # generation; the update passes use_cache=False itself
    return model


def rollout(model, prompts: torch.Tensor, turn_tokens: int, batch: int) -> torch.Tensor:
    """Sampled responses [N, turn_tokens]: every sequence runs to the budget (EOS suppressed)."""
    from zerosearch.llm.sampling import plain_generation

    out = []
    # eval mode, as the rollout runs it: in train mode with gradient checkpointing transformers drops the KV
    # cache and re-runs the whole sequence at every token (the first H200 run did exactly that)
    model.eval()
    with torch.no_grad(), plain_generation(model):
        for start in range(0, len(prompts), batch):
            ids = prompts[start : start + batch]
            generated = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=turn_tokens,
                min_new_tokens=turn_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                pad_token_id=0, eos_token_id=None, cache_implementation="static")
            out.append(generated[:, ids.shape[1]:])
    return torch.cat(out)


def update(model, optimizer, prompts: torch.Tensor, responses: torch.Tensor, micro_batch_tokens: int,
           shared_prefix: bool = False) -> int:
    """One on-policy update over every sequence, as the trainer runs it; returns the sequences' tokens.

    ``shared_prefix``: each micro-batch runs its distinct prompts once and every row's response against them
    (:mod:`zerosearch.shared_prefix`, the trainer's path without gradient checkpointing)."""
    from zerosearch.policy import build_window, micro_batches, right_align, selected_logprobs
    from zerosearch.rl.losses import ppo_clip_loss
    from zerosearch.shared_prefix import build_shared_prefix_window, shared_prefix_batches

    device = prompts.device
    n = len(prompts)
    prompt_ids = prompts.tolist()
    response_ids = responses.tolist()
    advantages = torch.randn(n, device=device)  # a REINFORCE-style advantage per sequence
    normalizer = float(responses.numel())
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if shared_prefix:
        groups = shared_prefix_batches([tuple(p) for p in prompt_ids], [len(p) for p in prompt_ids],
                                       [len(r) for r in response_ids], micro_batch_tokens)
        build = build_shared_prefix_window
    else:
        groups, build = micro_batches(lengths, micro_batch_tokens), build_window
    for group in groups:
        window = build([prompt_ids[i] for i in group], [response_ids[i] for i in group], 0, device)
        mask = right_align([torch.ones(len(response_ids[i])) for i in group], window.width, device)
        logp = selected_logprobs(model, window, mask, 1.0).logprobs
        adv = advantages[group][:, None].expand_as(logp) * mask
        loss, _ = ppo_clip_loss(logp, logp.detach(), adv, mask, 0.2, 0.2, normalizer=normalizer)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    model.eval()
    return sum(lengths)


def model_flops_per_token(config, context: int) -> float:
    """Training FLOPs per token: 6 x parameters (matmuls) plus causal attention's scores and values."""
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size  # q, o; k, v; gate, up, down
    params = layers * per_layer + config.vocab_size * h  # the (tied) head's matmul counts once
    return 6 * params + 6 * layers * h * context  # attention: 12 x layers x h x context, halved (causal)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(args.size, device, not args.no_checkpointing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    n = args.prompts * args.rollouts
    batch = args.rollout_batch or n
    vocab = model.config.vocab_size
    prompts = torch.randint(1, vocab, (args.prompts, args.prompt_tokens), device=device).repeat_interleave(
        args.rollouts, dim=0)
    print(f"[gpu_step] {args.size}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, "
          f"{n} sequences of {args.prompt_tokens} + {args.turn_tokens} tokens on {device}", file=sys.stderr)

    rollout(model, prompts[: min(batch, 8)], 8, batch)  # warm-up: kernels, static cache
    sync(device)
    t0 = time.perf_counter()
    responses = rollout(model, prompts, args.turn_tokens, batch)
    sync(device)
    rollout_seconds = time.perf_counter() - t0
    assert responses.shape == (n, args.turn_tokens), responses.shape
    # each phase is reported as it ends: a later failure (out of memory in the update) keeps this one's figures
    print(f"[gpu_step] rollout: {rollout_seconds:.1f} s, {n * args.turn_tokens / rollout_seconds:,.0f} tokens/s, "
          f"peak {_peak_gib(device)}", file=sys.stderr)

    warm = min(n, max(1, args.micro_batch_tokens // (args.prompt_tokens + args.turn_tokens)))
    update(model, optimizer, prompts[:warm], responses[:warm], args.micro_batch_tokens, args.shared_prefix)  # warm
    sync(device)
    t0 = time.perf_counter()
    tokens = update(model, optimizer, prompts, responses, args.micro_batch_tokens, args.shared_prefix)
    sync(device)
    update_seconds = time.perf_counter() - t0
    print(f"[gpu_step] update: {update_seconds:.1f} s for {tokens:,} tokens, peak {_peak_gib(device)}",
          file=sys.stderr)

    context = args.prompt_tokens + args.turn_tokens
    tflops = model_flops_per_token(model.config, context) * tokens / update_seconds / 1e12
    results = {
        "size": args.size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "sequences": n, "prompt_tokens": args.prompt_tokens, "turn_tokens": args.turn_tokens,
        "rollout_seconds": rollout_seconds, "rollout_tokens_per_second": n * args.turn_tokens / rollout_seconds,
        "update_seconds": update_seconds, "update_tokens_per_second": tokens / update_seconds,
        "update_tflops": tflops, "mfu": tflops / args.peak_tflops if device.type == "cuda" else None,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None,
        "gradient_checkpointing": not args.no_checkpointing, "shared_prefix": args.shared_prefix,
        "torch": torch.__version__, "transformers": _transformers_version(),
    }
    rows = [("rollout tokens / s", f"{results['rollout_tokens_per_second']:,.0f}"),
            ("rollout s", f"{rollout_seconds:.1f}"), ("update s", f"{update_seconds:.1f}"),
            ("update tokens / s", f"{results['update_tokens_per_second']:,.0f}"),
            ("update TFLOP/s (model FLOPs)", f"{tflops:.1f}"),
            ("update MFU", "n/a (not a GPU)" if results["mfu"] is None else f"{100 * results['mfu']:.1f}%"),
            ("peak GPU memory (GiB)", "n/a" if results["peak_memory_gib"] is None
             else f"{results['peak_memory_gib']:.1f}")]
    path = ("gradient checkpointing" if not args.no_checkpointing
            else "shared prefix" if args.shared_prefix else "full rows")
    print(f"| {results['device_name']}, {args.size}, {n} x ({args.prompt_tokens} + {args.turn_tokens}), {path} | |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
