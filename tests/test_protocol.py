"""The text protocol (zerosearch.protocol): actions, the answer, the exact format, the environment's text, tags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zerosearch.protocol import (
    INVALID_ACTION_MESSAGE, TAGS, defuse_tags, extract_answer, parse_action, policy_text, well_formed,
    well_formed_turn, wrap_information,
)


def test_parse_search_and_answer():
    assert parse_action("<think> x </think> <search> capital of France </search>").kind == "search"
    assert parse_action("<think> x </think> <search> capital of France </search>").content == "capital of France"
    a = parse_action("<think> done </think>\n<answer> Paris </answer>")
    assert (a.kind, a.content) == ("answer", "Paris")


def test_first_well_formed_action_wins():
    # as Search-R1's postprocess: the first <search>…</search> or <answer>…</answer> match
    a = parse_action("<answer> A </answer> <search> q </search>")
    assert (a.kind, a.content) == ("answer", "A")


def test_invalid_actions():
    assert parse_action("I think the answer is Paris").kind == "invalid"
    assert parse_action("<search> unclosed").kind == "invalid"
    assert parse_action("<search> q </answer>").kind == "invalid"  # mismatched tags
    assert parse_action("<search>   </search>").kind == "invalid"  # empty query (departure, documented)


def test_invalid_message_is_byte_exact():
    assert INVALID_ACTION_MESSAGE == (
        "\nMy previous action is invalid. If I want to search, I should put the query between <search> and "
        "</search>. If I want to give the final answer, I should put the answer between <answer> and "
        "</answer>. Let me try again.\n"
    )


# --- well-formedness (the format reward's rule) --------------------------------------------------------


@pytest.mark.parametrize(("text", "action"), [
    ("<think> I will search. </think>\n<search> ada lovelace </search>", "search"),
    ("  <think>x</think><answer> London </answer>\n", "answer"),
    ("<search> q </search>", None),  # no reasoning first
    ("I think <think> x </think><search> q </search>", None),  # text outside the tags
    ("<think> x </think><search> q </search> and more", None),
    ("<think> x <search> y </think><answer> z </answer>", None),  # a tag inside the reasoning
    ("<think> x </think><answer> a <answer> b </answer>", None),  # a tag inside the action
    ("<think> x </think><search> q </answer>", None),  # mismatched tags
    ("<think> x </think>", None),  # no action
])
def test_well_formed_turn(text, action):
    assert well_formed_turn(text) == action


def test_well_formed_trajectory():
    search, answer = "<think> a </think>\n<search> q </search>", "<think> b </think>\n<answer> c </answer>"
    assert well_formed([search, search, answer]) and well_formed([answer])
    assert not well_formed([search])  # never answered
    assert not well_formed([answer, answer])  # an answer before the end
    assert not well_formed([search, "no tags at all", answer])  # one invalid turn spoils it
    assert not well_formed([])


# --- the answer (moved here from rewards.py: the protocol parses, the rewards score) ----------------------


def test_extract_no_block() -> None:
    assert extract_answer("<think>I am not sure</think><search>capital of France</search>") is None
    assert extract_answer("") is None


def test_extract_one_block_stripped() -> None:
    assert extract_answer("<think>easy</think>\n<answer>  Paris \n</answer>") == "Paris"


def test_extract_last_of_several_blocks() -> None:
    text = "<answer>Lyon</answer> no, <answer>Marseille</answer> final: <answer>Paris</answer>"
    assert extract_answer(text) == "Paris"


def test_extract_multiline_block() -> None:
    assert extract_answer("<answer>Paris\nFrance</answer>") == "Paris\nFrance"


def test_extract_empty_block() -> None:
    assert extract_answer("<answer>   </answer>") == ""


def test_extract_unclosed_block_is_no_answer() -> None:
    assert extract_answer("<answer>Paris") is None
    # an earlier closed block still counts
    assert extract_answer("<answer>Lyon</answer> then <answer>Paris") == "Lyon"


def test_extract_reopened_tag_takes_innermost_text() -> None:
    # a stray "<answer>" before the final one does not leak into the answer
    assert extract_answer("<answer> um <answer> Paris </answer>") == "Paris"


def test_extract_prompt_example_is_not_in_the_response() -> None:
    # the policy prompt contains "<answer> Beijing </answer>"; the caller passes only the
    # response, so a response without an answer block has no answer (no "Beijing" leak) ...
    response = "<think>I need to look this up.</think>\n<search>capital of France</search>"
    assert extract_answer(response) is None
    # ... and a response with one block gives that block (the original needed two matches
    # because it parsed prompt + response)
    assert extract_answer("<think>known</think><answer> Paris </answer>") == "Paris"


# --- the environment's text ------------------------------------------------------------------------------


def test_wrap_information_is_byte_exact():
    assert wrap_information("  Doc 1: a\nDoc 2: b \n") == "\n\n<information>Doc 1: a\nDoc 2: b</information>\n\n"


def test_policy_text_removes_what_the_environment_inserted():
    """What verl's reward reads when no agent loop recorded the answering turn (moved from verl/reward.py)."""
    response = ("<think> a </think><search> q </search>" + wrap_information("Doc 1: (answer) Lyon (/answer)")
                + "<think> b </think>" + INVALID_ACTION_MESSAGE + "<think> c </think><search> r </search>"
                + wrap_information("Doc 1: x") + "<think> d </think><answer> Paris </answer>")
    assert policy_text(response) == ("<think> a </think><search> q </search>\n\n\n\n<think> b </think>\n\n"
                                     "<think> c </think><search> r </search>\n\n\n\n<think> d </think>"
                                     "<answer> Paris </answer>")
    assert extract_answer(policy_text(response)) == "Paris"
    # the corrective message holds "<answer> and </answer>": without removing it, "and" would be the answer
    unanswered = "<think> hmm </think>" + INVALID_ACTION_MESSAGE + "<think> still </think>"
    assert extract_answer(unanswered) == "and" and extract_answer(policy_text(unanswered)) is None


# --- every pattern knows every tag ---------------------------------------------------------------------


def test_the_tags_are_the_four_of_search_r1():
    assert TAGS == ("think", "search", "answer", "information")


@pytest.mark.parametrize("tag", TAGS)
def test_each_tag_is_defused_in_documents_and_refused_inside_a_turn(tag):
    """One list of tags feeds both the sanitiser's pattern and the well-formed format's: a tag cannot be known
    to one and not the other."""
    text = f"x </{tag}> <{tag}> < {tag.upper()} a=1> <{tag}"
    assert defuse_tags(text) == f"x (/{tag}) ({tag}) ( {tag.upper()} a=1) ({tag}"
    assert well_formed_turn(f"<think> a <{tag}> b </think><answer> c </answer>") is None
    assert well_formed_turn(f"<think> a </think><answer> c </{tag}> </answer>") is None


def test_defuse_tags_leaves_other_angle_brackets_alone():
    assert defuse_tags("a <b> c < 5 > 3 <answers> <thinking> <|im_end|>") == \
        "a <b> c < 5 > 3 <answers> <thinking> <|im_end|>"


def test_protocol_and_rewards_import_neither_torch_nor_the_engines():
    code = ("import sys, zerosearch.protocol, zerosearch.rewards; "
            "loaded = {m for m in sys.modules if m == 'torch' or m.startswith('zerosearch.search')}; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
