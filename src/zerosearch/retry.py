"""Bounded retries with capped exponential backoff and jitter, shared by every network client.

The policy (the same for the OpenAI-compatible chat backend, the retrieval client and SerpAPI):
at most ``max_retries`` retries after the first attempt; before retry ``r`` (1-based) wait a delay
drawn uniformly from ``[d/2, d]`` with ``d = min(backoff_max, backoff * 2**(r-1))`` (the jitter keeps
a burst of failed calls from coming back in lockstep). Only what may get better is retried:
timeouts, connection errors, HTTP 5xx, 429 and the "try again" statuses 408/409. A call that still
fails is handed back as data (:class:`Outcome` with the last exception), never raised.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

__all__ = [
    "RETRYABLE_STATUS",
    "Outcome",
    "backoff_delay",
    "call_with_retries",
    "check_retry_settings",
    "is_retryable_status",
]

T = TypeVar("T")

# 4xx statuses that mean "try again later" rather than "your request is wrong".
RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """True for HTTP 5xx and for 408/409/429."""
    return status >= 500 or status in RETRYABLE_STATUS


def backoff_delay(retry: int, backoff: float, backoff_max: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): uniform in ``[d/2, d]``,
    ``d = min(backoff_max, backoff * 2**(retry-1))``."""
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    cap = min(backoff_max, backoff * (2 ** (retry - 1)))
    return (rng or random).uniform(cap / 2, cap)


def check_retry_settings(*, timeout: float, max_retries: int, backoff: float, backoff_max: float) -> None:
    """Raise ``ValueError`` naming the bad setting, if any."""
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    if backoff < 0 or backoff_max < backoff:
        raise ValueError(
            f"need 0 <= backoff <= backoff_max, got backoff={backoff}, backoff_max={backoff_max}"
        )


@dataclass
class Outcome(Generic[T]):
    """What :func:`call_with_retries` got: a value, or the last exception; and how many attempts."""

    value: T | None
    error: Exception | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None


def call_with_retries(
    fn: Callable[[], T],
    *,
    retryable: Callable[[Exception], bool],
    max_retries: int,
    backoff: float,
    backoff_max: float,
    rng: random.Random | None = None,
    on_retry: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[T]:
    """Call ``fn`` until it returns, it raises something not ``retryable``, or retries run out.

    ``on_retry`` is called with the exception before each retry (e.g. to count retries).
    Exceptions are caught (``Exception`` only: ``KeyboardInterrupt`` still stops the program).
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return Outcome(value=fn(), error=None, attempts=attempts)
        except Exception as exc:  # classified here: retried, or returned as data
            if attempts > max_retries or not retryable(exc):
                return Outcome(value=None, error=exc, attempts=attempts)
            if on_retry is not None:
                on_retry(exc)
            sleep(backoff_delay(attempts, backoff, backoff_max, rng))


class CountedRetries:
    """Mixin for network clients: bounded retries with backoff, counted in ``calls``, ``failures`` and
    ``retries`` (thread-safe), the counters every engine and chat backend reports.

    Subclasses call :meth:`_init_retries` in ``__init__`` and wrap each remote call in :meth:`_call_counted`.
    """

    def _init_retries(self, *, timeout: float, max_retries: int, backoff: float, backoff_max: float) -> None:
        check_retry_settings(timeout=timeout, max_retries=max_retries, backoff=backoff, backoff_max=backoff_max)
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self._lock = threading.Lock()
        self._random = random.Random()  # jitter only; it never affects results

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return backoff_delay(retry, self.backoff, self.backoff_max, self._random)

    def _call_counted(self, fn: Callable[[], T], retryable: Callable[[Exception], bool]) -> Outcome[T]:
        outcome = call_with_retries(
            fn, retryable=retryable, max_retries=self.max_retries, backoff=self.backoff,
            backoff_max=self.backoff_max, rng=self._random, on_retry=self._count_retry,
        )
        with self._lock:
            self.calls += 1
            self.failures += 0 if outcome.ok else 1
        return outcome

    def _count_retry(self, _exc: Exception) -> None:
        with self._lock:
            self.retries += 1
