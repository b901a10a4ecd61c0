"""On the GPU, in fp32 and bf16: rollouts and the in-process simulator sample exactly what they are told,
whatever sampling settings the checkpoint's generation_config.json holds, and ``generate`` never compiles the
model by itself (zerosearch.llm.sampling; tests/test_rollout.py checks the first on the CPU and fakes the
device for the second).

The first H200 run found the second fault: on CUDA, transformers compiles the forward pass whenever the cache
is static, and the compile failed inside the first rollout.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from gpu_support import DTYPES, device, on_device, synchronize

pytestmark = [pytest.mark.gpu, on_device]

DOCS = ["the sky is blue", "grass is green", "bananas are yellow"]
QUESTIONS = ["what colour is the sky", "what colour is grass", "what colour is a banana"] * 2
# like Qwen2.5-Instruct's generation_config.json, and worse
ADVERSARIAL_GENERATION_CONFIG = {
    "repetition_penalty": 1.8, "top_k": 3, "top_p": 0.5, "min_p": 0.3, "typical_p": 0.6,
    "no_repeat_ngram_size": 2, "temperature": 0.2, "do_sample": True, "suppress_tokens": [5, 6, 7],
    "min_new_tokens": 4, "epsilon_cutoff": 3e-3,
}


@pytest.fixture(scope="module")
def opinionated_model(searcher_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(searcher_model, out)
    path = out / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**config, **ADVERSARIAL_GENERATION_CONFIG}))
    return out


@pytest.fixture
def no_compile(monkeypatch):
    """``torch.compile`` fails the test: nothing in a rollout may compile the model."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch.compile was called during generation")

    monkeypatch.setattr(torch, "compile", refuse)
    return calls


def _load(path, dtype, dev):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev).eval()


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("temperature,kv_cache", [(1.0, "dynamic"), (0.7, "static"), (0.0, "static")])
def test_rollouts_ignore_the_checkpoints_generation_config(searcher_model, opinionated_model, no_compile,
                                                           dtype_name, temperature, kv_cache):
    """Same weights, one checkpoint with sampling settings: token for token the same rollouts (sampled with the
    same seed, or greedy), with a static cache that transformers would otherwise compile on CUDA."""
    from transformers import AutoTokenizer

    from support import SHORT_TEMPLATE, FixedDocumentsEngine
    from zerosearch.data import policy_prompt
    from zerosearch.policy import encode_prompt
    from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory

    dev, dtype = device(), DTYPES[dtype_name]
    tok = AutoTokenizer.from_pretrained(searcher_model)
    runs = {}
    for name, path in (("plain", searcher_model), ("opinionated", opinionated_model)):
        model = _load(path, dtype, dev)
        settings = RolloutSettings(max_turns=2, topk=2, max_turn_tokens=24, temperature=temperature,
                                   kv_cache=kv_cache)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, dev)
        trajectories = [Trajectory(q, ("blue",), encode_prompt(tok, policy_prompt(q, SHORT_TEMPLATE), True),
                                   group=g) for g, q in enumerate(QUESTIONS)]
        torch.manual_seed(0)
        runner.run(trajectories, 0.0, np.random.default_rng(0))
        synchronize(dev)
        runs[name] = [t.response_ids for t in trajectories]
        if name == "opinionated":
            assert model.generation_config.repetition_penalty == 1.8  # the checkpoint's, restored after the call
    assert runs["opinionated"] == runs["plain"]
    assert not no_compile


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_in_process_simulator_ignores_the_checkpoints_generation_config(searcher_model, opinionated_model,
                                                                        no_compile, dtype_name):
    from zerosearch.llm.transformers_backend import TransformersChatModel

    dev, dtype = device(), DTYPES[dtype_name]
    conversations = [[{"role": "user", "content": "what colour is the sky"}]] * 3
    texts = {}
    for name, path in (("plain", searcher_model), ("opinionated", opinionated_model)):
        chat = TransformersChatModel(str(path), device=str(dev), dtype=dtype, kv_cache="static")
        texts[name] = [o.text for o in chat.complete(conversations, max_tokens=16, temperature=0.9, seed=3)]
        texts[name] += [o.text for o in chat.complete(conversations, max_tokens=16, temperature=0.0)]
    assert texts["opinionated"] == texts["plain"]
    assert not no_compile


def test_static_cache_generation_is_not_compiled(searcher_model, no_compile):
    """What transformers would do unasked on this device (compile, on CUDA), and that ``plain_generation``
    says no, then a real ``generate`` with a static cache runs eagerly."""
    from transformers import StaticCache

    from zerosearch.llm.sampling import plain_generation

    dev = device()
    model = _load(searcher_model, torch.bfloat16, dev)
    cache = StaticCache(config=model.config, max_cache_len=8)
    kwargs = {"cache": cache, "past_key_values": cache}  # the keyword differs across transformers versions
    assert model._valid_auto_compile_criteria(kwargs, model.generation_config) is (dev.type == "cuda")
    with plain_generation(model):
        assert not model._valid_auto_compile_criteria(kwargs, model.generation_config)
        ids = torch.tensor([[5, 6, 7, 8]], device=dev)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             cache_implementation="static")
    synchronize(dev)
    assert out.shape[1] > ids.shape[1]
    assert not no_compile
