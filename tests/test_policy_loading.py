"""One setup of a policy (``load_policy``: device, dtype, tokenizer, chat template, model, LoRA) and one builder of
every engine, below the modules that use them: the chat backend no longer imports the policy module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from zerosearch.config import ConfigError, LoraConfig
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
