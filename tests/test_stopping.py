"""Stop strings: generation ends at the first one, the text is cut before it, and nothing else changes."""

from __future__ import annotations

import pytest

from zerosearch.llm.stopping import StopOnStrings, cut_at_stop
from zerosearch.llm.transformers_backend import TransformersChatModel
from zerosearch.models.tiny import tiny_model_dir


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("Doc 1: a\nDoc 2: b\nDoc 4: c", ["Doc 4"], "Doc 1: a\nDoc 2: b\n"),
    ("Doc 1: a", ["Doc 4"], "Doc 1: a"),  # no stop string: unchanged
    ("xx END yy STOP", ["STOP", "END"], "xx "),  # the earliest of several
    ("STOP at once", ["STOP"], ""),
])
def test_cut_at_stop(text, stops, expected):
    assert cut_at_stop(text, stops) == expected


def test_stop_strings_must_be_non_empty():
    with pytest.raises(ValueError, match="non-empty"):
        StopOnStrings(None, 0, [])
    with pytest.raises(ValueError, match="non-empty"):
        StopOnStrings(None, 0, ["x", ""])


def test_in_process_chat_model_stops_at_a_stop_string():
    """Seeded sampling: the reply with a stop string is the reply without it, cut before the stop's first
    occurrence (generation really stopped there: the same draws up to that point, none after)."""
    chat = TransformersChatModel(str(tiny_model_dir()))
    conversation = [{"role": "user", "content": "what colour is grass"}]
    (full,) = chat.complete([conversation], max_tokens=40, temperature=1.0, seed=1)
    text = full.text
    # some plain text the model wrote after a few tokens, first occurring there
    at = next(i for i in range(8, len(text) - 3) if text[i:i + 3].isalnum() and text.index(text[i:i + 3]) == i)
    stop = text[at:at + 3]
    (stopped,) = chat.complete([conversation], max_tokens=40, temperature=1.0, seed=1, stop=[stop])
    assert stopped.text == text[:at]
    (other,) = chat.complete([conversation], max_tokens=40, temperature=1.0, seed=1, stop=["\u2603never\u2603"])
    assert other.text == text
