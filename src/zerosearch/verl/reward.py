"""A verl custom reward function that is :mod:`zerosearch.rewards` (F1 by default, EM or cover-EM).

Point verl at it with::

    reward.custom_reward_function.path=pkg://zerosearch.verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.reward=em     # optional: f1 (default) | em | cover_em

verl (``verl/experimental/reward_loop/reward_manager/naive.py``) calls
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` once per trajectory, with
``solution_str`` the decoded response (special tokens skipped) and ``extra_info`` the row's
``extra_info`` updated with the agent loop's ``extra_fields``.

Which answer is scored: the last ``<answer>`` of the turn that answered, exactly as zerosearch's
trainer scores it. The zerosearch agent loop records that turn (:data:`~zerosearch.verl.ANSWER_TURN_KEY`);
without it (another agent loop) the answer is taken from ``solution_str`` with the environment's text
removed first (:func:`zerosearch.protocol.policy_text`): the ``<information>`` blocks and the corrective
message, which itself contains ``<answer> and </answer>`` and would otherwise be read as the answer "and".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zerosearch.protocol import extract_answer, policy_text
from zerosearch.rewards import REWARD_KINDS, answer_metrics, format_shaped_reward
from zerosearch.verl import (
    ANSWER_TURN_KEY,
    NOISY_SEARCHES_KEY,
    SEARCH_FAILURES_KEY,
    SEARCHES_KEY,
    WELL_FORMED_KEY,
)

__all__ = ["compute_score", "gold_answers"]

_MISSING: Any = object()


def gold_answers(ground_truth: Any) -> list[str]:
    """The gold answers of verl's ``reward_model.ground_truth``: ``{"target": [...]}`` (Search-R1 /
    ZeroSearch parquet, what ``zerosearch export-verl`` writes), a list or array of answers, or one
    string (a single answer: a string joined from several is never split, answers contain commas)."""
    if isinstance(ground_truth, Mapping):
        ground_truth = ground_truth.get("target", _MISSING)
        if ground_truth is _MISSING:
            raise ValueError("reward_model.ground_truth is a mapping without 'target'")
    if isinstance(ground_truth, str):
        return [ground_truth]
    if isinstance(ground_truth, np.ndarray):
        ground_truth = ground_truth.tolist()
    if not isinstance(ground_truth, (list, tuple)):
        raise ValueError(f"reward_model.ground_truth: expected answers, got {type(ground_truth).__name__}")
    return [str(answer) for answer in ground_truth]


def _number(extra_info: Mapping[str, Any], key: str) -> float:
    value = extra_info.get(key)
    return float("nan") if value is None else float(value)


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  reward: str | None = None, format_reward: float = 0.0, **kwargs: Any) -> dict[str, float]:
    """Score one trajectory for verl: ``{"score": reward, "f1", "em", "cover_em", "answered", ...}``.

    Args:
        data_source: the row's dataset (every QA source is scored alike).
        solution_str: the decoded response (the policy's turns and the environment's insertions).
        ground_truth: the row's ``reward_model.ground_truth`` (see :func:`gold_answers`).
        extra_info: the row's ``extra_info`` with the agent loop's extra fields. ``extra_info["reward"]``,
            when present, picks the metric for that row.
        reward: the metric of ``score``: ``f1`` (the paper's reward, default), ``em`` or ``cover_em``
            (``reward_kwargs.reward`` in verl's config).
        format_reward: weight W of the well-formed bonus, ``(1 - W) * score + W * well_formed``
            (:func:`zerosearch.rewards.format_shaped_reward`; 0 = the paper's reward). Needs the
            zerosearch agent loop, which records whether the trajectory is well formed.

    ``score`` is the reward; the other keys are logged by verl (``val-aux/...`` in validation, the rollout
    dumps in training). ``searches``, ``search_failures`` and ``noisy_searches`` come from the agent
    loop, NaN without it. Every call returns the same keys, as verl requires.

    Raises:
        ValueError: an unknown ``reward``, unreadable ``ground_truth``, or ``format_reward > 0`` without
            the agent loop's well-formed flag.
    """
    extra_info = {} if extra_info is None else extra_info
    kind = extra_info.get("reward") or reward or "f1"
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward {kind!r}; valid: {', '.join(REWARD_KINDS)}")
    answer_turn = extra_info.get(ANSWER_TURN_KEY, _MISSING)
    if answer_turn is _MISSING:
        answer = extract_answer(policy_text(solution_str))
    else:
        answer = extract_answer(answer_turn) if answer_turn else None
    metrics = answer_metrics(answer, gold_answers(ground_truth))
    score = metrics[kind]
    if format_reward:
        well_formed = extra_info.get(WELL_FORMED_KEY)
        if well_formed is None:
            raise ValueError("format_reward needs the zerosearch agent loop (it records whether a trajectory "
                             "is well formed); this trajectory has no such record")
        score = format_shaped_reward(score, bool(well_formed), format_reward)
    return {
        "score": score,
        **metrics,
        "answered": float(answer is not None),
        "searches": _number(extra_info, SEARCHES_KEY),
        "search_failures": _number(extra_info, SEARCH_FAILURES_KEY),
        "noisy_searches": _number(extra_info, NOISY_SEARCHES_KEY),
    }
