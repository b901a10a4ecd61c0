"""The in-process chat model's generate: what it costs per decode step (zerosearch.llm.transformers_backend)."""

from __future__ import annotations

import torch


def test_autocast_casts_the_weights_once_per_call_not_per_step():
    """Under bf16 autocast each weight is cast to bf16 once per ``complete`` and reused by every decode step (the
    cast cache, which inference_mode turns off: there every step cast all the weights again, 1.7x the CPU time
    of a SmolLM2 generate)."""
    from torch.profiler import ProfilerActivity, profile

    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.models.tiny import tiny_model_dir

    chat = TransformersChatModel(str(tiny_model_dir()), autocast=torch.bfloat16)
    weights = {repr(list(m.weight.shape)) for m in chat.model.modules() if isinstance(m, torch.nn.Linear)}
    linear = sum(isinstance(m, torch.nn.Linear) for m in chat.model.modules())
    conversations = [[{"role": "user", "content": "hello there"}]] * 2
    casts = []
    for steps in (2, 8):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            replies = chat.complete(conversations, max_tokens=steps, temperature=0)
        assert all(len(chat.tokenizer(r.text, add_special_tokens=False)["input_ids"]) == steps for r in replies)
        casts.append(sum(e.count for e in prof.key_averages(group_by_input_shape=True)
                         if e.key == "aten::_to_copy" and e.input_shapes and repr(e.input_shapes[0]) in weights))
    assert casts == [linear, linear]
