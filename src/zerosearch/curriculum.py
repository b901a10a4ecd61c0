"""The noise curriculum: how likely a simulated search call returns noisy documents.

ZeroSearch raises the share of noisy (related but unhelpful) simulated search results over
training along an exponential curve. Each search call draws independently; all randomness comes
from a caller-supplied ``numpy.random.Generator`` so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zerosearch.settings import ConfigError, check_settings, setting


def _validate(total_steps: int, start: float, end: float, base: float) -> None:
    """Raise ValueError naming the bad argument and how to fix it."""
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start probability must be in [0, 1], got {start}")
    if not 0.0 <= end <= 1.0:
        raise ValueError(f"end probability must be in [0, 1], got {end}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if not base > 0.0:
        raise ValueError(f"base must be > 0 (the paper uses 4; 1 gives a linear ramp), got {base}")


def noise_probability(
    step: int, total_steps: int, start: float, end: float, base: float = 4.0
) -> float:
    """Probability that a search call at training step ``step`` of ``total_steps`` is noisy.

    The paper's curriculum, with i = ``step``, m = ``total_steps``, p_s = ``start``,
    p_e = ``end`` and b = ``base``::

        p_i = p_s + (b ** (i / m) - 1) / (b - 1) * (p_e - p_s)

    i is a step index on [0, m]: i = 0 gives ``start``, i = m gives ``end``; values outside are
    clamped into that range. ``base == 1`` is the limit of the formula, a linear ramp i / m.
    With b > 1 the ramp starts slowly and speeds up; ``start > end`` (less noise over time) is
    allowed.

    The original code (``LLMGenerationManager.dynamic_threshold`` in ZeroSearch's
    ``llm_agent/generation.py``) computed
    ``start_threshold + (exp_base ** (current_step / total_steps) - 1) / (exp_base - 1)
    * (end_threshold - start_threshold)``, returning ``end_threshold`` once
    ``current_step >= total_steps``. It was called with verl's ``global_steps``, which starts at
    1, so its first training step used i = 1 rather than 0. A trainer that numbers its steps
    1..m and calls ``noise_probability(step, m, ...)`` reproduces that and reaches ``end`` on
    its last step; calling with the 0-based index instead makes the first step use exactly
    ``start``. The two differ by one step of progress (1 / m).
    """
    _validate(total_steps, start, end, base)
    progress = min(max(step, 0), total_steps) / total_steps
    if base == 1.0:
        ramp = progress
    else:
        ramp = (base**progress - 1.0) / (base - 1.0)
    return start + ramp * (end - start)


def draw_noisy(rng: np.random.Generator, probability: float, n: int) -> list[bool]:
    """``n`` independent Bernoulli(``probability``) draws from ``rng``: True means noisy.

    Only ``rng`` is used, never global randomness, so the same generator state gives the same
    draws.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return (rng.random(n) < probability).tolist()


@dataclass(frozen=True)
class Curriculum:
    """The noise curriculum: the noise probability ramps from ``start`` to ``end`` over a run
    (:func:`noise_probability`). The one curriculum object: the train config's ``curriculum`` section and the
    verl agent loop's ``curriculum`` entry are both this; raises ConfigError naming ``curriculum.<key>``.

    Paper settings: Qwen2.5-7B 0 -> 0.75, Qwen2.5-3B 0 -> 0.25, LLaMA-3.2-3B 0.25 -> 0.5;
    README example 0 -> 0.5 (the defaults here). ``base`` is the exponential base b (paper: 4).
    """

    start: float = setting(0.0, low=0.0, high=1.0, help="noise probability at the first step")
    end: float = setting(0.5, low=0.0, high=1.0, help="noise probability at the last step")
    base: float = setting(4.0, help="the exponential base b of the ramp, > 0 (the paper: 4; 1: linear)")

    def __post_init__(self) -> None:
        check_settings(self, prefix="curriculum.")
        if not self.base > 0:
            raise ConfigError(f"curriculum.base={self.base} must be > 0 (the paper uses 4)")

    def probability(self, step: int, total_steps: int) -> float:
        """Noise probability at ``step`` of ``total_steps``; see :func:`noise_probability`."""
        return noise_probability(step, total_steps, self.start, self.end, self.base)
