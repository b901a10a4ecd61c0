"""Tests for zerosearch.curriculum: the noise schedule and the seeded noisy/useful draws."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zerosearch.curriculum import Curriculum, draw_noisy, noise_probability
from zerosearch.settings import ConfigError

# --------------------------------------------------------------------------- noise_probability


def test_endpoints() -> None:
    # i = 0: b**0 = 1 -> ramp 0 -> start;  i = m: b**1 = b -> ramp (b-1)/(b-1) = 1 -> end
    assert noise_probability(0, 100, 0.0, 0.5) == 0.0
    assert noise_probability(100, 100, 0.0, 0.5) == pytest.approx(0.5)


def test_midpoint_hand_worked() -> None:
    # i/m = 0.5: (4**0.5 - 1) / (4 - 1) = (2 - 1) / 3 = 1/3;  p = 0 + 1/3 * 0.5 = 1/6 ~ 0.1667
    assert noise_probability(50, 100, 0.0, 0.5) == pytest.approx(1 / 6)


def test_quarter_point_hand_worked() -> None:
    # i/m = 0.25: 4**0.25 = sqrt(2) ~ 1.41421; ramp = 0.41421 / 3 ~ 0.13807
    # p = 0.25 + 0.13807 * (0.5 - 0.25) ~ 0.28452   (LLaMA-3.2-3B setting 0.25 -> 0.5)
    assert noise_probability(25, 100, 0.25, 0.5) == pytest.approx(0.25 + (2**0.5 - 1) / 3 * 0.25)
    assert noise_probability(25, 100, 0.25, 0.5) == pytest.approx(0.284518, abs=1e-6)


def test_exponential_ramp_is_below_linear() -> None:
    # b > 1 is convex: at i/m = 0.5 the ramp is 1/3 < 1/2
    assert noise_probability(50, 100, 0.0, 1.0) < 0.5


def test_start_greater_than_end_decreases() -> None:
    # p = 0.8 + 1/3 * (0.2 - 0.8) = 0.8 - 0.2 = 0.6
    assert noise_probability(0, 10, 0.8, 0.2) == pytest.approx(0.8)
    assert noise_probability(5, 10, 0.8, 0.2) == pytest.approx(0.6)
    assert noise_probability(10, 10, 0.8, 0.2) == pytest.approx(0.2)


def test_constant_when_start_equals_end() -> None:
    assert all(noise_probability(i, 7, 0.3, 0.3) == pytest.approx(0.3) for i in range(8))


def test_base_one_is_linear() -> None:
    # limit b -> 1 of (b**x - 1)/(b - 1) is x: p = 0 + 0.3 * 0.5 = 0.15
    assert noise_probability(3, 10, 0.0, 0.5, base=1.0) == pytest.approx(0.15)
    # and it agrees with a base very close to 1
    assert noise_probability(3, 10, 0.0, 0.5, base=1.0 + 1e-9) == pytest.approx(0.15, abs=1e-6)


def test_base_below_one_is_concave() -> None:
    # b = 0.25, i/m = 0.5: (0.5 - 1) / (0.25 - 1) = 2/3; p = 2/3 * 0.6 = 0.4
    assert noise_probability(1, 2, 0.0, 0.6, base=0.25) == pytest.approx(0.4)


def test_monotone_over_a_run() -> None:
    values = [noise_probability(i, 200, 0.0, 0.75) for i in range(201)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_step_is_clamped() -> None:
    assert noise_probability(-5, 100, 0.1, 0.5) == pytest.approx(0.1)
    assert noise_probability(150, 100, 0.1, 0.5) == pytest.approx(0.5)


def test_single_step_run() -> None:
    assert noise_probability(0, 1, 0.0, 0.5) == 0.0
    assert noise_probability(1, 1, 0.0, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": -0.1}, "start probability must be in"),
        ({"start": 1.5}, "start probability must be in"),
        ({"end": 1.01}, "end probability must be in"),
        ({"end": float("nan")}, "end probability must be in"),
        ({"total_steps": 0}, "total_steps must be at least 1"),
        ({"base": 0.0}, "base must be > 0"),
        ({"base": -4.0}, "base must be > 0"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    args = {"step": 1, "total_steps": 10, "start": 0.0, "end": 0.5, "base": 4.0} | kwargs
    with pytest.raises(ValueError, match=message):
        noise_probability(**args)


# --------------------------------------------------------------------------- draw_noisy


@pytest.mark.parametrize("p", [0.0, 0.1, 1 / 6, 0.5, 0.75])
def test_noisy_share_matches_probability(p: float) -> None:
    draws = draw_noisy(np.random.default_rng(1234), p, 20_000)
    assert len(draws) == 20_000
    # std of the share is sqrt(p(1-p)/n) <= sqrt(0.25/20000) ~ 0.0035, so 0.01 is ~3 sigma
    assert abs(sum(draws) / len(draws) - p) < 0.01


def test_certain_outcomes() -> None:
    rng = np.random.default_rng(0)
    assert draw_noisy(rng, 0.0, 1000) == [False] * 1000
    assert draw_noisy(rng, 1.0, 1000) == [True] * 1000


def test_returns_python_bools() -> None:
    draws = draw_noisy(np.random.default_rng(0), 0.5, 10)
    assert all(type(d) is bool for d in draws)
    assert draw_noisy(np.random.default_rng(0), 0.5, 0) == []


def test_same_seed_same_draws() -> None:
    a = draw_noisy(np.random.default_rng(42), 0.3, 500)
    b = draw_noisy(np.random.default_rng(42), 0.3, 500)
    c = draw_noisy(np.random.default_rng(43), 0.3, 500)
    assert a == b
    assert a != c


def test_uses_only_the_passed_generator() -> None:
    # global numpy / random state must not influence the draws
    np.random.seed(1)
    a = draw_noisy(np.random.default_rng(7), 0.5, 200)
    np.random.seed(2)
    b = draw_noisy(np.random.default_rng(7), 0.5, 200)
    assert a == b


def test_successive_calls_advance_the_generator() -> None:
    rng = np.random.default_rng(5)
    first = draw_noisy(rng, 0.5, 200)
    second = draw_noisy(rng, 0.5, 200)
    assert first != second
    # and split calls equal one long call from the same seed
    assert first + second == draw_noisy(np.random.default_rng(5), 0.5, 400)


@pytest.mark.parametrize(("p", "n"), [(-0.1, 5), (1.1, 5), (0.5, -1)])
def test_draw_noisy_invalid(p: float, n: int) -> None:
    with pytest.raises(ValueError):
        draw_noisy(np.random.default_rng(0), p, n)


# --------------------------------------------------------------------------- Curriculum


def test_curriculum_defaults() -> None:
    cur = Curriculum()
    assert (cur.start, cur.end, cur.base) == (0.0, 0.5, 4.0)
    # same hand-worked midpoint as above: 1/6
    assert cur.probability(50, 100) == pytest.approx(1 / 6)
    assert cur.probability(0, 100) == 0.0
    assert cur.probability(100, 100) == pytest.approx(0.5)


def test_curriculum_matches_function() -> None:
    cur = Curriculum(start=0.25, end=0.5, base=2.0)
    for i in (0, 3, 10):
        assert cur.probability(i, 10) == noise_probability(i, 10, 0.25, 0.5, 2.0)


def test_curriculum_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Curriculum().start = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": -0.5}, r"^curriculum\.start=-0\.5 must lie in \[0\.0, 1\.0\]$"),
        ({"end": 2.0}, r"^curriculum\.end=2\.0 must lie in \[0\.0, 1\.0\]$"),
        ({"end": float("nan")}, r"^curriculum\.end=nan must be a finite number$"),
        ({"base": 0.0}, r"^curriculum\.base=0\.0 must be > 0 \(the paper uses 4\)$"),
    ],
)
def test_curriculum_validates_on_construction(kwargs: dict, message: str) -> None:
    """The one curriculum object checks its keys as the train config and the verl loop's entry spell them."""
    with pytest.raises(ConfigError, match=message):
        Curriculum(**kwargs)


def test_the_train_config_curriculum_is_the_curriculum_object() -> None:
    """One class for the trainer and the verl loop: the train config's section is a Curriculum."""
    from zerosearch.config import load_train_config

    cfg = load_train_config(None, ["curriculum.start=0.25", "curriculum.base=2"])
    assert type(cfg.curriculum) is Curriculum
    assert cfg.curriculum.probability(3, 10) == noise_probability(3, 10, 0.25, 0.5, 2.0)
    with pytest.raises(ConfigError, match=r"curriculum\.end=1\.5 must lie in \[0\.0, 1\.0\]"):
        load_train_config(None, ["curriculum.end=1.5"])
