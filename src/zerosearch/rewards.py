"""Answer-quality scores (F1, EM, cover EM) of the answer :func:`zerosearch.protocol.extract_answer` reads.

Pure functions, no torch. ``extract_answer`` is the protocol's (it owns every tag pattern); it is imported
here too, since whoever scores an answer extracts it first.

The normalisation is the SQuAD / HotpotQA one used by Search-R1 and ZeroSearch
(``verl/utils/reward_score/qa_em.py``): lowercase, drop ASCII punctuation (``string.punctuation``),
drop the articles a/an/the as whole words, collapse whitespace. Non-ASCII letters are kept
("Beyoncé" -> "beyoncé").

Departure: before that, text that differs only in Unicode representation or typography is folded to
one form, so the answer a policy copies from a web document compares equal to the gold written
otherwise (the reference scores "Beyoncé" composed against "Beyoncé" decomposed as 0):

* Unicode compatibility normalisation (NFKC): composed and decomposed accents, full-width forms
  ("ＵＳＡ"), ligatures ("ﬁ"), no-break and other spaces, "…" -> "...", superscript digits;
* typographic quotes and apostrophes (‘ ’ ‚ ‛ ′ ʼ, “ ” „ ‟ ″ « ») become ``'`` / ``"``, and hyphens,
  dashes and the minus sign (‐ ‑ ‒ – — ― −) become ``-``, which the SQuAD step then drops like the
  ASCII ones;
* invisible characters are removed: soft hyphen, zero-width space / joiners, word joiner, BOM;
* after lowercasing, text is recomposed (NFC), since lowercasing can decompose ("İ").

Accents themselves are kept ("Beyonce" still differs from "Beyoncé"): they can change the meaning.

Names say what is measured:

* ``em`` -- exact match: the normalised prediction equals a normalised gold answer. This is the
  EM the paper reports.
* ``cover_em`` -- the normalised gold answer is contained in the normalised prediction. This is
  what the original code computed under the name EM (``em_check`` / ``subem_check``); it rewards
  long answers that happen to contain the gold string.
* ``f1`` -- token-level F1, the training reward of ZeroSearch.

Every score is a maximum over the gold aliases. An answer or a gold answer that normalises to the
empty string never matches anything (score 0.0); in particular an empty gold string is never
"contained" in a prediction.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable

from zerosearch.protocol import extract_answer

__all__ = [
    "REWARD_KINDS", "Golds", "answer_metrics", "cover_exact_match", "exact_match", "extract_answer", "f1_score",
    "fold_unicode", "format_shaped_reward", "normalize_answer", "score_answer",
]

REWARD_KINDS: tuple[str, ...] = ("f1", "em", "cover_em")

_PUNCTUATION = frozenset(string.punctuation)
# typography folded to the ASCII character the SQuAD step then treats (None: removed); see the module doc
_TYPOGRAPHY = str.maketrans(
    {c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u02bc"}
    | {c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"}
    | {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"}
    | {c: None for c in "\u00ad\u200b\u200c\u200d\u2060\ufeff"}
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# HotpotQA's official f1_score (and FlashRAG's) score these answers only by equality.
_CLOSED_ANSWERS = frozenset({"yes", "no", "noanswer"})

Golds = Iterable[str] | str


def fold_unicode(s: str) -> str:
    """``s`` in one Unicode form: NFKC, typographic quotes and dashes as ASCII, invisible characters
    removed (see the module docstring for the exact list). Case and accents are left alone.

    >>> fold_unicode("Guns N\u2019 Roses \u2013 \uff35\uff33\uff21")
    "Guns N' Roses - USA"
    """
    return unicodedata.normalize("NFKC", s).translate(_TYPOGRAPHY)


def normalize_answer(s: str) -> str:
    """Normalise an answer the SQuAD / HotpotQA / Search-R1 way, after :func:`fold_unicode`.

    Order, as in the reference: lowercase, remove ``string.punctuation`` characters, replace the
    whole words a/an/the by a space, collapse runs of whitespace and strip.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    >>> normalize_answer("Beyonce\u0301") == normalize_answer("Beyonc\u00e9") == "beyonc\u00e9"
    True
    """
    text = unicodedata.normalize("NFC", fold_unicode(s).lower())
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _gold_list(golds: Golds) -> list[str]:
    """Golds as a list; a single string is one gold answer (not a sequence of characters)."""
    if isinstance(golds, str):
        return [golds]
    return list(golds)


def _best(pred: str | None, golds: Golds, score: Callable[[str, str], float]) -> float:
    """Max of ``score(normalised pred, normalised gold)`` over golds; 0.0 for empty sides."""
    if pred is None:
        return 0.0
    norm_pred = normalize_answer(pred)
    if not norm_pred:
        return 0.0
    norm_golds = [g for g in map(normalize_answer, _gold_list(golds)) if g]
    return max((score(norm_pred, g) for g in norm_golds), default=0.0)


def _token_f1(norm_pred: str, norm_gold: str) -> float:
    """Token F1 of two non-empty normalised strings, with HotpotQA's yes/no/noanswer rule."""
    if norm_pred != norm_gold and (norm_pred in _CLOSED_ANSWERS or norm_gold in _CLOSED_ANSWERS):
        return 0.0
    pred_tokens = norm_pred.split()
    gold_tokens = norm_gold.split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str | None, golds: Golds) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    ``golds`` is a sequence of aliases or a single string. ``None``, empty or blank predictions
    score 0.0, as does an empty list of golds.
    """
    return _best(pred, golds, lambda p, g: float(p == g))


def cover_exact_match(pred: str | None, golds: Golds) -> float:
    """1.0 if any normalised gold answer is a substring of the normalised prediction, else 0.0.

    This is the metric the original ZeroSearch / Search-R1 code called EM (``subem_check``). It is
    a plain substring test, as there: gold "art" is covered by prediction "martial arts". Gold
    answers that normalise to "" are skipped, so they never match.
    """
    return _best(pred, golds, lambda p, g: float(g in p))


def f1_score(pred: str | None, golds: Golds) -> float:
    """Token-level F1 between the normalised prediction and the best-matching gold answer.

    Tokens are the whitespace-separated words of the normalised strings, counted with
    multiplicity. Precision = shared / prediction tokens, recall = shared / gold tokens.

    We keep the special case of the official HotpotQA ``f1_score`` (also in FlashRAG): when the
    normalised prediction or gold is "yes", "no" or "noanswer" and the two differ, F1 is 0, so
    "yes it is" earns nothing against gold "yes" (plain token F1 would give 0.5). The original
    ZeroSearch reward (``f1_score_cal`` in ``qa_em.py``) lacks this rule; it matters only for
    yes/no questions (HotpotQA comparison questions) and only removes partial credit for padded
    yes/no answers, which is the long-answer behaviour the F1 reward is meant to discourage.
    """
    return _best(pred, golds, _token_f1)


_SCORERS: dict[str, Callable[[str | None, Golds], float]] = {
    "f1": f1_score,
    "em": exact_match,
    "cover_em": cover_exact_match,
}


def score_answer(pred: str | None, golds: Golds, kind: str) -> float:
    """Score ``pred`` against ``golds`` with the metric named ``kind`` (one of ``REWARD_KINDS``)."""
    try:
        scorer = _SCORERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown reward kind {kind!r}; valid kinds are {', '.join(REWARD_KINDS)}"
        ) from None
    return scorer(pred, golds)


def answer_metrics(pred: str | None, golds: Golds) -> dict[str, float]:
    """All answer scores at once: ``{"f1": ..., "em": ..., "cover_em": ...}``."""
    return {kind: score_answer(pred, golds, kind) for kind in REWARD_KINDS}


def format_shaped_reward(score: float, well_formed: bool, format_weight: float) -> float:
    """The outcome ``score`` with a format bonus: ``(1 - w) * score + w * well_formed``.

    Jin et al. 2025 ("An Empirical Study on Reinforcement Learning for Reasoning-Search Interleaved LLM
    Agents", Search-R1's follow-up) give a correct, well-formed trajectory 1, a correct but malformed one
    ``1 - lambda_f``, a wrong but well-formed one ``lambda_f`` and a wrong, malformed one 0; this is that
    rule, made linear in the score so that it also applies to F1. ``format_weight = 0`` is the paper's
    reward exactly (ZeroSearch uses no format reward). Raises ValueError outside ``[0, 1]``.

    >>> format_shaped_reward(1.0, True, 0.2), format_shaped_reward(0.0, True, 0.2)
    (1.0, 0.2)
    >>> round(format_shaped_reward(1.0, False, 0.2), 6), format_shaped_reward(0.0, False, 0.2)
    (0.8, 0.0)
    """
    if not 0.0 <= format_weight <= 1.0:
        raise ValueError(f"format_weight must lie in [0, 1], got {format_weight}")
    return (1.0 - format_weight) * score + format_weight * float(well_formed)
