"""The format warm-up: demonstrations in the exact protocol, masks token by token, the gradient ignores the
documents, only training questions, the cache, and the trainer starting from the warmed-up model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from zerosearch import warmup as warmup_module
from zerosearch.config import load_train_config
from zerosearch.data import load_qa_file
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.search.base import Document, SearchResult
from zerosearch.search.documents import information_block
from zerosearch.sft import SFTRun, SFTSettings
from zerosearch.warmup import (
    ANSWER, FIRST_SEARCH, NEXT_SEARCH, DemoSettings, build_demonstrations, demonstration_example, run_warmup,
)

CPU = torch.device("cpu")

ROWS = [  # (question, answer, supporting titles)
    ("Where was Ada Lovelace born", "London", ["Ada Lovelace"]),  # the first search shows the answer
    ("Which river flows through the capital of Gondor", "Anduin", ["Gondor", "Minas Tirith"]),  # needs a 2nd
    ("Is the Moon made of cheese", "no", ["Moon"]),  # yes/no: containment cannot judge, kept
    ("Who painted the ceiling nobody knows", "Nobody", ["Ceiling"]),  # never grounded: left out
    ("What does the broken engine say", "x", ["Broken"]),  # the engine fails: left out
]
DOCS = {
    "Where was Ada Lovelace born": [Document("Ada Lovelace was born in London in 1815.", "Ada Lovelace")],
    "Which river flows through the capital of Gondor": [Document("Gondor is a realm; its capital moved.", "Gondor")],
    "Gondor": [Document("Gondor is a realm in the south.", "Gondor")],  # already seen: not searched again
    "Minas Tirith": [Document("Minas Tirith stands above the river Anduin.", "Minas Tirith")],
    "Is the Moon made of cheese": [Document("The Moon is rock.", "Moon")],
    "Moon": [Document("Earth's satellite.", "Moon")],
    "Who painted the ceiling nobody knows": [Document("A ceiling is the upper surface of a room.", "Ceiling")],
    "Ceiling": [Document("Ceilings can be painted.", "Ceiling")],
}


class DictEngine:
    """Canned documents by query (the subject here is the warm-up, not search); an unknown query fails."""

    name = "dict"

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, requests, topk):
        self.queries += [r.query for r in requests]
        return [SearchResult(documents=DOCS[r.query][:topk]) if r.query in DOCS
                else SearchResult(error="unreachable (test)") for r in requests]


def _qa_file(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a],
                                        "metadata": {"supporting_titles": t}}) + "\n"
                            for i, (q, a, t) in enumerate(rows)), encoding="utf-8")
    return path


@pytest.fixture
def tok():
    return AutoTokenizer.from_pretrained(tiny_model_dir())


def _demos(tmp_path, tok, **settings):
    rows = load_qa_file(_qa_file(tmp_path / "train.jsonl"))
    prompts = [tok(f"Q: {r.question}\n", add_special_tokens=False)["input_ids"] for r in rows]
    engine = DictEngine()
    demos, stats = build_demonstrations(rows, engine, tok, prompts, DemoSettings(**settings))
    return demos, stats, engine


def test_demonstrations_in_the_exact_protocol(tmp_path, tok):
    demos, stats, engine = _demos(tmp_path, tok)
    assert (stats.rows, stats.one_search, stats.two_searches) == (5, 2, 1)
    assert (stats.ungrounded_dropped, stats.search_failed_dropped, stats.grounded, stats.closed_answers) == (1, 1, 2, 1)
    by_question = {d.question: d for d in demos}
    gondor = by_question["Which river flows through the capital of Gondor"]
    # "Gondor" was already among the first documents' titles, so the second search is "Minas Tirith"
    assert "Gondor" not in engine.queries and "Minas Tirith" in engine.queries
    docs1 = DOCS["Which river flows through the capital of Gondor"]
    expected = (FIRST_SEARCH.format(query=gondor.question) + information_block(docs1)
                + NEXT_SEARCH.format(query="Minas Tirith") + information_block(DOCS["Minas Tirith"])
                + ANSWER.format(answer="Anduin"))
    assert gondor.response_text == expected
    assert gondor.response_text.startswith("<think> I will search for the question. </think>\n<search> Which river")
    assert [t.action for t in gondor.turns] == ["search", "search", "answer"]


def test_demonstrations_show_documents_in_the_runs_doc_format(tmp_path, tok):
    demos, _, _ = _demos(tmp_path, tok, doc_format="search_r1")
    gondor = next(d for d in demos if d.question.startswith("Which river"))
    docs1 = DOCS["Which river flows through the capital of Gondor"]
    assert information_block(docs1, "search_r1") in gondor.response_text
    assert information_block(docs1, "search_r1") != information_block(docs1)  # the formats differ here


def test_loss_mask_token_by_token(tmp_path, tok):
    demos, _, _ = _demos(tmp_path, tok)
    gondor = next(d for d in demos if d.question.startswith("Which river"))

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    segments = [  # (text, mask): the policy's text 1, the environment's block 0
        (FIRST_SEARCH.format(query=gondor.question), 1),
        (information_block(DOCS[gondor.question]), 0),
        (NEXT_SEARCH.format(query="Minas Tirith"), 1),
        (information_block(DOCS["Minas Tirith"]), 0),
        (ANSWER.format(answer="Anduin"), 1),
    ]
    ids = [i for text, _ in segments for i in enc(text)]
    mask = [m for text, m in segments for _ in enc(text)]
    assert gondor.response_ids == ids
    assert gondor.loss_mask == mask
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert "<information>" not in trained and "Minas Tirith stands" not in trained
    example = demonstration_example(gondor)
    assert example.loss_mask == tuple([0] * len(gondor.prompt_ids) + mask)


def test_documents_are_snippets_and_fit_the_observation_budget(tmp_path, tok):
    query = "Where was Ada Lovelace born (long)"
    DOCS[query] = [Document(" ".join(["filler"] * 60) + " the answer is London here.", "Ada Lovelace"),
                   Document("second document " * 30, "Other")]
    first = Document("filler filler filler filler filler filler the answer is London", "Ada Lovelace")
    budget = len(tok(information_block([first]), add_special_tokens=False)["input_ids"])  # room for one
    try:
        rows = load_qa_file(_qa_file(tmp_path / "t.jsonl", [(query, "London", [])]))
        demos, _ = build_demonstrations(rows, DictEngine(), tok, [[1, 2]],
                                        DemoSettings(max_doc_words=10, max_obs_tokens=budget))
    finally:
        del DOCS[query]
    # the 10-word window around the answer, as a search engine's snippet; the second document no longer
    # fits the observation budget and is dropped whole
    assert information_block([first]) in demos[0].response_text
    assert "Doc 2" not in demos[0].response_text


def test_document_text_does_not_change_the_warmup_gradient(tmp_path, tok):
    """Documents carry loss_mask 0: with the sequence cut right after its first <information> block, two
    demonstrations that differ only in the documents' text (and length) give the same gradient, bit for bit.
    (Later policy tokens attend to the documents, so a whole demonstration's gradient does depend on them,
    as it must; what must not is any loss on the documents themselves.) Changing the policy's own text,
    the control, does change it."""
    model = __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_model_dir())

    def gradient(docs, query="Ada Lovelace"):
        DOCS[query] = docs
        try:
            rows = load_qa_file(_qa_file(tmp_path / "g.jsonl", [(query, "London", [])]))
            demos, _ = build_demonstrations(rows, DictEngine(), tok, [[1, 2, 3]],
                                            DemoSettings(require_grounded=False))
        finally:
            del DOCS[query]
        example = demonstration_example(demos[0])
        end = example.loss_mask.index(1, len(demos[0].prompt_ids) + demos[0].loss_mask.index(0))  # 2nd policy turn
        cut = type(example)(example.input_ids[:end], example.loss_mask[:end])
        model.zero_grad()
        run = SFTRun(model, tok.pad_token_id, [cut], SFTSettings(batch_size=1, save_steps=0), CPU)
        loss, tokens = run._loss_sum([cut])
        (loss / tokens).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    base = gradient([Document("Ada Lovelace was born in London.", "Ada Lovelace")])
    other_docs = gradient([Document("Completely different words, and many more of them, about kites.", "Kites")])
    other_query = gradient([Document("Ada Lovelace was born in London.", "Ada Lovelace")], query="Ada Byron")
    assert torch.equal(base, other_docs)
    assert not torch.allclose(base, other_query)


# --- the cached warm-up of a run ------------------------------------------------------------------------


def _config(tmp_path, *extra):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": f'"{t}"\n{d.text}'}) + "\n"
                              for i, (t, d) in enumerate((d.title, d) for docs in DOCS.values() for d in docs)))
    dev = _qa_file(tmp_path / "dev.jsonl", [ROWS[0]])  # the evaluated question: never trained on
    return load_train_config(None, [
        "model=zerosearch:tiny", f"train_files={_qa_file(tmp_path / 'train.jsonl')}", f"final_eval.files={dev}",
        "max_turns=2", "topk=2", "max_obs_tokens=128", "max_context_tokens=1024",
        "warmup.enabled=true", f"warmup.engine=bm25:{corpus}", "warmup.require_grounded=false",
        "warmup.epochs=1", "warmup.lr=1e-3", "warmup.batch_size=2", *extra,
    ])


def test_run_warmup_trains_once_then_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(warmup_module, "cache_dir", lambda: tmp_path / "cache")
    cfg = _config(tmp_path)
    first = run_warmup(cfg, progress=False)
    assert not first.cached
    assert (first.model_dir / "config.json").exists() and (first.model_dir / "warmup.json").exists()
    info = first.info
    assert info["eval_overlap_dropped"] == 1  # the dev question in the train file was left out
    demos = [json.loads(line) for line in (first.model_dir / "demonstrations.jsonl").read_text().splitlines()]
    assert ROWS[0][0] not in {d["question"] for d in demos}
    assert info["demonstrations"]["rows"] == 4 and info["sft"]["steps"] >= 1
    again = run_warmup(cfg, progress=False)
    assert again.cached and again.model_dir == first.model_dir
    assert run_warmup(_config(tmp_path, "warmup.enabled=false"), progress=False).cached  # `zerosearch warmup`
    changed = run_warmup(_config(tmp_path, "warmup.lr=2e-3"), progress=False)
    assert not changed.cached and changed.model_dir != first.model_dir
    # the warmed-up model records the document format it was shown (eval reads it)
    assert json.loads((first.model_dir / "zerosearch.json").read_text()) == {"doc_format": "zerosearch"}
    from zerosearch.warmup import warmup_key

    keys = {fmt: warmup_key(_config(tmp_path, f"doc_format={fmt}"), "m", [], [], "t", False)
            for fmt in ("zerosearch", "search_r1")}
    assert keys["zerosearch"] != keys["search_r1"]  # demonstrations in another format: another model


def test_trainer_starts_from_the_warmed_up_model(tmp_path, monkeypatch):
    from zerosearch.trainer import Trainer

    monkeypatch.setattr(warmup_module, "cache_dir", lambda: tmp_path / "cache")
    cfg = _config(tmp_path, "total_steps=1", "prompts_per_step=1", "rollouts_per_prompt=1", "max_turn_tokens=8",
                  f"output_dir={tmp_path / 'run'}")
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, tmp_path / "run", engine=DictEngine(), progress=False)
    recorded = json.loads((tmp_path / "run" / "warmup.json").read_text())
    assert trainer.init_model == recorded["model_dir"] != cfg.model
    assert Path(trainer.init_model).parent == tmp_path / "cache" / "warmup"
    # the reference policy is the warmed-up model: the policy starts equal to it
    for (name, p), q in zip(trainer.policy.named_parameters(), trainer.reference.parameters()):
        assert torch.equal(p, q), name


def test_warmup_needs_a_search_turn(tmp_path, monkeypatch):
    from zerosearch.config import ConfigError

    monkeypatch.setattr(warmup_module, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(ConfigError, match="max_turns=0"):  # a run with the warm-up on: when the config loads
        _config(tmp_path, "max_turns=0")
    with pytest.raises(ConfigError, match="max_turns=0"):  # `zerosearch warmup` (warm-up off in the config)
        run_warmup(_config(tmp_path, "max_turns=0", "warmup.enabled=false"), progress=False)
    assert not (tmp_path / "cache").exists()  # said before any engine or model was built


def test_warmup_errors_name_the_warmup_keys_and_leave_nothing_half_built(tmp_path, monkeypatch):
    from zerosearch.config import ConfigError

    monkeypatch.setattr(warmup_module, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"^none of the 4 warm-up demonstrations fits warmup\.max_length=16 "
                                          r"tokens; raise warmup\.max_length$"):
        run_warmup(_config(tmp_path, "warmup.max_length=16"), progress=False)
    assert list((tmp_path / "cache" / "warmup").iterdir()) == []  # no .partial left to look like a resume
    with pytest.raises(ConfigError, match=r"^warmup\.engine='nope': unknown search engine 'nope'"):
        run_warmup(_config(tmp_path, "warmup.engine=nope"), progress=False)


def test_warmup_command_says_how_to_train_from_it_with_the_same_config(tmp_path, monkeypatch, capsys):
    from zerosearch.cli import main

    monkeypatch.setattr(warmup_module, "cache_dir", lambda: tmp_path / "cache")
    cfg = _config(tmp_path)
    config = tmp_path / "warm.yaml"
    from zerosearch.config import save_config

    save_config(cfg, config)
    assert main(["warmup", str(config), "topk=2", "warmup.epochs=1", "--no-progress"]) == 0
    hint = next(line for line in capsys.readouterr().err.splitlines() if "train from it:" in line)
    model_dir = next((tmp_path / "cache" / "warmup").iterdir())
    assert hint == (f"  train from it: zerosearch train {config} topk=2 model={model_dir} warmup.enabled=false "
                    "engine.simulator.model=zerosearch:tiny")
