"""Sampling whose random draws belong to each row, not to the batch: reproducible samples however rows are batched.

``generate(do_sample=True)`` draws every row's next token from one global torch generator, so a row's
sample depends on which other rows share its batch and in what order. An evaluation that samples K answers
per question (``zerosearch eval --samples``) and is resumed batches the remaining questions differently,
and would then draw other samples than an uninterrupted run. Here each row carries its own seed and its
next token is drawn by inverse transform sampling: one uniform ``u`` from the row's own generator, and the
first token whose cumulative probability under ``softmax(logits / T)`` exceeds ``u`` (an exact draw from
that distribution). vLLM's per-request ``SamplingParams.seed`` has the same aim (a generator per request);
it races exponentials over the whole vocabulary, one draw per vocabulary entry, where this takes one draw
per token: on a shared 2-core CPU, 16 rows x 49,152 entries took ~30 ms per step the first way (in float64,
which the race needs to keep its tail) and ~4 ms this way.

:class:`RowSeededSampling` is a ``LogitsProcessor`` that leaves 0 at the drawn token and -inf elsewhere, so
``generate`` must run greedy (``do_sample=False``) and takes that token. The generators live on the CPU
whatever the model's device (the draws do not depend on the device either); the cumulative sum is taken in
float64. A row's t-th generated token of one ``generate`` call uses the t-th uniform of the generator
seeded for that call, so the draws do not depend on the batch. Numerics can: left padding changes the
logits in the last bits, so a draw that falls within ~1e-7 of a boundary between two tokens may rarely go
the other way, as a near-tie may in greedy decoding.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from transformers import LogitsProcessor

__all__ = ["RowSeededSampling", "derive_seed"]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (their ``repr``s), the same in every process and Python version (unlike
    ``hash``): e.g. ``derive_seed(seed, dataset, question_id, sample_index)``."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RowSeededSampling(LogitsProcessor):
    """A ``generate`` logits processor drawing each row's next token from ``softmax(scores / temperature)``
    with one generator per row; it returns 0 at the drawn token and -inf elsewhere.

    Args:
        seeds: one seed per row of the batch, in row order (shape [B]).
        temperature: > 0.

    Use with ``do_sample=False`` and no other processor (``top_k``, ``top_p``, ``repetition_penalty``: see
    :func:`zerosearch.llm.sampling.plain_generation`).
    """

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.temperature = float(temperature)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{len(self.generators)} row seeds for a batch of {scores.shape[0]} rows")
        cdf = torch.softmax(scores.float() / self.temperature, dim=-1).double().cumsum(-1)
        uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        # the first token whose cumulative probability exceeds u (right=True: a token of probability 0 never is)
        target = (uniform.to(cdf.device) * cdf[:, -1]).unsqueeze(1)
        drawn = torch.searchsorted(cdf, target, right=True).clamp_max(scores.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, drawn, 0.0)
