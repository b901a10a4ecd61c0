"""Documents as text: sanitise, render for the policy, and parse a simulator's output.

Two renderings, one per line and joined by ``"\\n"`` (:func:`information_block` wraps the result as
``\\n\\n<information>{documents}</information>\\n\\n``, stripped inside, as both originals do). The
setting is ``doc_format``; a policy should be evaluated in the format it was trained on.

``zerosearch`` (the default; ZeroSearch's ``search_r1/llm_agent/generation.py``):
    ``Doc 1: {text}``: what its simulator writes, and what ``retrieve_from_wiki`` shows (the passage
    text only; a wiki-18 passage restates its title in its first words). A web result
    (``retrieve_from_google``) is ``Doc 1: {title}{snippet}``: the title and the snippet run together
    with no separator, exactly as the original concatenated them.
``search_r1`` (Search-R1's ``_passages2string``):
    ``Doc 1(Title: "{title}") {text}``: the first line of the passage's wiki-18 ``contents``, quotes
    kept, as Search-R1 shows it. An untitled document renders as ``Doc 1: {text}`` (Search-R1 would
    take its first line for a title; no wiki-18 passage is untitled).

Departures from the original code, on purpose:

* The original pasted the simulator's raw text (chatter included) into ``<information>``. Here the
  output is parsed into :class:`Document` objects and re-rendered, so the policy always sees the same
  layout whichever engine answered, and a simulator's chatter ("Here are five documents:") is dropped.
* Every document is sanitised: text that looks like a protocol tag (``</information>``, ``<answer>``,
  ...) or a chat special token (``<|im_end|>``) is defused, and line breaks inside a document become
  spaces, so a document can never close the information block, inject an action, end the turn, or
  look like two documents.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

from zerosearch.protocol import DEFAULT_DOC_FORMAT, DOC_FORMATS, defuse_tags, wrap_information
from zerosearch.search.base import Document

__all__ = ["DOC_FORMATS", "DEFAULT_DOC_FORMAT", "check_doc_format", "information_block", "parse_simulated_documents",
           "render_documents", "sanitize"]

_log = logging.getLogger(__name__)

# --- sanitising ------------------------------------------------------------------------------------

# Special-token look-alikes (protocol tags are defused by zerosearch.protocol.defuse_tags). No two adjacent
# quantifiers may match the same characters in these patterns ("\s*/?\s*" would be quadratic on "<" followed
# by a long run of spaces); the test suite times adversarial inputs.
# Chat-template special tokens in the ``<|name|>`` style (ChatML, Llama 3, ...): if such text were
# tokenised with special-token parsing on, it would become a real end-of-turn token.
_SPECIAL_OPEN = re.compile(r"<\s*\|")
_SPECIAL_CLOSE = re.compile(r"\|\s*>")
# Sentencepiece-style specials (``</s>``, ``<s>``, ``<unk>``, ``<pad>``, ``<eos>``, ``<bos>``).
_SP_SPECIAL = re.compile(r"<(\s*(?:/\s*)?(?:s|unk|pad|eos|bos)\s*)>", re.IGNORECASE)
# Any whitespace run, line breaks of every kind included (\r, \v, \f, \x1c-\x1e, \x85, \u2028,
# \u2029 are all matched by \s in Python's re for str patterns).
_WHITESPACE = re.compile(r"\s+")


def sanitize(text: str) -> str:
    """Make ``text`` safe to show inside an ``<information>`` block, on one line.

    * Protocol tags (``information``, ``search``, ``answer``, ``think``; any case, spacing or
      attributes, opening or closing) get parentheses instead of angle brackets:
      ``"</information>"`` becomes ``"(/information)"`` (:func:`zerosearch.protocol.defuse_tags`).
    * Special-token look-alikes are defused the same way: ``"<|im_end|>"`` becomes ``"(|im_end|)"``,
      ``"</s>"`` becomes ``"(/s)"``.
    * Every whitespace run (newlines included) becomes one space; the ends are stripped.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = defuse_tags(text)
    text = _SP_SPECIAL.sub(lambda m: "(" + m.group(1) + ")", text)
    text = _SPECIAL_OPEN.sub("(|", text)
    text = _SPECIAL_CLOSE.sub("|)", text)
    return _WHITESPACE.sub(" ", text).strip()


def check_doc_format(doc_format: str) -> str:
    """``doc_format`` if it is one of :data:`DOC_FORMATS`; ValueError naming the choices otherwise."""
    if doc_format not in DOC_FORMATS:
        raise ValueError(f"unknown doc_format {doc_format!r}; choose one of {', '.join(DOC_FORMATS)}")
    return doc_format


def _render_document(index: int, doc: Document, doc_format: str) -> str:
    """One document's line, numbered ``index`` (1-based), in a checked ``doc_format`` (module docstring)."""
    text = sanitize(doc.text)
    title = sanitize(doc.title)
    if doc_format == "zerosearch":
        return f"Doc {index}: {title}{text}" if doc.kind == "web" else f"Doc {index}: {text}"
    return f'Doc {index}(Title: "{title}") {text}' if title else f"Doc {index}: {text}"  # search_r1


def render_documents(docs: Sequence[Document], doc_format: str = DEFAULT_DOC_FORMAT) -> str:
    """Render documents one per line in ``doc_format`` (``zerosearch`` | ``search_r1``).

    Text and title are sanitised first. An empty sequence renders as ``""``. ValueError for an unknown
    format (also for no documents, so a bad setting fails at once).
    """
    check_doc_format(doc_format)
    return "\n".join(_render_document(i, doc, doc_format) for i, doc in enumerate(docs, start=1))


def information_block(documents: Sequence[Document], doc_format: str = DEFAULT_DOC_FORMAT) -> str:
    """``\\n\\n<information>Doc 1: …\\nDoc 2: …</information>\\n\\n``: the documents sanitised and
    rendered in ``doc_format`` (:func:`render_documents`), stripped, as both originals' ``execute_predictions``
    do (:func:`zerosearch.protocol.wrap_information`)."""
    return wrap_information(render_documents(documents, doc_format))


# --- parsing a simulator's output ----------------------------------------------------------------

# "Doc 1:", "Document 2.", "**Doc 3:**", "[Doc 4]", "Doc 5 -", "Doc6:", "### Document 1", and our own
# wiki rendering "Doc 1(Title: t) text". The number is required, so prose that merely starts with
# "Document" is not mistaken for a marker.
_DOC_MARKER = re.compile(
    r"""^[\s>#*_\-\[(]*                 # markdown decoration: "## ", "**", "- ", "[", "> "
        (?:doc(?:ument)?|passage)\s*(?:\#\s*)?(\d{1,3})
        [\s*_\])]*                      # closing decoration: "**", "]", ")"
        (?:[:.)\-\u2013\u2014]\s*|(?=\(\s*title\s*:)|\s+|$)
    """,
    re.IGNORECASE | re.VERBOSE,
)
# "1. text", "2) text", "3: text" when no line uses the Doc/Document style. One or two digits only,
# so that a line starting with a year ("1931. The bridge ...") is not taken for a marker.
_NUM_MARKER = re.compile(r"^[\s>#*_\-\[(]*(\d{1,2})[\s*_\]]*[.):]\s+")
# "(Title: Foo) text" right after a marker, as in the wiki rendering. Where the title ends is found by
# _split_title, because wiki titles hold parentheses of their own: "(Title: Arrival (film)) text".
_TITLE_OPEN = re.compile(r"^\(\s*title\s*:\s*", re.IGNORECASE)
# Lines that end a document and are never content: the model starting a new round of the prompt.
_STOP_LINE = re.compile(r"^\s*(?:query|(?:useful|noisy)\s+output)\s*:", re.IGNORECASE)
# Assistant chatter around the documents: lead-ins ("Here are five documents:") and sign-offs ("I hope
# this helps!"). Only sign-offs are looked for inside a document's continuation lines, so that a
# document line starting with "Sure enough, ..." is kept.
_TAIL_CHATTER = re.compile(
    r"""^\W*(?:i\s+hope|hope\s+this|let\s+me\s+know|feel\s+free|note\s*:|
        (?:these|the\s+above|above)\s+(?:are|documents|results)|
        i\s+(?:have|'ve)\s+(?:generated|written|created|provided))""",
    re.IGNORECASE | re.VERBOSE,
)
_LEAD_CHATTER = re.compile(
    r"^\W*(?:here\s+(?:are|is)|sure\b|certainly\b|of\s+course\b|okay\b|ok\b)", re.IGNORECASE
)
_BULLET = re.compile(r"^[-*\u2022]\s+")


def _is_chatter(paragraph: str) -> bool:
    """A paragraph that talks about the documents rather than being one."""
    stripped = paragraph.strip()
    if _LEAD_CHATTER.match(stripped) or _TAIL_CHATTER.match(stripped):
        return True
    # A short lead-in that announces a list: "Five useful documents for the query:".
    return stripped.endswith(":") and len(stripped.split()) <= 15


def _clean(text: str) -> str:
    """Collapse whitespace, drop a leading bullet and markdown bold/italic markers at the ends."""
    text = _WHITESPACE.sub(" ", text).strip()
    text = _BULLET.sub("", text)
    return text.strip("*_").strip()


def _split_title(text: str) -> tuple[str, str]:
    """``(title, rest)`` of a line that starts ``(Title: ...)``, else ``("", text)``.

    The title ends at the parenthesis that closes ``(Title:``, so "(Title: Arrival (film)) A 2016 film"
    gives ("Arrival (film)", "A 2016 film"). With no closing one, it ends at the first ``)``.
    """
    opening = _TITLE_OPEN.match(text)
    if not opening:
        return "", text
    depth = 1
    for i in range(opening.end(), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return _clean(text[opening.end() : i]), _clean(text[i + 1 :])
    close = text.find(")", opening.end())
    if close < 0:
        return "", text
    return _clean(text[opening.end() : close]), _clean(text[close + 1 :])


def _make_doc(text: str) -> Document | None:
    text = _clean(text)
    title, text = _split_title(text)
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]  # the search_r1 rendering quotes titles, as wiki-18's contents do
    if not text:
        return None
    return Document(text=text, title=title)


def _parse_marked(lines: list[str], marker: re.Pattern[str]) -> list[Document]:
    """Documents start at marker lines and run over the following non-blank lines.

    Anything before the first marker, or after a blank line that does not start a new document, is
    chatter and dropped; so are a sign-off line ("I hope this helps"), a stop line ("Query: ...",
    "Useful Output:") and whatever follows them up to the next marker. A marker alone on its line
    may have its text on the next non-blank line.
    """
    docs: list[Document] = []
    current: list[str] | None = None  # lines of the document being read; None between documents

    def flush() -> None:
        nonlocal current
        if current is not None:
            doc = _make_doc(" ".join(current))
            if doc is not None:
                docs.append(doc)
        current = None

    for line in lines:
        match = marker.match(line)
        if match:
            flush()
            current = [line[match.end() :]]
        elif _STOP_LINE.match(line) or _TAIL_CHATTER.match(line):
            flush()
        elif not line.strip():
            if current is not None and any(part.strip() for part in current):
                flush()  # a blank line ends a document that has text ("Doc 1:\n\ntext" is kept)
        elif current is not None:
            current.append(line)
    flush()
    return docs


def _parse_unmarked(lines: list[str]) -> list[Document]:
    """No numbering at all: blank-line separated paragraphs, or lines if there is one paragraph."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if _STOP_LINE.match(line):
            if any(paragraphs):
                break  # the model started a new round of the prompt: nothing after it is a document
            continue  # an echo of the prompt's last lines before the documents
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    if len(paragraphs) == 1:
        units = paragraphs[0]  # one block of lines: the one-document-per-line layout
    else:
        units = [" ".join(p) for p in paragraphs]
    docs = []
    for unit in units:
        if _is_chatter(unit):
            continue
        doc = _make_doc(unit)
        if doc is not None:
            docs.append(doc)
    return docs


def _parse(text: str, topk: int) -> list[Document]:
    """The parser proper (see :func:`parse_simulated_documents`); tests call it unguarded."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if topk <= 0 or not text.strip():
        return []
    lines = text.splitlines()
    if any(_DOC_MARKER.match(line) for line in lines):
        docs = _parse_marked(lines, _DOC_MARKER)
    elif any(_NUM_MARKER.match(line) for line in lines):
        docs = _parse_marked(lines, _NUM_MARKER)
    else:
        docs = _parse_unmarked(lines)
    return docs[:topk]


def parse_simulated_documents(text: str, topk: int) -> list[Document]:
    """Parse a simulation LLM's output into at most ``topk`` documents. Never raises.

    Accepted layouts, in order of preference:

    1. ``Doc i:`` / ``Document i:`` markers (with or without markdown decoration, colon, period,
       dash or a ``(Title: ...)``) at the start of a line; a document runs over the following lines
       until a blank line, the next marker, a sign-off, or a ``Query:`` / ``Useful Output:`` line.
    2. Failing that, ``i.`` / ``i)`` / ``i:`` list numbers at the start of a line, the same way.
    3. Failing that, blank-line separated paragraphs, or the lines of a single paragraph.

    Chatter before the first document or after the last ("Here are five documents:", "I hope this
    helps!") is dropped, whitespace inside a document is collapsed, empty documents are skipped.
    The original code cut the text at ``Doc {topk+1}``; keeping only the first ``topk`` parsed
    documents is the same cut made on structure instead of on a substring (so a document that merely
    mentions "Doc 6" is not truncated). Returns ``[]`` for empty output or ``topk <= 0``.
    """
    try:
        return _parse(text, topk)
    except Exception:  # pragma: no cover - the fuzz test calls _parse unguarded
        # Deliberately defensive: a parser bug must not take a training run down. The caller
        # reports "no parseable documents", which is counted and never trained on.
        _log.exception("parse_simulated_documents failed; treating the output as no documents")
        return []
