"""A chat model over any OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, OpenAI itself).

The whole batch is sent concurrently from a thread pool bounded by ``max_concurrency``. Each call is
retried with capped exponential backoff and jitter on what is worth retrying: timeouts, connection
errors, HTTP 5xx and 429 (and 408/409, which servers use for "try again"). Other 4xx (a bad request, a
wrong model name, a missing key) will not get better by retrying and fail at once. A call that still
fails comes back as ``Completion(error=..., attempts=n)``: never raised and never replaced by a
placeholder text, so the caller can count it and leave it out of training (the original code retried
forever behind a bare ``except`` and then trained on "No information available").

The ``openai`` client's own retries are switched off (``max_retries=0``) so that ours are the only
ones and ``attempts`` is the true number of requests sent.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from zerosearch.llm.base import Completion, Message
from zerosearch.retry import CountedRetries, is_retryable_status

__all__ = ["OpenAIChatModel"]


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "OpenAIChatModel needs the `openai` package: pip install 'zerosearch[serve]' "
            "(or pip install openai)"
        ) from exc
    return openai


class OpenAIChatModel(CountedRetries):
    """A :class:`~zerosearch.llm.base.ChatModel` over an OpenAI-compatible ``/v1/chat/completions``.

    Args:
        model: the served model name (vLLM: the ``--served-model-name`` or the model path).
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: default ``$OPENAI_API_KEY``, else ``"EMPTY"`` (what local servers accept).
        max_concurrency: most requests in flight at once.
        timeout: seconds per request (connect + read).
        max_retries: retries after the first attempt, so at most ``max_retries + 1`` requests.
        backoff: delay before the first retry, in seconds; doubles per retry ...
        backoff_max: ... up to this cap. Each delay is drawn uniformly from ``[d/2, d]`` (jitter,
            so that a burst of failed calls does not come back in lockstep).

    Counters (cumulative, thread-safe): ``calls`` (conversations completed, ok or not), ``failures``
    (conversations returned with an error), ``retries`` (extra requests beyond the first of each
    call). Requests sent = ``calls + retries``.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        *,
        max_concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._init_retries(timeout=timeout, max_retries=max_retries, backoff=backoff, backoff_max=backoff_max)
        openai = _import_openai()
        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.name = f"openai:{model}@{base_url}"
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=0,  # ours are the only retries
        )

    # -- ChatModel ---------------------------------------------------------------------------------

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in order; failures come back as ``Completion(error=)``.

        ``stop`` goes to the server as the request's ``stop`` (the OpenAI API takes at most 4 strings).
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not conversations:
            return []
        stop = list(stop or [])
        if len(stop) > 4:
            raise ValueError(f"the OpenAI API takes at most 4 stop strings, got {len(stop)}")
        workers = min(self.max_concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-chat") as pool:
            futures = [
                pool.submit(self._complete_one, list(conv), max_tokens, temperature, stop)
                for conv in conversations
            ]
            return [future.result() for future in futures]

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self.client.close()

    def __enter__(self) -> "OpenAIChatModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    def _retryable(self, exc: Exception) -> bool:
        openai = self._openai
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(exc, openai.APIStatusError):
            return is_retryable_status(exc.status_code)
        return False

    def _complete_one(self, messages: list[Message], max_tokens: int, temperature: float,
                      stop: list[str]) -> Completion:
        extra = {"stop": stop} if stop else {}
        outcome = self._call_counted(
            lambda: _message_text(self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature, **extra,
            )),
            self._retryable,
        )
        if outcome.error is not None:
            return Completion(error=_describe(outcome.error, outcome.attempts), attempts=outcome.attempts)
        return Completion(text=outcome.value, attempts=outcome.attempts)


class _MalformedResponse(Exception):
    """The server answered 200 but not with a usable chat completion."""


def _message_text(response: Any) -> str:
    choices = getattr(response, "choices", None)
    if not choices:
        raise _MalformedResponse("the response has no choices")
    content = choices[0].message.content
    if content is None:
        raise _MalformedResponse("the response's message has no content")
    return content


def _describe(exc: Exception, attempts: int) -> str:
    status = getattr(exc, "status_code", None)
    what = f"{type(exc).__name__}" + (f" (HTTP {status})" if status is not None else "")
    message = str(exc).strip().replace("\n", " ")
    if len(message) > 500:
        message = message[:500] + "..."
    return f"{what}: {message} [after {attempts} attempt{'s' if attempts != 1 else ''}]"
