"""One setup of a policy (``load_policy``: device, dtype, tokenizer, chat template, model, LoRA) and one builder of
every engine, below the modules that use them: the chat backend no longer imports the policy module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from zerosearch.config import ConfigError, LoraConfig, SimulatorConfig
from zerosearch.policy import load_policy

SRC = Path(__file__).resolve().parents[1] / "src" / "zerosearch"


def test_load_policy_sets_up_tokenizer_chat_template_model_and_lora():
    policy = load_policy("zerosearch:tiny", device="cpu")
    assert policy.chat and policy.device == torch.device("cpu") and policy.dtype == torch.float32
    assert policy.autocast is None and policy.model is not None
    text = policy.tokenizer.apply_chat_template([{"role": "user", "content": "Hi?"}], add_generation_prompt=True,
                                                tokenize=False)
    assert policy.encode("Hi?") == policy.tokenizer(text, add_special_tokens=False)["input_ids"]
    base = load_policy("zerosearch:tiny-base", device="cpu", weights=False)  # no chat template: the raw prompt
    assert base.model is None and not base.chat and base.encode("Hi?") == base.tokenizer("Hi?")["input_ids"]
    with pytest.raises(ConfigError, match="prompt_style=chat but the tokenizer has no chat template"):
        load_policy("zerosearch:tiny-base", device="cpu", prompt_style="chat", weights=False)
    with pytest.raises(ConfigError, match="device='cuda:7'"):
        load_policy("zerosearch:tiny", device="cuda:7", weights=False)

    torch.manual_seed(0)
    adapted = load_policy("zerosearch:tiny", device="cpu", lora=LoraConfig(enabled=True, r=2, alpha=4),
                          gradient_checkpointing=True, tokenizer=policy.tokenizer)
    assert adapted.tokenizer is policy.tokenizer  # the critic's trunk shares the policy's tokenizer
    trained = [name for name, p in adapted.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in name for name in trained)
    trunk = adapted.model.base_model.model
    assert getattr(trunk, "is_activation_checkpointing", None) or trunk.is_gradient_checkpointing  # renamed in 5.24
    plain = load_policy("zerosearch:tiny", device="cpu", lora=LoraConfig(enabled=False), weights=True)
    assert not hasattr(plain.model, "peft_config")  # lora given but not enabled: full fine-tuning


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_llm_backends_import_nothing_above_them():
    """llm/ sits below the policy, the rollout and the trainer: loading a model for the simulator goes through
    llm.models and runtime, never back up (transformers_backend imported pick_device from policy.py)."""
    upward = {"zerosearch.policy", "zerosearch.trainer", "zerosearch.rollout", "zerosearch.evaluate"}
    for path in sorted((SRC / "llm").glob("*.py")):
        assert not _imports(path) & upward, path.name


def test_the_simulated_engine_of_a_train_config_is_built_by_the_factory(monkeypatch):
    """engine.simulator.* goes to search.factory.build_simulator: the in-process model, its options and the
    engine's, or a ConfigError naming the key for a model without a chat template."""
    from zerosearch.search.factory import build_simulator

    sim = SimulatorConfig(model="policy", mode="finetuned", max_tokens=7, temperature=0.3, max_batch_size=3,
                          prefix_cache=False)
    engine = build_simulator(sim, policy_model="zerosearch:tiny", kv_cache="static")
    assert (engine.mode, engine.max_tokens, engine.temperature) == ("finetuned", 7, 0.3)
    chat = engine.chat_model
    assert (chat.max_batch_size, chat.kv_cache, chat.prefix_cache) == (3, "static", False)
    with pytest.raises(ConfigError, match=r"engine.simulator.model=policy: .* the policy's model zerosearch:tiny-base "
                                          r"has no chat template"):
        build_simulator(sim, policy_model="zerosearch:tiny-base")


def test_engine_kind_decides_what_is_a_server():
    from zerosearch.search.base import is_url
    from zerosearch.search.factory import engine_kind

    assert is_url("http://h:1") and is_url("https://h") and not is_url("bm25:http.jsonl")
    assert engine_kind("simulated:http://h:8001/v1") == "simulated_url"
    assert engine_kind("simulated: zerosearch:tiny") == "simulated_model"
    assert engine_kind("https://h/retrieve") == "retrieval"
