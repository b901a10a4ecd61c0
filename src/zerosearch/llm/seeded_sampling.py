"""Sampling whose random draws belong to each row, not to the batch: reproducible samples however rows are batched.

``generate(do_sample=True)`` draws every row's next token from one global torch generator, so a row's
sample depends on which other rows share its batch and in what order. An evaluation that samples K answers
per question (``zerosearch eval --samples``) and is resumed batches the remaining questions differently,
and would then draw other samples than an uninterrupted run. Here each row carries its own seed and the
next token is drawn by the Gumbel-max trick: ``argmax(logits / T + G)`` with ``G`` i.i.d. standard Gumbel
noise from the row's own generator is an exact draw from ``softmax(logits / T)`` (Gumbel 1954; Maddison et
al. 2014, "A* Sampling"). vLLM's per-request ``SamplingParams.seed`` works the same way (a generator per
request, ``probs / Exp(1)`` then argmax, the same trick in another form).

:class:`RowSeededSampling` is a ``LogitsProcessor`` returning ``logits / T + G``; ``generate`` must then
run greedy (``do_sample=False``), which takes the argmax. The noise is drawn in float64 (a float32 uniform
of 0, whose chance is ~2^-24 per token and vocabulary entry, would bias the draw). A row's t-th generated
token of one ``generate`` call uses the t-th noise vector of the generator seeded for that call, so the
draws do not depend on the batch. Numerics can: left padding changes the logits in the last bits, so a
near-tie may rarely flip, as in greedy decoding.
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
    """A ``generate`` logits processor: ``scores / temperature`` plus Gumbel noise from one generator per row.

    Args:
        seeds: one seed per row of the batch, in row order (shape [B]).
        temperature: > 0; the distribution drawn from is ``softmax(scores / temperature)``.

    Use with ``do_sample=False`` and no other warper (``top_k``, ``top_p``: see
    :func:`zerosearch.llm.sampling.plain_generation`).
    """

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.seeds = list(seeds)
        self.temperature = float(temperature)
        self._generators: list[torch.Generator] | None = None

    def _noise(self, vocab: int, device: torch.device) -> torch.Tensor:
        if self._generators is None:  # created on the scores' device at the first step
            self._generators = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        uniform = torch.stack([torch.rand(vocab, generator=g, device=device, dtype=torch.float64)
                               for g in self._generators])
        return -torch.log(-torch.log(uniform))  # u = 0 gives -inf: that token is never drawn

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.seeds):
            raise ValueError(f"{len(self.seeds)} row seeds for a batch of {scores.shape[0]} rows")
        return scores.double() / self.temperature + self._noise(scores.shape[-1], scores.device)
