"""Dropout is off in every network zerosearch samples, scores or trains (trl#3234, trl#744: TRL disables it
for RL). A train-mode pass (the update; gradient checkpointing needs train mode) must equal an eval-mode pass
(sampling, the old and reference log-probs) bit for bit, whatever dropout a config or a checkpoint carries."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from zerosearch.models.tiny import tiny_model_dir
from zerosearch.policy import disable_dropout, load_causal_lm


def _train_minus_eval(model: torch.nn.Module, input_ids: torch.Tensor) -> float:
    """Largest |logit| difference between a train-mode and an eval-mode forward pass of the same input."""
    was = model.training
    with torch.no_grad():
        model.eval()
        evaluated = model(input_ids=input_ids).logits
        model.train()
        trained = model(input_ids=input_ids).logits
    model.train(was)
    return (trained - evaluated).abs().max().item()


def _lora_llama_with_dropout():
    """A tiny Llama whose config carries attention dropout, with LoRA adapters (lora_dropout 0.1) whose
    lora_B is non-zero, as after any update (peft initialises it to 0, which would hide the adapter's dropout)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.3)
    model = get_peft_model(LlamaForCausalLM(config),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear"))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    return model


def test_lora_and_attention_dropout_are_turned_off():
    model = _lora_llama_with_dropout()
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    assert _train_minus_eval(model, ids) > 1e-3  # the setup has dropout to remove
    assert disable_dropout(model) is model
    assert _train_minus_eval(model, ids) == 0.0
    # what the saved adapter_config.json / config.json will say: trained without dropout
    assert model.peft_config["default"].lora_dropout == 0.0 and model.config.attention_dropout == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_dropout_modules_of_other_architectures_are_turned_off():
    """GPT-2-style models hold nn.Dropout modules (resid_pdrop, embd_pdrop, attn_pdrop)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.3,
                                       embd_pdrop=0.3, attn_pdrop=0.3, bos_token_id=0, eos_token_id=0))
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    assert _train_minus_eval(model, ids) > 1e-3
    disable_dropout(model)
    assert _train_minus_eval(model, ids) == 0.0 and model.config.resid_pdrop == 0.0


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory):
    """The tiny model saved with ``attention_dropout: 0.5`` in its config.json (a checkpoint that carries it)."""
    out = tmp_path_factory.mktemp("dropout") / "model"
    shutil.copytree(tiny_model_dir(), out)
    config = json.loads((out / "config.json").read_text())
    config["attention_dropout"] = 0.5
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_every_loader_turns_dropout_off(dropout_model):
    """load_causal_lm (policy, critic trunk, evaluation, collection), the SFT loader (warm-up, simulator tuning)
    with LoRA, and the simulator's in-process chat model."""
    from transformers import AutoModelForCausalLM

    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.sft import SFTSettings, load_for_sft

    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    raw = AutoModelForCausalLM.from_pretrained(dropout_model)
    assert _train_minus_eval(raw, ids) > 1e-4  # the checkpoint's dropout would act in train mode
    cpu = torch.device("cpu")
    assert _train_minus_eval(load_causal_lm(str(dropout_model), cpu, torch.float32), ids) == 0.0
    sft_model, _ = load_for_sft(str(dropout_model), SFTSettings(lora=True, lora_r=4), cpu)
    for name, param in sft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    assert _train_minus_eval(sft_model, ids) == 0.0
    chat = TransformersChatModel(str(dropout_model), device="cpu")
    assert chat.model.config.attention_dropout == 0.0
