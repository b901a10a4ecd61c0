"""The chat-model interface: what the simulated engine and the evaluation baselines talk to.

A chat model turns a batch of conversations (lists of ``{"role", "content"}`` messages) into one
:class:`Completion` per conversation. Backends: in-process transformers (batched generate) and any
OpenAI-compatible HTTP server. A failed call is returned as ``Completion(error=...)``, never raised and
never replaced by a placeholder text.

``stop``: strings at which a reply ends, as in the OpenAI API: generation stops at the first one and
the reply excludes it. The simulated engine uses it to stop after document ``topk`` instead of running
to ``max_tokens`` and cutting afterwards, as the original did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

Message = dict[str, str]


@dataclass
class Completion:
    text: str = ""
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class ChatModel(Protocol):
    name: str

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None = None,
    ) -> list[Completion]: ...
