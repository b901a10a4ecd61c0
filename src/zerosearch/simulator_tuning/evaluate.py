"""Stage 4 of simulator tuning: evaluate.

:func:`evaluate` compares simulators (and the real engine) on held-apart questions, from QA files or build's
``*_calls.jsonl``: answer containment in useful / noisy mode, output format, and a fixed reader's EM/F1 from
the documents. It writes ``results.json``, ``results.md`` (the table) and ``samples.jsonl``.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosearch.data import load_qa_files
from zerosearch.rewards import answer_metrics, extract_answer, normalize_answer
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.search.documents import DEFAULT_DOC_FORMAT, check_doc_format, render_documents
from zerosearch.simulator_tuning.records import (
    NOISY,
    TUNING_INFO,
    USEFUL,
    PathLike,
    _doc_dict,
    _progress,
    _read_jsonl,
    _write_jsonl,
    contains_answer,
)

__all__ = [
    "EvalItem",
    "READER_SYSTEM",
    "READER_USER",
    "Reader",
    "SimulatorSpec",
    "containment",
    "eval_items",
    "evaluate",
    "format_stats",
    "parse_simulator_spec",
    "results_table",
]


READER_SYSTEM = (  # FlashRAG's naive-generation RAG prompt
    "Answer the question based on the given document. Only give me the answer and do not output any other "
    "words.\nThe following are given documents.\n\n{documents}"
)
READER_USER = "Question: {question}"


@dataclass(frozen=True)
class SimulatorSpec:
    """A simulator to evaluate: a ``simulated:...`` engine spec, its prompt mode and a label for tables."""

    spec: str
    mode: str
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.spec} ({self.mode})"


def parse_simulator_spec(text: str) -> SimulatorSpec:
    """``[LABEL=]MODE:simulated:TARGET``, e.g. ``tuned=finetuned:simulated:runs/sim`` or
    ``prompt:simulated:http://127.0.0.1:8001/v1``."""
    from zerosearch.search.simulated import MODES

    label = ""
    head, sep, rest = text.partition("=")
    if sep and ":" not in head and "/" not in head:
        label, text = head, rest
    mode, _, spec = text.partition(":")
    if mode not in MODES or not spec.startswith("simulated:"):
        raise ValueError(
            f"bad simulator {text!r}: expected [LABEL=]MODE:simulated:MODEL_OR_URL with MODE one of "
            f"{sorted(MODES)}, e.g. tuned=finetuned:simulated:runs/simulator"
        )
    return SimulatorSpec(spec=spec, mode=mode, label=label)


@dataclass(frozen=True)
class EvalItem:
    """One evaluation search: the query, and the question and answers the simulator is told."""

    question: str
    golden_answers: tuple[str, ...]
    query: str


def eval_items(qa_files: Sequence[PathLike] | PathLike | None = None, calls_file: PathLike | None = None,
               limit: int | None = None) -> list[EvalItem]:
    """Items from QA files (query = the question) or from ``build``'s ``*_calls.jsonl`` (their queries);
    the first ``limit`` of them (>= 1; None: all)."""
    if (qa_files is None) == (calls_file is None):
        raise ValueError("give QA files (the question is the query) or a calls file (build's val_calls.jsonl)")
    if limit is not None and limit < 1:  # a slice would read -1 as "all but the last" and 0 as "none"
        raise ValueError(f"limit must be >= 1 or None (all items), got {limit}")
    if calls_file is not None:
        items = _call_items(Path(calls_file))
    else:
        items = [EvalItem(r.question, r.golden_answers, r.question) for r in load_qa_files(qa_files)]  # type: ignore[arg-type]
    return items[:limit]


def _call_items(path: Path) -> list[EvalItem]:
    if not path.is_file():
        raise FileNotFoundError(f"calls file not found: {path} (build writes val_calls.jsonl into its --out-dir)")
    items = []
    for number, row in enumerate(_read_jsonl(path), start=1):
        missing = [k for k in ("question", "golden_answers", "query") if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}, row {number}: no {', '.join(missing)}; --calls takes build's "
                             "val_calls.jsonl (or train_calls.jsonl)")
        items.append(EvalItem(row["question"], tuple(row["golden_answers"]), row["query"]))
    return items


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def valid_set(result: SearchResult, topk: int, word_range: tuple[int, int]) -> bool:
    """A format-valid document set: parsed, exactly ``topk`` documents, each within ``word_range`` words."""
    low, high = word_range
    return (result.ok and len(result.documents) == topk
            and all(low <= len(d.text.split()) <= high for d in result.documents))


def format_stats(results: Sequence[SearchResult], topk: int, word_range: tuple[int, int]) -> dict[str, Any]:
    """Format of document sets: parsed at all, exactly ``topk`` documents, words per document, repeats.

    ``valid`` is the share of sets with exactly ``topk`` documents, each within ``word_range`` words.
    ``echoes`` is the share of replies that restated the simulator's prompt (errors: see
    :mod:`zerosearch.search.echo`).
    ``no_repeats`` is the share of parsed sets whose documents' texts all differ (after answer
    normalisation): a real engine never returns one passage twice, while a small simulator decoding
    greedily often writes its first document again.
    """
    low, high = word_range
    counts = [[len(d.text.split()) for d in r.documents] for r in results]
    all_counts = [n for c in counts for n in c]
    texts = [[normalize_answer(d.text) for d in r.documents] for r in results if r.ok and r.documents]
    return {
        "parsed": _share([r.ok and bool(r.documents) for r in results]),
        "echoes": _share([r.echo for r in results]),  # replies that restated the prompt (not parsed)
        "exact_topk": _share([len(c) == topk for c in counts]),
        "words_per_doc": sum(all_counts) / len(all_counts) if all_counts else None,
        "docs_in_range": _share([low <= n <= high for n in all_counts]),
        "valid": _share([valid_set(r, topk, word_range) for r in results]),
        "no_repeats": _share([len(set(t)) == len(t) for t in texts]),
    }


def containment(items: Sequence[EvalItem], results: Sequence[SearchResult], topk: int,
                word_range: tuple[int, int]) -> dict[str, Any]:
    """Share of document sets containing a gold answer, over the items containment can judge.

    A failed or empty result counts as not containing. Over judged items (yes/no questions are left out):

    * ``valid_contains_share`` (the headline): the set is format-valid (:func:`valid_set`) *and* holds a
      gold answer. A simulator that writes one sentence restating the question and the answer instead of
      ``topk`` documents does not count: the raw figure below rewarded exactly that.
    * ``contains_share``: the raw figure, any parsed set holding a gold answer (kept for comparison).
    * ``contains_among_valid``: among format-valid sets only, the share holding a gold answer.
    * ``valid_clean_share`` / ``parsed_clean_share``: the noisy-mode figures: a format-valid (or merely
      parsed) set that holds no gold answer. A failure is not a clean noisy set.
    """
    judged = [(contains_answer(r.documents, item.golden_answers), r) for item, r in zip(items, results)]
    judged = [(bool(c), r, valid_set(r, topk, word_range)) for c, r in judged if c is not None]
    return {
        "judged": len(judged),
        "valid_contains_share": _share([c and v for c, r, v in judged]),
        "contains_share": _share([c and r.ok for c, r, _ in judged]),
        "contains_among_valid": _share([c for c, _, v in judged if v]),
        "valid_clean_share": _share([not c and v for c, r, v in judged]),
        "parsed_clean_share": _share([not c and r.ok and bool(r.documents) for c, r, _ in judged]),
    }


class Reader:
    """A fixed reader: answers a question from documents with a RAG prompt, greedy (the downstream figure)."""

    def __init__(self, chat_model: Any, max_tokens: int = 24, doc_format: str = DEFAULT_DOC_FORMAT) -> None:
        self.chat_model = chat_model
        self.max_tokens = max_tokens
        self.doc_format = check_doc_format(doc_format)  # the documents as the policy would see them

    def conversation(self, question: str, documents: Sequence[Document]) -> list[dict[str, str]]:
        documents_text = render_documents(documents, self.doc_format)
        return [{"role": "system", "content": READER_SYSTEM.format(documents=documents_text)},
                {"role": "user", "content": READER_USER.format(question=question)}]

    @staticmethod
    def prediction(text: str) -> str:
        """The answer in a reply: an ``<answer>`` block if any, else its first non-empty line."""
        tagged = extract_answer(text)
        if tagged is not None:
            return tagged
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        answer = lines[0] if lines else ""
        return answer[len("answer:"):].strip() if answer.lower().startswith("answer:") else answer

    def scores(self, items: Sequence[EvalItem], results: Sequence[SearchResult]) -> tuple[dict[str, float], list[str]]:
        """Mean EM / F1 / cover EM of the reader over all items, and its predictions."""
        conversations = [self.conversation(i.question, r.documents) for i, r in zip(items, results)]
        replies = self.chat_model.complete(conversations, max_tokens=self.max_tokens, temperature=0.0)
        predictions = [self.prediction(c.text) if c.ok else "" for c in replies]
        metrics = [answer_metrics(p, i.golden_answers) for p, i in zip(predictions, items)]
        means = {k: sum(m[k] for m in metrics) / len(metrics) for k in ("em", "f1", "cover_em")} if metrics else {}
        return means, predictions


def _search_all(engine: SearchEngine, items: Sequence[EvalItem], noisy: bool, topk: int, batch_size: int,
                desc: str, progress: bool) -> list[SearchResult]:
    requests = [SearchRequest(query=i.query, question=i.question, golden_answers=i.golden_answers, noisy=noisy)
                for i in items]
    results: list[SearchResult] = []
    with _progress(len(requests), desc, progress) as bar:
        for start in range(0, len(requests), batch_size):
            results.extend(engine.search(requests[start : start + batch_size], topk))
            bar.update(min(batch_size, len(requests) - start))
    return results


def _default_reader(simulators: Sequence[SimulatorSpec]) -> str:
    """The base model of the first in-process simulator (a tuned one records its base)."""
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.search.factory import engine_kind

    for sim in simulators:
        if engine_kind(sim.spec) != "simulated_model":  # served over HTTP: no model files here
            continue
        target = sim.spec.partition(":")[2].strip()

        info = Path(resolve_model_path(target)) / TUNING_INFO
        return json.loads(info.read_text(encoding="utf-8"))["base_model"] if info.is_file() else target
    raise ValueError("every simulator is served over HTTP, so there is no base model to take the reader from; "
                     "name one with --reader MODEL (reader_model)")


def _simulator_engine(sim: SimulatorSpec, *, max_tokens: int, temperature: float, batch_size: int,
                      seed: int, device: str) -> SearchEngine:
    from zerosearch.search.factory import build_engine, engine_kind

    options: dict[str, Any] = {"mode": sim.mode, "max_tokens": max_tokens, "temperature": temperature}
    if engine_kind(sim.spec) == "simulated_model":  # the in-process model's own options
        options.update(max_batch_size=batch_size, seed=seed, device=device)
    return build_engine(sim.spec, **options)


def _sample_rows(name: str, mode: str, items: Sequence[EvalItem], results: Sequence[SearchResult],
                 predictions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"engine": name, "mode": mode, "question": i.question, "golden_answers": list(i.golden_answers),
             "query": i.query, "error": r.error, "documents": [_doc_dict(d) for d in r.documents],
             "reader_prediction": p} for i, r, p in zip(items, results, predictions)]


def evaluate(
    simulators: Sequence[SimulatorSpec | str],
    real_engine: str | SearchEngine | None,
    out_dir: PathLike,
    *,
    qa_files: Sequence[PathLike] | PathLike | None = None,
    calls_file: PathLike | None = None,
    limit: int | None = 50,
    topk: int = 5,
    reader_model: str | None = None,
    max_tokens: int = 600,
    temperature: float = 0.0,
    batch_size: int = 8,
    word_range: tuple[int, int] = (15, 60),
    seed: int = 0,
    device: str = "cpu",
    doc_format: str = DEFAULT_DOC_FORMAT,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare simulators with each other and with a real engine on held-apart questions.

    For every item each simulator writes ``topk`` documents in useful and in noisy mode. Measured:
    useful-mode sets containing a gold answer, noisy-mode sets parsed and free of one (both over the
    items containment can judge), the format (:func:`format_stats`), and a fixed reader's EM/F1/cover EM
    answering from the useful-mode documents. The real engine is the reference
    row: its containment, format and reader scores from its own documents.

    Args:
        simulators: :class:`SimulatorSpec` or ``[LABEL=]MODE:simulated:MODEL_OR_URL`` strings.
        real_engine: the reference engine (spec or object), or None to leave that row out.
        qa_files / calls_file: the held-apart items (see :func:`eval_items`).
        reader_model: the reader (default: the first in-process simulator's base model).
        doc_format: how the reader is shown the documents (``zerosearch`` | ``search_r1``): as the policy
            being trained will see them.
        max_tokens, temperature: simulator generation (default greedy, for reproducible comparisons).

    Writes ``results.json``, ``results.md`` (the table) and ``samples.jsonl`` (every document set and reader
    prediction) to ``out_dir``; returns the results.
    """
    started = time.perf_counter()
    sims = [parse_simulator_spec(s) if isinstance(s, str) else s for s in simulators]
    items = eval_items(qa_files, calls_file, limit)
    if not items:
        source = calls_file if calls_file is not None else qa_files
        raise ValueError(f"no evaluation items in {source}")
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.llm.transformers_backend import TransformersChatModel

    reader_name = reader_model or _default_reader(sims)
    reader = Reader(TransformersChatModel(resolve_model_path(reader_name), max_batch_size=batch_size, device=device),
                    doc_format=doc_format)
    out = Path(out_dir)
    with _output_dir(out):
        rows: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        if real_engine is not None:
            rows.append(_evaluate_real(real_engine, items, reader, topk, batch_size, word_range, progress, samples))
        for sim in sims:
            engine = _simulator_engine(sim, max_tokens=max_tokens, temperature=temperature, batch_size=batch_size,
                                       seed=seed, device=device)
            rows.append(_evaluate_simulator(sim, engine, items, reader, topk, batch_size, word_range, progress,
                                            samples))
            del engine
            gc.collect()
        results = {
            "items": len(items), "topk": topk, "word_range": list(word_range), "reader": reader_name,
            "doc_format": doc_format, "simulator_max_tokens": max_tokens, "simulator_temperature": temperature,
            "source": str(calls_file) if calls_file is not None else "questions",
            "engines": rows, "seconds": time.perf_counter() - started,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (out / "results.md").write_text(results_table(results) + "\n", encoding="utf-8")
        _write_jsonl(out / "samples.jsonl", samples)
        return results


@contextmanager
def _output_dir(out: Path) -> Iterator[None]:
    """Create ``out`` (early: an unwritable path fails before any model runs); if the evaluation stops
    (an error, Ctrl-C) before writing anything, remove the directories made here: nothing is in them."""
    made = [d for d in (out, *out.parents) if not d.exists()]  # the new ones, deepest first
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for directory in made:
            if not directory.is_dir() or any(directory.iterdir()):
                break
            directory.rmdir()
        raise


def _evaluate_real(engine: str | SearchEngine, items: Sequence[EvalItem], reader: Reader, topk: int,
                   batch_size: int, word_range: tuple[int, int], progress: bool,
                   samples: list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(engine, str):
        from zerosearch.search.factory import build_engine

        spec, engine = engine, build_engine(engine)
    else:
        spec = engine.name
    results = _search_all(engine, items, False, topk, batch_size, "real engine", progress)
    reader_scores, predictions = reader.scores(items, results)
    samples.extend(_sample_rows(f"real: {spec}", "real", items, results, predictions))
    return {"name": f"real: {spec}", "kind": "real", "spec": spec,
            "useful": {**containment(items, results, topk, word_range), **format_stats(results, topk, word_range),
                       "reader": reader_scores},
            "noisy": None}


def _evaluate_simulator(sim: SimulatorSpec, engine: SearchEngine, items: Sequence[EvalItem], reader: Reader,
                        topk: int, batch_size: int, word_range: tuple[int, int], progress: bool,
                        samples: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": sim.name, "kind": "simulated", "spec": sim.spec, "mode": sim.mode}
    for label, noisy in ((USEFUL, False), (NOISY, True)):
        results = _search_all(engine, items, noisy, topk, batch_size, f"{sim.name} {label}", progress)
        row[label] = {**containment(items, results, topk, word_range), **format_stats(results, topk, word_range)}
        predictions = [""] * len(items)
        if not noisy:  # the reader reads what the policy is meant to learn from: useful documents
            row[label]["reader"], predictions = reader.scores(items, results)
        samples.extend(_sample_rows(sim.name, label, items, results, predictions))
    return row


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def results_table(results: dict[str, Any]) -> str:
    """The evaluation as a markdown table (percentages; the real engine has no noisy mode)."""
    low, high = results["word_range"]
    header = ("| engine | useful: valid, has answer | has answer (raw) | has answer among valid "
              "| noisy: valid, no answer | noisy: parsed, no answer (raw) | parsed | exactly "
              f"{results['topk']} docs | words/doc | docs {low}-{high} words | valid sets | sets without repeats "
              "| reader EM | reader F1 | reader cover EM |")
    lines = [header, "|" + "---|" * 15]
    for row in results["engines"]:
        useful, noisy = row["useful"], row["noisy"]
        words = useful["words_per_doc"]
        lines.append(
            f"| {row['name']} | {_pct(useful.get('valid_contains_share'))} | {_pct(useful['contains_share'])} | "
            f"{_pct(useful.get('contains_among_valid'))} | "
            f"{_pct(noisy.get('valid_clean_share')) if noisy else 'n/a'} | "
            f"{_pct(noisy['parsed_clean_share']) if noisy else 'n/a'} | {_pct(useful['parsed'])} | "
            f"{_pct(useful['exact_topk'])} | {'n/a' if words is None else f'{words:.1f}'} | "
            f"{_pct(useful['docs_in_range'])} | {_pct(useful['valid'])} | {_pct(useful.get('no_repeats'))} | "
            f"{_pct(useful['reader'].get('em'))} | "
            f"{_pct(useful['reader'].get('f1'))} | {_pct(useful['reader'].get('cover_em'))} |"
        )
    judged = results["engines"][0]["useful"]["judged"] if results["engines"] else 0
    lines.append("")
    lines.append(f"{results['items']} items ({judged} judged by answer containment; yes/no answers are not), "
                 f"top-{results['topk']}, reader {results['reader']}; format columns are useful mode. A valid set "
                 f"has exactly {results['topk']} documents of {low}-{high} words each; the headline columns count "
                 "only valid sets, the raw ones any parsed set. A real engine's passages are not written to a "
                 "length: its format columns describe its corpus, and its raw column is its containment.")
    return "\n".join(lines)
