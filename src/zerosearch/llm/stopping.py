"""Stop ``generate`` when a row's new text contains one of some strings (``</search>``, ``Doc 4``, ...).

Used by the policy rollout (stop after an action tag) and by the in-process chat model (the ``stop``
strings of a completion request, as an OpenAI-compatible server takes them).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import StoppingCriteria

__all__ = ["StopOnStrings", "cut_at_stop"]


class StopOnStrings(StoppingCriteria):
    """Stop a row once the text it generated in this call contains any of ``stops``.

    Only the last few *generated* tokens are decoded at each step (a token decodes to at least one
    character, so ``len(longest stop) + 2`` tokens always cover a stop string that just completed), so it
    costs nothing; transformers' ``StopStringCriteria`` instead tabulates the whole vocabulary at every
    ``generate`` call (~5-10 s for a 50k vocabulary on CPU) and may match a stop string that ends the
    *prompt* (e.g. the corrective message mentions ``</answer>``).

    Args:
        tokenizer: decodes the generated ids.
        prompt_width: the (padded) prompt length; columns before it are never looked at.
        stops: the stop strings (at least one, none empty).
    """

    def __init__(self, tokenizer, prompt_width: int, stops: Sequence[str]):
        stops = tuple(stops)
        if not stops or any(not s for s in stops):
            raise ValueError(f"stop strings must be non-empty, got {stops!r}")
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.stops = stops
        self.tail = max(len(s) for s in stops) + 2

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.tail)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=False)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string, as the OpenAI API returns it."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]
