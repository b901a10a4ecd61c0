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
from zerosearch.search.documents import render_documents

STOP_STRINGS = ("</search>", "</answer>")

INVALID_ACTION_MESSAGE = (
    "\nMy previous action is invalid. "
    "If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. "
    "Let me try again.\n"
)

# The first well-formed action in the turn's text, as Search-R1's postprocess_predictions does.
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)


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


def information_block(documents: Sequence[Document]) -> str:
    """``\\n\\n<information>Doc 1: …\\nDoc 2: …</information>\\n\\n`` (documents sanitised)."""
    return f"\n\n<information>{render_documents(documents).strip()}</information>\n\n"
