"""Tests for zerosearch.rewards: normalisation, EM, cover EM, F1 and the format bonus."""

from __future__ import annotations

import pytest

from zerosearch.rewards import (
    REWARD_KINDS,
    answer_metrics,
    cover_exact_match,
    exact_match,
    extract_answer,
    f1_score,
    format_shaped_reward,
    normalize_answer,
    score_answer,
)

# --------------------------------------------------------------------------- normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # lowercase; "The" is an article -> removed; whitespace collapsed
        ("The Eiffel Tower", "eiffel tower"),
        # a / an / the only as whole words: "theater", "anna", "a" inside words stay
        ("A theater, an Anna", "theater anna"),
        # punctuation removed BEFORE articles: "the-end" -> "theend" (no article left)
        ("the-end", "theend"),
        # punctuation inside numbers disappears: "1,000.5" -> "10005"
        ("1,000.5", "10005"),
        # plain digits are kept
        ("In 1984", "in 1984"),
        # accented letters are kept; "!" removed
        ("Beyoncé!", "beyoncé"),
        # typographic quotes are folded to ASCII ones, then dropped (a departure from the reference,
        # which kept them; see the Unicode tests below)
        ("“Paris”", "paris"),
        # other non-ASCII punctuation is not in string.punctuation, so it stays, as in the reference
        ("¿Qué?", "¿qué"),
        # newlines and tabs are whitespace
        ("  New\n\tYork  ", "new york"),
        # only articles / punctuation -> empty
        ("The. A! an?", ""),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalize_is_idempotent() -> None:
    once = normalize_answer("The Lord of the Rings: The Return of the King")
    assert once == "lord of rings return of king"
    assert normalize_answer(once) == once


# --------------------------------------------------------------------------- exact_match


def test_exact_match_after_normalisation() -> None:
    # "the  Beatles." -> "beatles" == "Beatles" -> "beatles"
    assert exact_match("the  Beatles.", ["Beatles"]) == 1.0


def test_exact_match_is_not_containment() -> None:
    # "beatles band" != "beatles"
    assert exact_match("The Beatles band", ["Beatles"]) == 0.0


def test_exact_match_any_alias() -> None:
    assert exact_match("JFK", ["John F. Kennedy", "jfk"]) == 1.0


def test_exact_match_single_string_gold() -> None:
    # a string gold is one answer, not a list of characters ("P" would otherwise match)
    assert exact_match("Paris", "Paris") == 1.0
    assert exact_match("p", "Paris") == 0.0


def test_exact_match_numbers() -> None:
    # "1,000" -> "1000"
    assert exact_match("1,000", ["1000"]) == 1.0
    assert exact_match("1001", ["1000"]) == 0.0


def test_exact_match_unicode_kept() -> None:
    # accents are kept, so the accent-less spelling does NOT match
    assert exact_match("beyoncé", ["Beyoncé"]) == 1.0
    assert exact_match("Beyonce", ["Beyoncé"]) == 0.0


@pytest.mark.parametrize("pred", [None, "", "   ", "the", "?!"])
def test_missing_or_empty_prediction_scores_zero(pred: str | None) -> None:
    # "the" and "?!" normalise to "" too; even an empty gold must not match them
    golds = ["Paris", ""]
    assert exact_match(pred, golds) == 0.0
    assert cover_exact_match(pred, golds) == 0.0
    assert f1_score(pred, golds) == 0.0


def test_no_golds_scores_zero() -> None:
    assert answer_metrics("Paris", []) == {"f1": 0.0, "em": 0.0, "cover_em": 0.0}


def test_accepts_any_iterable_of_golds() -> None:
    # e.g. a tuple, or the array that comes out of a parquet column
    assert exact_match("Paris", ("London", "Paris")) == 1.0


# --------------------------------------------------------------------------- cover_exact_match


def test_cover_em_gold_inside_longer_answer() -> None:
    # "answer is paris france" contains "paris"
    assert cover_exact_match("The answer is Paris, France", ["Paris"]) == 1.0


def test_cover_em_is_plain_substring() -> None:
    # like the original subem_check: "art" is a substring of "martial arts"
    assert cover_exact_match("Martial arts", ["art"]) == 1.0


def test_cover_em_prediction_shorter_than_gold() -> None:
    # "paris" does not contain "paris france"
    assert cover_exact_match("Paris", ["Paris, France"]) == 0.0


def test_cover_em_empty_gold_never_matches() -> None:
    # "" (and "The", which normalises to "") is a substring of everything; it must be ignored
    assert cover_exact_match("anything", [""]) == 0.0
    assert cover_exact_match("anything", ["The"]) == 0.0
    assert cover_exact_match("anything", ["", "any"]) == 1.0


# --------------------------------------------------------------------------- f1_score


def test_f1_identical() -> None:
    assert f1_score("The Eiffel Tower", ["eiffel tower"]) == 1.0


def test_f1_partial_overlap() -> None:
    # pred "barack obama" (2 tokens), gold "barack hussein obama" (3 tokens); shared = 2
    # precision = 2/2 = 1, recall = 2/3, F1 = 2*1*(2/3) / (1 + 2/3) = (4/3) / (5/3) = 0.8
    assert f1_score("Barack Obama", ["Barack Hussein Obama"]) == pytest.approx(0.8)


def test_f1_counts_token_multiplicity() -> None:
    # pred "new new york" (3), gold "new york" (2); Counter overlap = {new: 1, york: 1} = 2
    # precision = 2/3, recall = 2/2 = 1, F1 = 2*(2/3)*1 / (5/3) = (4/3) / (5/3) = 0.8
    assert f1_score("new new york", ["New York"]) == pytest.approx(0.8)


def test_f1_best_alias_wins() -> None:
    # vs "United States": pred tokens {united, states, of, america} (4), gold 2, shared 2
    #   P = 2/4, R = 2/2, F1 = 2*0.5*1/1.5 = 2/3
    # vs "United States of America": identical -> 1.0
    # vs "USA": 0
    golds = ["United States", "United States of America", "USA"]
    assert f1_score("the United States of America", golds) == 1.0
    # vs "United States" only: 2/3
    assert f1_score("the United States of America", golds[:1]) == pytest.approx(2 / 3)


def test_f1_no_overlap() -> None:
    assert f1_score("London", ["Paris"]) == 0.0


def test_f1_articles_and_punctuation_do_not_count() -> None:
    # "the cat, a hat." -> "cat hat"; gold "Cat" -> "cat"; P = 1/2, R = 1/1, F1 = 1/1.5 = 2/3
    assert f1_score("the cat, a hat.", ["Cat"]) == pytest.approx(2 / 3)


def test_f1_yes_no_special_case() -> None:
    # kept from the HotpotQA script: a yes/no/noanswer on either side must match exactly
    assert f1_score("Yes.", ["yes"]) == 1.0
    # gold "yes", pred "yes it is": plain token F1 would be P=1/3, R=1, F1=0.5; the rule gives 0
    assert f1_score("yes it is", ["yes"]) == 0.0
    # pred "no", gold "no way" -> the rule gives 0 (plain F1 would be 2/3)
    assert f1_score("no", ["no way"]) == 0.0
    # "no-answer" normalises to "noanswer", which is also a closed answer
    assert f1_score("no-answer", ["noanswer"]) == 1.0
    assert f1_score("noanswer given", ["noanswer"]) == 0.0
    # the rule is per gold alias: the second alias still matches
    assert f1_score("yes", ["no", "Yes"]) == 1.0


def test_f1_yes_no_case_does_not_touch_other_metrics() -> None:
    # cover EM: "yes it is" contains "yes"
    assert cover_exact_match("yes it is", ["yes"]) == 1.0
    assert exact_match("yes it is", ["yes"]) == 0.0


def test_f1_unicode_tokens() -> None:
    # "beyoncé knowles" vs "Beyoncé": P = 1/2, R = 1, F1 = 2/3
    assert f1_score("Beyoncé Knowles", ["Beyoncé"]) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- dispatch


def test_reward_kinds() -> None:
    assert REWARD_KINDS == ("f1", "em", "cover_em")


def test_score_answer_dispatch() -> None:
    # pred "paris france" vs gold "paris": F1 = 2*(1/2)*1/(3/2) = 2/3, EM 0, cover EM 1
    assert score_answer("Paris, France", ["Paris"], "f1") == pytest.approx(2 / 3)
    assert score_answer("Paris, France", ["Paris"], "em") == 0.0
    assert score_answer("Paris, France", ["Paris"], "cover_em") == 1.0


def test_score_answer_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValueError, match=r"'bleu'.*f1, em, cover_em"):
        score_answer("Paris", ["Paris"], "bleu")


def test_answer_metrics() -> None:
    assert answer_metrics("Paris, France", ["Paris"]) == pytest.approx(
        {"f1": 2 / 3, "em": 0.0, "cover_em": 1.0}
    )
    assert answer_metrics(None, ["Paris"]) == {"f1": 0.0, "em": 0.0, "cover_em": 0.0}


# --------------------------------------------------------------------------- extract, then score


def test_extract_answer_is_the_protocols() -> None:
    # the answer is parsed in one place (zerosearch.protocol, tests/test_protocol.py); rewards scores it
    from zerosearch import protocol

    assert extract_answer is protocol.extract_answer


def test_extract_then_score_end_to_end() -> None:
    response = (
        "<think>Need the capital.</think><search>capital of France</search>\n\n"
        "<information>Doc 1: Paris is the capital of France.</information>\n\n"
        "<think>Found it.</think><answer> paris </answer>"
    )
    assert answer_metrics(extract_answer(response), ["Paris"]) == {
        "f1": 1.0,
        "em": 1.0,
        "cover_em": 1.0,
    }


# --------------------------------------------------------------------------- format bonus


@pytest.mark.parametrize(("score", "formed", "weight", "expected"), [
    # Jin et al. 2025's four cases at lambda_f = 0.2: correct and well formed 1, correct but malformed 0.8,
    # wrong but well formed 0.2, wrong and malformed 0
    (1.0, True, 0.2, 1.0), (1.0, False, 0.2, 0.8), (0.0, True, 0.2, 0.2), (0.0, False, 0.2, 0.0),
    (0.5, True, 0.2, 0.6),  # F1 0.5: 0.8 * 0.5 + 0.2
    (0.5, False, 0.0, 0.5),  # weight 0: the paper's reward exactly
])
def test_format_shaped_reward(score, formed, weight, expected):
    assert format_shaped_reward(score, formed, weight) == pytest.approx(expected)


def test_format_weight_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        format_shaped_reward(1.0, True, 1.5)


# Issue 14.2: text that differs only in Unicode representation or typography scores as equal.
_SAME = [
    ("Beyonc\u00e9", "Beyonce\u0301"),  # composed (NFC) / decomposed (NFD)
    ("Guns N' Roses", "Guns N\u2019 Roses"),  # right single quotation mark as apostrophe
    ("Hawai\u02bci", "Hawai'i"),  # modifier letter apostrophe
    ('"Hey Jude"', "\u201cHey Jude\u201d"),  # curly double quotes
    ("1914-1918", "1914\u20131918"),  # en dash
    ("Jean-Paul Sartre", "Jean\u2010Paul Sartre"),  # Unicode hyphen
    ("Jean-Paul Sartre", "Jean\u2011Paul Sartre"),  # non-breaking hyphen
    ("-40 degrees", "\u221240 degrees"),  # minus sign
    ("New York City", "New\u00a0York\u202fCity"),  # no-break and narrow no-break spaces
    ("USA", "\uff35\uff33\uff21"),  # full-width letters
    ("file", "\ufb01le"),  # ligature
    ("Krak\u00f3w", "Krako\u0301w"),
    ("Nobel Prize", "Nobel\u00adPrize".replace("\u00ad", "\u00ad ")),  # soft hyphen before a space
    ("Mississippi", "Missis\u200bsippi"),  # zero-width space
    ("Wait...", "Wait\u2026"),  # ellipsis
    ("\u0130stanbul", "\u0130stanbul".upper()),  # lowercasing İ decomposes; recomposed after
]


@pytest.mark.parametrize("gold, pred", _SAME)
def test_unicode_equivalent_answers_score_1_in_every_metric(gold, pred):
    assert answer_metrics(pred, [gold]) == {"f1": 1.0, "em": 1.0, "cover_em": 1.0}
    assert answer_metrics(gold, [pred]) == {"f1": 1.0, "em": 1.0, "cover_em": 1.0}
    assert normalize_answer(gold) == normalize_answer(pred)


def test_unicode_folding_keeps_what_changes_meaning():
    # accents and letters are kept, as in the reference normalisation
    assert answer_metrics("Beyonce", ["Beyonc\u00e9"])["em"] == 0.0
    assert normalize_answer("Stra\u00dfe") == "stra\u00dfe"
    assert normalize_answer("Caf\u00e9 \u2014 The Movie") == "caf\u00e9 movie"


def test_containment_folds_unicode_too():
    from zerosearch.search.base import Document
    from zerosearch.search.snippets import contains_answer

    docs = [Document("Her real name is Beyonce\u0301 Knowles\u2010Carter.")]
    assert contains_answer(docs, ["Beyonc\u00e9 Knowles-Carter"]) is True
