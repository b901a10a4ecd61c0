"""The text protocol between the policy and the environment: every tag, and every pattern that reads one.

The policy writes ``<think>…</think>`` then either ``<search> query </search>`` or ``<answer> … </answer>``.
Generation stops at ``</search>`` / ``</answer>``; the environment then appends an ``<information>`` block
(:func:`wrap_information`; the documents rendered by :func:`zerosearch.search.documents.information_block`)
or the corrective message. These strings are byte-exact to Search-R1 / ZeroSearch, which the published
policy checkpoints were trained on.

Everything that reads the protocol's tags is here, built from :data:`TAGS`: the action of a turn
(:func:`parse_action`), the answer (:func:`extract_answer`, which the rewards score), the exact format
(:func:`well_formed_turn`), the policy's own text of a response (:func:`policy_text`, verl's reward), and the
tag look-alikes defused in documents (:func:`defuse_tags`, :func:`zerosearch.search.documents.sanitize`).
Standard library only: the rewards and the verl reward import it without torch.

Departure from the original: an empty query (``<search> </search>``) is an invalid action here; the
original sent an empty query to the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DOC_FORMAT", "DOC_FORMATS", "INFORMATION_CLOSE", "INFORMATION_OPEN", "INVALID_ACTION_MESSAGE",
    "STOP_STRINGS", "TAGS", "Action",
    "defuse_tags", "extract_answer", "parse_action", "policy_text", "well_formed", "well_formed_turn",
    "wrap_information",
]

# The protocol's tags: the policy writes think, search and answer; the environment writes information.
TAGS = ("think", "search", "answer", "information")

STOP_STRINGS = ("</search>", "</answer>")
# How the documents inside <information> are written, the policy's ``doc_format`` (each rendering is in
# zerosearch.search.documents): the original ZeroSearch's "Doc i: text", or Search-R1's "Doc i(Title: ...) text".
DOC_FORMATS = ("zerosearch", "search_r1")
DEFAULT_DOC_FORMAT = "zerosearch"
INFORMATION_OPEN, INFORMATION_CLOSE = "<information>", "</information>"

INVALID_ACTION_MESSAGE = (
    "\nMy previous action is invalid. "
    "If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. "
    "Let me try again.\n"
)

_ANY_TAG = "|".join(TAGS)  # think|search|answer|information

# The first well-formed action in the turn's text, as Search-R1's postprocess_predictions does.
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
# A turn in the exact shape the prompt asks for: reasoning, then one action, nothing else around them.
# No tag of the protocol may appear inside the reasoning or the action.
_TAG = rf"</?(?:{_ANY_TAG})>"
_WELL_FORMED_TURN = re.compile(
    rf"\s*<think>(?:(?!{_TAG}).)*</think>\s*<(search|answer)>(?:(?!{_TAG}).)*</\1>\s*", re.DOTALL
)
# The last closing tag together with the nearest opening tag before it: the lookahead forbids a
# second "<answer>" inside the captured text, so "<answer> x <answer> y </answer>" yields "y".
_ANSWER_BLOCK = re.compile(r"<answer>((?:(?!<answer>).)*?)</answer>", re.DOTALL)
# What the environment inserted in a response: its <information> blocks (documents cannot close one early:
# they are defused) and the corrective message.
_INFORMATION_BLOCK = re.compile(rf"{re.escape(INFORMATION_OPEN)}.*?{re.escape(INFORMATION_CLOSE)}", re.DOTALL)
# Anything a lenient reader could take for a protocol tag, opening or closing, in any case, with spaces,
# attributes or even without the closing ">" ("<answer\n>"; we never let one start). No two adjacent
# quantifiers may match the same characters ("\s*/?\s*" would be quadratic on "<" followed by a long run of
# spaces); tests/test_documents.py times adversarial inputs.
_TAG_LOOKALIKE = re.compile(rf"<(\s*(?:/\s*)?(?:{_ANY_TAG})\b[^<>]*)(>?)", re.IGNORECASE)


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


def extract_answer(text: str) -> str | None:
    """The stripped content of the last ``<answer>...</answer>`` block in ``text``, or None.

    Pass the generated response only, not the prompt: the policy prompt itself contains the
    example ``<answer> Beijing </answer>``. (The original code parsed prompt + response and
    therefore demanded at least two blocks.) Newlines inside the block are allowed. An empty
    block gives ``""``; an unclosed ``<answer>`` is not an answer.

    >>> extract_answer("<think> sure </think><answer> um <answer> Paris </answer>")
    'Paris'
    """
    blocks = _ANSWER_BLOCK.findall(text)
    if not blocks:
        return None
    return blocks[-1].strip()


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


def policy_text(response: str) -> str:
    """``response`` (a whole decoded response) without what the environment inserted: the ``<information>``
    blocks and the corrective message after an invalid action (which itself holds ``<answer> and </answer>``
    and would otherwise read as the answer "and")."""
    text = _INFORMATION_BLOCK.sub("", response)
    return text.replace(INVALID_ACTION_MESSAGE.strip(), "")


def defuse_tags(text: str) -> str:
    """``text`` with every protocol tag look-alike given parentheses instead of angle brackets, so that text
    the environment shows (a document) can never open or close a block, inject an action or end the turn:
    ``"</information>"`` becomes ``"(/information)"``, ``"<SEARCH x>"`` ``"(SEARCH x)"``, ``"end <answer"``
    ``"end (answer"``. Any case, spacing or attributes, opening or closing."""
    return _TAG_LOOKALIKE.sub(lambda m: "(" + m.group(1) + (")" if m.group(2) else ""), text)


def wrap_information(documents_text: str) -> str:
    """``\\n\\n<information>{documents_text}</information>\\n\\n`` with ``documents_text`` stripped, as both
    originals' ``execute_predictions`` do. The text must already be defused (rendered documents are)."""
    return f"\n\n{INFORMATION_OPEN}{documents_text.strip()}{INFORMATION_CLOSE}\n\n"
