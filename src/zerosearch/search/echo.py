"""A simulation LLM that repeats its prompt: found before its reply reaches the policy.

ZeroSearch tells the simulation LLM the question and the gold answer ("The user is trying to answer the
question: "{question}" whose answer is {answer}.", both the finetuned and the useful prompt-mode templates),
and the prompt-mode templates carry a few-shot example. A simulator that parrots its prompt (a verbatim
echo is a common failure of a fine-tuned model at a high temperature; an instruct model may restate the
instructions or copy the example) would have its reply parsed into documents and served inside
``<information>``: "... whose answer is Sundance Kids" hands the policy the gold answer, and the reward
then teaches it to read answers off the prompt's leak (Alibaba-NLP/ZeroSearch#22 asks how the original
keeps the answer-bearing prompt from the policy; it does not: it pastes the raw reply in).

:class:`PromptEcho` judges a reply against the template that produced it, by word n-grams (lower-cased
``\\w+`` words, so spacing, punctuation and line breaks do not hide a copy). A reply is an echo when:

1. **it copies the prompt's fixed text**: it holds a run of :data:`INSTRUCTION_RUN` words of the
   instructions (the template's text outside its placeholders and its example), or of
   :data:`EXAMPLE_RUN` words of the few-shot example (its ``Doc i:`` and ``Query:`` lines; a longer run,
   because an honest document on the example's topic shares short phrases with it);
2. **a document restates it**: at least half of a parsed document's word 4-grams are 4-grams of the
   template's fixed text (a partial or paraphrased restatement, "the user is trying to answer the
   question...");
3. **it states the answer as the answer**: a gold answer's words right after the template's words before
   ``{answer}`` ("answer is"), or with the word "answer(s)" among the :data:`ANSWER_WINDOW` words before it
   ("the answer to this question is Sundance Kids"). A document that merely contains the answer, as a
   useful one should ("The Sundance Kids formed in 1998..."), is not an echo.

The fixed text excludes what the placeholders put in (the query and the question), so a document that
repeats the query's words, as search results do, is never judged by them. Rules 1 and 3 read the whole
reply (an echo that the parser would have dropped as chatter still marks the simulator as parroting); rule
2 reads each parsed document. Where this departs from the original: it has no such check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from zerosearch.prompts import placeholders
from zerosearch.rewards import fold_unicode

__all__ = ["ANSWER_WINDOW", "EXAMPLE_RUN", "INSTRUCTION_RUN", "PromptEcho", "words"]

INSTRUCTION_RUN = 6  # words in a row copied from the instructions: "you are the google search engine"
EXAMPLE_RUN = 8  # words in a row copied from the few-shot example
RESTATED_SHARE = 0.5  # share of a document's word 4-grams found in the template's fixed text
ANSWER_WINDOW = 6  # words before a gold answer searched for "answer": "the answer to this question is the"

_WORD = re.compile(r"\w+")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# the few-shot example's lines: its documents and the example query / output headers (no placeholder)
_EXAMPLE_LINE = re.compile(r"^\s*(?:doc(?:ument)?\s*\d+\s*[:.)]|query\s*:|(?:useful|noisy)\s+output\s*:)",
                           re.IGNORECASE)
_ANSWER_WORDS = frozenset({"answer", "answers"})


def words(text: str) -> list[str]:
    """Lower-cased ``\\w+`` words of ``text`` (typographic quotes and dashes folded first)."""
    return _WORD.findall(fold_unicode(text).lower())


def _ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _contains(tokens: Sequence[str], needle: Sequence[str]) -> Iterable[int]:
    """Start indices of ``needle`` in ``tokens``."""
    n = len(needle)
    return (i for i in range(len(tokens) - n + 1) if n and tokens[i : i + n] == list(needle))


@dataclass(frozen=True)
class PromptEcho:
    """What a simulator reply must not restate, for one template with its ``{kind}`` filled in.

    Build with :meth:`from_template`; :meth:`find` judges a reply.
    """

    instruction_runs: frozenset[tuple[str, ...]]  # INSTRUCTION_RUN-grams of the instructions
    example_runs: frozenset[tuple[str, ...]]  # EXAMPLE_RUN-grams of the few-shot example
    fixed_4grams: frozenset[tuple[str, ...]]  # 4-grams of all the fixed text
    answer_lead: tuple[str, ...]  # the template's last words before {answer} ("answer", "is"); () if none

    @classmethod
    def from_template(cls, template: str, kind: str = "useful") -> PromptEcho:
        """The fixed text of ``template`` (``{kind}`` / ``{Kind}`` rendered as ``kind``; every other
        placeholder cuts the text, so no n-gram spans what a request puts in)."""
        rendered = template.replace("{kind}", kind).replace("{Kind}", kind.capitalize())
        runs: list[tuple[bool, list[str]]] = []  # (from the example?, words) stretches of fixed text
        answer_lead: tuple[str, ...] = ()
        for line in rendered.splitlines():
            if "{answer}" in line:  # the text after the line's last placeholder before {answer}
                answer_lead = tuple(words(_PLACEHOLDER.split(line.split("{answer}", 1)[0])[-1])[-2:])
            example = bool(_EXAMPLE_LINE.match(line)) and not placeholders(line)
            fixed = _PLACEHOLDER.split(line)[::2]  # the text between placeholders (odd items are their names)
            if not runs or runs[-1][0] != example:  # consecutive lines of one kind run together, as an echo would
                runs.append((example, []))
            runs[-1][1].extend(words(fixed[0]))
            runs.extend((example, words(piece)) for piece in fixed[1:])  # a placeholder cuts the fixed text
        instructions = [run for is_example, run in runs if not is_example]
        examples = [run for is_example, run in runs if is_example]

        def grams(stretches: list[list[str]], n: int) -> frozenset[tuple[str, ...]]:
            return frozenset(g for stretch in stretches for g in _ngrams(stretch, n))

        return cls(grams(instructions, INSTRUCTION_RUN), grams(examples, EXAMPLE_RUN),
                   grams(instructions + examples, 4), answer_lead)

    def find(self, reply: str, documents: Sequence[str], golden_answers: Sequence[str]) -> str | None:
        """Why ``reply`` (whose parsed ``documents`` would be served) echoes the prompt, or None.

        ``golden_answers``: the request's gold answers (the first is the one the prompt showed).
        """
        tokens = words(reply)
        for run_length, runs, what in ((INSTRUCTION_RUN, self.instruction_runs, "the instructions"),
                                       (EXAMPLE_RUN, self.example_runs, "the few-shot example")):
            copied = next((g for g in _ngrams(tokens, run_length) if g in runs), None)
            if copied is not None:
                return f"it copies {what} ({' '.join(copied)!r})"
        for number, document in enumerate(documents, start=1):
            grams = _ngrams(words(document), 4)
            shared = sum(g in self.fixed_4grams for g in grams)
            if grams and shared >= RESTATED_SHARE * len(grams):
                return f"document {number} restates the prompt ({shared} of its {len(grams)} word 4-grams)"
        for answer in golden_answers:
            target = words(answer)
            for start in _contains(tokens, target):
                before = tokens[max(0, start - ANSWER_WINDOW) : start]
                led = bool(self.answer_lead) and tuple(before[-len(self.answer_lead):]) == self.answer_lead
                if led or _ANSWER_WORDS & set(before):
                    return f"it states the gold answer as the answer ({' '.join(before + target)!r})"
        return None
