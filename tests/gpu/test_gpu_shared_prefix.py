"""On the GPU, in fp32 and bf16: a prompt's rollouts sharing its forward pass (zerosearch.shared_prefix) give the
log-probs, entropies and gradients of running every row in full (tests/test_shared_prefix.py checks this on
the CPU in fp32).

On CUDA the two paths run other kernels on other shapes (a prompt pass with a KV cache and a suffix pass
reading it across masked columns, against one left-padded pass), and a prompt of one token leaves a prefix row
that is all padding, the case where some attention kernels return NaN. In fp32 the two must agree to float
rounding. In bf16 rounding alone moves both, so each is measured against the full rows in fp32 on the same
weights, and the shared pass must be about as close to it as the full rows are.
"""

from __future__ import annotations

import pytest
import torch

from gpu_support import DTYPES, RELATIVE_TOLERANCE, device, on_device, relative_error, synchronize

pytestmark = [pytest.mark.gpu, on_device]

PAD = 0
# prompts of different lengths, one a single token (its prefix row is all padding); 2 + 2 + 1 rollouts
PROMPTS = [[3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15]]
RESPONSE_LENGTHS = [[5, 2], [7, 1], [4]]
# bf16: the shared pass's error against fp32 full rows may exceed the bf16 full rows' own error by this factor
BF16_SLACK = 3.0
BF16_FLOOR = 2e-3  # ... and any error under this passes in bf16 (its rounding is 4e-3)


def _model(arch: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    from zerosearch.models.tiny import tiny_model_dir

    torch.manual_seed(0)
    if arch == "llama":  # the tiny model of the unit tests (SmolLM2's architecture)
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir(), dtype=torch.float32)
    # Qwen2 (the paper's policies): grouped-query attention and biased q/k/v projections
    config = AutoConfig.for_model("qwen2", vocab_size=600, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _windows(dev: torch.device):
    from zerosearch.policy import build_window
    from zerosearch.shared_prefix import build_shared_prefix_window

    g = torch.Generator().manual_seed(1)
    rows = [(p, torch.randint(20, 500, (n,), generator=g).tolist())
            for p, lengths in zip(PROMPTS, RESPONSE_LENGTHS) for n in lengths]
    prompts, responses = [p for p, _ in rows], [r for _, r in rows]
    full = build_window(prompts, responses, PAD, dev)
    shared = build_shared_prefix_window(prompts, responses, PAD, dev)
    select = full.response_mask.bool().clone()
    select[0, -2] = False  # an environment token inside a response: not scored
    return full, shared, select


def _run(model, window, select):
    """Log-probs, entropies and every parameter's gradient of one pass, as float32 on the CPU."""
    from zerosearch.policy import selected_logprobs

    model.zero_grad(set_to_none=True)
    out = selected_logprobs(model, window, select, temperature=0.7, entropy=True)
    (out.logprobs.sum() + 0.3 * out.entropy.sum()).backward()
    synchronize(select.device)
    grads = {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return out.logprobs.detach().float().cpu(), out.entropy.detach().float().cpu(), grads


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prefix_equals_full_rows(arch, dtype_name):
    dev, dtype = device(), DTYPES[dtype_name]
    full, shared, select = _windows(dev)
    model = _model(arch).to(dev, dtype)
    model.train()  # the update's mode (dropout is 0 in both configs)
    got = {"full": _run(model, full, select), "shared": _run(model, shared, select)}
    # the reference: full rows in fp32 on the same (bf16-rounded, where bf16) weights
    reference = _run(model.float(), full, select)

    lp_shared = got["shared"][0]
    assert torch.isfinite(lp_shared).all() and torch.isfinite(got["shared"][1]).all()
    assert (lp_shared[~select.cpu()] == 0).all()  # unselected positions are not scored
    names = ["log-probs", "entropies"] + [f"grad {n}" for n in reference[2]]
    values = {path: [g[0], g[1], *[g[2][n] for n in reference[2]]] for path, g in got.items()}
    for i, (name, ref) in enumerate(zip(names, [reference[0], reference[1], *reference[2].values()])):
        shared_error = relative_error(values["shared"][i], ref)
        full_error = relative_error(values["full"][i], ref)
        if dtype == torch.float32:
            bound = RELATIVE_TOLERANCE[torch.float32]
        else:
            bound = max(BF16_SLACK * full_error, BF16_FLOOR)
            assert full_error <= RELATIVE_TOLERANCE[torch.bfloat16], f"{name}: bf16 full rows off by {full_error:.2e}"
        assert shared_error <= bound, (f"{arch} {dtype_name} {name}: shared prefix off by {shared_error:.2e} from "
                                       f"fp32 full rows (bf16 full rows: {full_error:.2e}; bound {bound:.1e})")


def _trainer(tmp_path, dev: torch.device, dtype: str, shared: bool):
    from support import SHORT_TEMPLATE, FixedDocumentsEngine
    from zerosearch.config import load_train_config
    from zerosearch.trainer import Trainer

    tmp_path.mkdir(parents=True, exist_ok=True)
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}\n')
    template = tmp_path / "short.txt"
    template.write_text(SHORT_TEMPLATE)
    items = ["model=zerosearch:tiny", f"train_files={qa}", f"prompt_template={template}", "prompts_per_step=1",
             "rollouts_per_prompt=2", "algorithm=grpo", "lr=1e-2", "warmup_ratio=0", "kl_coef=0.1",
             "entropy_coef=0.01", "total_steps=1", "micro_batch_tokens=64", f"device={dev}", f"dtype={dtype}",
             f"shared_prefix={str(shared).lower()}"]
    return Trainer(load_train_config(None, items), tmp_path / "run", engine=FixedDocumentsEngine(["x"]),
                   progress=False)


def _trajectories(trainer):
    from zerosearch.rollout import ANSWERED, Trajectory

    tok = trainer.tokenizer
    other = tok("a different prompt", add_special_tokens=False)["input_ids"]
    out = []
    for group, (prompt, answers) in enumerate([(trainer._prompt_ids(0), ["blue", "red", "green"]),
                                                (other, ["grey", "blue"])]):
        for answer in answers:
            t = Trajectory("q", ("blue",), list(prompt), group=group)
            for text, m in [("<search> sky </search>", 1), ("\n\n<information>Doc 1: x</information>\n\n", 0),
                            (f"<answer> {answer} </answer>", 1)]:
                t.append(tok(text, add_special_tokens=False)["input_ids"], m, text)
            t.answer_text, t.status = f"<answer> {answer} </answer>", ANSWERED
            out.append(t)
    return out


def _update(trainer):
    """The update's statistics and the clipped gradient the optimizer is handed (float32, CPU)."""
    grads = {}
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        grads.update({n: p.grad.float().cpu() for n, p in trainer.policy.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trajectories = _trajectories(trainer)
    assert len(list(trainer._forward_batches(trajectories))) > 1  # several micro-batches
    stats = trainer._update(trajectories, [1.0, 0.0, 0.5, 0.2, 1.0])
    synchronize(trainer.device)
    return stats, grads


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_trainer_update_equals_full_rows(tmp_path, dtype):
    """The trainer's whole update (reference scoring, clipped loss, KL, entropy bonus, micro-batches) with
    ``dtype`` weights on the device: the same statistics and gradient with the prompt shared or not."""
    dev = device()
    runs = {}
    for shared in (True, False):
        trainer = _trainer(tmp_path / f"{dtype}-{shared}", dev, dtype, shared)
        assert trainer.dtype == DTYPES["fp32" if dtype == "float32" else "bf16"]
        assert trainer._shares_prefix() is shared
        runs[shared] = _update(trainer)
    (stats_shared, grads_shared), (stats_full, grads_full) = runs[True], runs[False]
    tolerance = RELATIVE_TOLERANCE[DTYPES["fp32" if dtype == "float32" else "bf16"]]
    for key in ("policy_loss", "kl", "entropy", "grad_norm"):
        assert stats_shared[key] == pytest.approx(stats_full[key], rel=tolerance, abs=1e-6), key
    assert grads_full and grads_shared.keys() == grads_full.keys()
    flat_shared = torch.cat([grads_shared[n].flatten() for n in grads_full])
    flat_full = torch.cat([g.flatten() for g in grads_full.values()])
    error = relative_error(flat_shared, flat_full)
    assert error <= tolerance, f"{dtype}: the gradients differ by {error:.2e} (relative; bound {tolerance:.0e})"
