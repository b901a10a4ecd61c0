"""The text protocol between the policy and the environment.

The policy writes ``<think>…</think>`` then either ``<search> query </search>`` or ``<answer> … </answer>``.
Generation stops at ``</search>`` / ``</answer>``; the environment then appends an ``<information>`` block
or the corrective message. These strings are byte-exact to Search-R1 / ZeroSearch, which the published
policy checkpoints were trained on.

Departure from the original: an empty query (``<search> </search>``) is an invalid action here; the
original sent an empty query to the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from zerosearch.search.base import Document
from zerosearch.search.documents import DEFAULT_DOC_FORMAT, render_documents

STOP_STRINGS = ("</search>", "</answer>")

INVALID_ACTION_MESSAGE = (
    "\nMy previous action is invalid. "
    "If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. "
    "Let me try again.\n"
)

# The first well-formed action in the turn's text, as Search-R1's postprocess_predictions does.
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
# A turn in the exact shape the prompt asks for: reasoning, then one action, nothing else around them.
# No tag of the protocol may appear inside the reasoning or the action.
_TAG = r"</?(?:think|search|answer|information)>"
_WELL_FORMED_TURN = re.compile(
    rf"\s*<think>(?:(?!{_TAG}).)*</think>\s*<(search|answer)>(?:(?!{_TAG}).)*</\1>\s*", re.DOTALL
)


@dataclass(frozen=True)
class Action:
    """What one generated turn asked for: ``search`` (with ``content`` = query), ``answer`` or ``invalid``."""

    kind: str
    content: str = ""


def parse_action(turn_text: str) -> Action:
    """Parse the text the policy generated in one turn (not the whole trajectory)."""
    match = _ACTION.search(turn_text)
    if match is None:
        return Action("invalid")
    kind, content = match.group(1), match.group(2).strip()
    if kind == "search" and not content:
        return Action("invalid")
    return Action(kind, content)


def well_formed_turn(turn_text: str) -> str | None:
    """The action (``"search"`` or ``"answer"``) of a turn written exactly as the protocol asks,
    ``<think> … </think>`` then one ``<search> … </search>`` or ``<answer> … </answer>`` with only
    whitespace around them and no protocol tag inside; None for anything else.

    The structure Search-R1's ``is_valid_sequence`` checks over a whole response, one turn at a time
    (the environment's ``<information>`` blocks sit between turns, outside the policy's text).
    """
    match = _WELL_FORMED_TURN.fullmatch(turn_text)
    return match.group(1) if match else None


def well_formed(turn_texts: Sequence[str]) -> bool:
    """A trajectory in the protocol's exact format: every turn well formed (:func:`well_formed_turn`),
    searches until the last turn, which answers. A trajectory with no turn is not well formed."""
    actions = [well_formed_turn(t) for t in turn_texts]
    return bool(actions) and actions[-1] == "answer" and all(a == "search" for a in actions[:-1])


def information_block(documents: Sequence[Document], doc_format: str = DEFAULT_DOC_FORMAT) -> str:
    """``\\n\\n<information>Doc 1: …\\nDoc 2: …</information>\\n\\n``: the documents sanitised and
    rendered in ``doc_format`` (``zerosearch`` | ``search_r1``, see :mod:`zerosearch.search.documents`),
    stripped, as both originals' ``execute_predictions`` do."""
    return f"\n\n<information>{render_documents(documents, doc_format).strip()}</information>\n\n"
