"""The rollout loop: stops, observations, corrective messages, budgets and the loss mask, token by token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from support import SHORT_TEMPLATE, FixedDocumentsEngine
from zerosearch.data import policy_prompt
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.policy import encode_prompt
from zerosearch.protocol import INVALID_ACTION_MESSAGE
from zerosearch.rollout import (
    ANSWERED, CONTEXT_EXHAUSTED, NO_ANSWER, SEARCH_FAILED, RolloutRunner, RolloutSettings, Trajectory,
)
from zerosearch.search.base import Document
from zerosearch.search.documents import information_block

DOCS = ["the sky is blue", "grass is green", "bananas are yellow"]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(tiny_model_dir())


class ScriptedRunner(RolloutRunner):
    """The real environment logic with a scripted policy: turn k of trajectory i writes script[i][k]."""

    def __init__(self, tok, engine, settings, scripts):
        super().__init__(model=None, tokenizer=tok, engine=engine, settings=settings, device=torch.device("cpu"))
        self.scripts = scripts

    def _generate_chunk(self, chunk, budgets, carry=False):
        out = []
        for traj, budget in zip(chunk, budgets):
            text = self.scripts[traj.group].pop(0)
            out.append(self.tokenizer(text, add_special_tokens=False)["input_ids"][:budget])
        return out


def make(tok, question="what colour is the sky", group=0):
    return Trajectory(question, ("blue",), encode_prompt(tok, policy_prompt(question, SHORT_TEMPLATE), True), group=group)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_hand_built_trajectory_mask_token_by_token(tok):
    search = "<think> look it up </think> <search> sky colour </search>"
    junk = "hmm"
    answer = "<think> ok </think> <answer> blue </answer>"
    engine = FixedDocumentsEngine(DOCS)
    runner = ScriptedRunner(tok, engine, RolloutSettings(max_turns=3, topk=2, max_turn_tokens=64), [[search, junk, answer]])
    traj = make(tok)
    runner.run([traj], 0.0, np.random.default_rng(0))

    info = information_block([Document(d) for d in DOCS[:2]])
    pieces = [(search, 1), (info, 0), (junk, 1), (INVALID_ACTION_MESSAGE, 0), (answer, 1)]
    expected_ids, expected_mask = [], []
    for text, m in pieces:
        piece = ids(tok, text)
        expected_ids += piece
        expected_mask += [m] * len(piece)
    assert traj.response_ids == expected_ids
    assert traj.loss_mask == expected_mask  # every token: 1 if the policy wrote it, 0 if the environment did
    assert traj.status == ANSWERED
    assert [t.action for t in traj.turns] == ["search", "invalid", "answer"]
    assert traj.turns[0].query == "sky colour" and traj.turns[0].documents == DOCS[:2]
    assert engine.requests[0].question == "what colour is the sky" and engine.requests[0].golden_answers == ("blue",)
    assert traj.response_text == "".join(t for t, _ in pieces)


def test_final_turn_must_answer_and_search_there_is_not_executed(tok):
    s = "<search> q </search>"
    engine = FixedDocumentsEngine(DOCS)
    runner = ScriptedRunner(tok, engine, RolloutSettings(max_turns=2, topk=1), [[s, s, s]])
    traj = make(tok)
    runner.run([traj], 0.0, np.random.default_rng(0))
    assert traj.status == NO_ANSWER and len(traj.turns) == 3
    assert len(engine.requests) == 2  # the third (final) turn's search is not sent
    assert traj.n_searches == 2  # ... nor counted as one (searches per rollout / per question)
    assert [t.searched for t in traj.turns] == [True, True, False]


def test_failed_search_ends_trajectory_and_is_reported(tok):
    engine = FixedDocumentsEngine(DOCS, fail_queries=["bad"])
    runner = ScriptedRunner(tok, engine, RolloutSettings(max_turns=2), [["<search> bad </search>"], ["<search> good </search>", "<answer> x </answer>"]])
    a, b = make(tok, group=0), make(tok, group=1)
    stats = runner.run([a, b], 0.0, np.random.default_rng(0))
    assert a.status == SEARCH_FAILED and a.turns[0].error and sum(a.loss_mask) == len(a.loss_mask)
    assert b.status == ANSWERED
    assert stats.search_failures == 1 and stats.search_calls == 2


def test_observation_that_does_not_fit_ends_cleanly(tok):
    s = "<search> q </search>"
    traj = make(tok)
    budget = len(traj.prompt_ids) + len(ids(tok, s)) + 5  # room for the search, not for the documents
    runner = ScriptedRunner(tok, FixedDocumentsEngine(DOCS), RolloutSettings(max_turns=2, max_context_tokens=budget), [[s]])
    runner.run([traj], 0.0, np.random.default_rng(0))
    assert traj.status == CONTEXT_EXHAUSTED
    assert "<information>" not in traj.response_text  # not cut mid-block: not appended at all
    assert traj.loss_mask == [1] * len(traj.response_ids)


def test_long_observation_drops_whole_documents(tok):
    s = "<search> q </search>"
    one_doc = len(ids(tok, information_block([Document(DOCS[0])])))
    runner = ScriptedRunner(tok, FixedDocumentsEngine(DOCS), RolloutSettings(max_turns=1, topk=3, max_obs_tokens=one_doc),
                            [[s, "<answer> blue </answer>"]])
    traj = make(tok)
    runner.run([traj], 0.0, np.random.default_rng(0))
    assert information_block([Document(DOCS[0])]) in traj.response_text
    assert DOCS[1] not in traj.response_text and traj.status == ANSWERED


@pytest.mark.parametrize("topk", [1, 2])
def test_document_longer_than_the_budget_is_cut_not_dropped(tok, topk):
    """One document of ~2,000 tokens, max_obs_tokens=64: the block holds the start of it, fits the budget,
    and the turn logs the text the policy saw, not the whole document."""
    long_doc = " ".join(f"word{i}" for i in range(1000))
    s = "<search> q </search>"
    runner = ScriptedRunner(tok, FixedDocumentsEngine([long_doc, DOCS[1]]),
                            RolloutSettings(max_turns=1, topk=topk, max_obs_tokens=64), [[s, "<answer> x </answer>"]])
    traj = make(tok)
    runner.run([traj], 0.0, np.random.default_rng(0))
    block_ids = [i for i, m in zip(traj.response_ids, traj.loss_mask) if m == 0]
    assert 48 <= len(block_ids) <= 64  # filled, within the budget
    (shown,) = traj.turns[0].documents
    assert long_doc.startswith(shown) and 10 < len(shown) < len(long_doc)
    assert information_block([Document(shown)]) in traj.response_text
    assert DOCS[1] not in traj.response_text
    assert traj.turns[0].error is None and traj.status == ANSWERED


def test_fit_observation_keeps_what_fits(tok):
    from zerosearch.rollout import fit_observation

    docs = [Document(d) for d in DOCS]
    text, ids_, shown = fit_observation(docs, tok, 10_000)
    assert shown == docs and text == information_block(docs) and ids_ == ids(tok, text)
    tags_only = len(ids(tok, information_block([])))
    assert fit_observation(docs, tok, tags_only)[2] == []  # no room for any text: nothing shown


def test_per_turn_token_budget(tok):
    long_text = "blah " * 100
    runner = ScriptedRunner(tok, FixedDocumentsEngine(DOCS), RolloutSettings(max_turns=1, max_turn_tokens=7), [[long_text, long_text]])
    traj = make(tok)
    runner.run([traj], 0.0, np.random.default_rng(0))
    assert [t.n_tokens for t in traj.turns] == [7, 7]
    assert [t.action for t in traj.turns] == ["invalid", "invalid"] and traj.status == NO_ANSWER


def test_noise_flags_follow_probability_and_generator(tok):
    def run(p, seed):
        engine = FixedDocumentsEngine(DOCS)
        scripts = [["<search> q </search>", "<answer> a </answer>"] for _ in range(40)]
        runner = ScriptedRunner(tok, engine, RolloutSettings(max_turns=1), scripts)
        trajs = [make(tok, group=i) for i in range(40)]
        stats = runner.run(trajs, p, np.random.default_rng(seed))
        return [r.noisy for r in engine.requests], stats, trajs
    flags, stats, trajs = run(1.0, 0)
    assert all(flags) and stats.noisy_calls == 40 and all(t.turns[0].noisy for t in trajs)
    assert not any(run(0.0, 0)[0])
    assert run(0.5, 3)[0] == run(0.5, 3)[0] and 5 < sum(run(0.5, 3)[0]) < 35


def test_without_a_curriculum_nothing_is_drawn_and_noisy_is_null(tok):
    """Evaluation and collection use a real engine: no noise probability, no generator. Their turns log
    ``noisy`` as None (null), not the ``false`` a dummy draw of p=0 used to record."""
    engine = FixedDocumentsEngine(DOCS)
    scripts = [["<search> q </search>", "<answer> a </answer>"] for _ in range(3)]
    runner = ScriptedRunner(tok, engine, RolloutSettings(max_turns=1), scripts)
    trajs = [make(tok, group=i) for i in range(3)]
    stats = runner.run(trajs)
    assert [t.turns[0].noisy for t in trajs] == [None, None, None] and stats.search_calls == 3
    assert stats.noisy_calls == 0 and not any(r.noisy for r in engine.requests)
    with pytest.raises(ValueError, match="needs the seeded generator"):
        runner.run([make(tok)], 0.5)


def test_real_rollout_mask_matches_turn_records(searcher_model):
    """On a real sampled batch, the mask is exactly: each turn's tokens 1, each inserted block 0."""
    tok = AutoTokenizer.from_pretrained(searcher_model)
    model = AutoModelForCausalLM.from_pretrained(searcher_model)
    engine = FixedDocumentsEngine(DOCS)
    runner = RolloutRunner(model, tok, engine, RolloutSettings(max_turns=2, topk=2, max_turn_tokens=32), torch.device("cpu"))
    trajs = [make(tok, q, g) for g, q in enumerate(["what colour is the sky", "what colour is grass"] * 6)]
    torch.manual_seed(0)
    runner.run(trajs, 0.0, np.random.default_rng(0))
    searched = 0
    for t in trajs:
        expected = []
        for k, turn in enumerate(t.turns):
            expected += [1] * turn.n_tokens
            last = k == len(t.turns) - 1
            if turn.action == "search" and turn.error is None and turn.documents:
                expected += [0] * len(ids(tok, information_block([Document(d) for d in turn.documents])))
                searched += 1
            elif turn.action == "invalid" and not last:
                expected += [0] * len(ids(tok, INVALID_ACTION_MESSAGE))
        assert t.loss_mask == expected
        policy_text = tok.decode([i for i, m in zip(t.response_ids, t.loss_mask) if m])
        assert policy_text == "".join(turn.text for turn in t.turns)
        assert t.done and all(turn.n_tokens <= 32 for turn in t.turns)
    assert searched > 0, "the warmed model should search at least once in 12 rollouts"


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_static_kv_cache_gives_the_same_greedy_rollouts(searcher_model, autocast):
    """The preallocated cache is a speed lever only: greedy rollouts are token for token the same."""
    tok = AutoTokenizer.from_pretrained(searcher_model)
    model = AutoModelForCausalLM.from_pretrained(searcher_model)
    questions = ["what colour is the sky", "what colour is grass", "what colour is a banana"]
    runs = {}
    for cache in ("dynamic", "static"):
        settings = RolloutSettings(max_turns=2, topk=2, max_turn_tokens=24, temperature=0.0, kv_cache=cache)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, torch.device("cpu"), autocast=autocast)
        trajs = [make(tok, q, g) for g, q in enumerate(questions)]
        runner.run(trajs, 0.0, np.random.default_rng(0))
        runs[cache] = [(t.response_ids, t.loss_mask) for t in trajs]
    assert runs["static"] == runs["dynamic"]
    with pytest.raises(ValueError, match="kv_cache"):
        RolloutSettings(kv_cache="paged")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefill_gives_the_same_rollouts(searcher_model, monkeypatch, temperature):
    """A prompt's rollouts prefill their common first-turn context once (zerosearch.shared_prefix): greedy, and
    sampled with one seed, the rollouts are token for token those of prefilling every row."""
    import zerosearch.rollout as rollout_module

    tok = AutoTokenizer.from_pretrained(searcher_model)
    model = AutoModelForCausalLM.from_pretrained(searcher_model)
    questions = ["what colour is the sky", "what colour is grass, short or long?"]
    prefilled_rows = []
    real = rollout_module.shared_prefill

    def spy(model, input_ids, attention_mask):
        cache = real(model, input_ids, attention_mask)
        prefilled_rows.append(None if cache is None else cache.get_seq_length())
        return cache

    runs = {}
    for mode in ("shared", "per_row"):
        monkeypatch.setattr(rollout_module, "shared_prefill", spy if mode == "shared" else lambda *a: None)
        # kv_reuse off: every turn starts from a fresh context, so later turns may share too
        settings = RolloutSettings(max_turns=2, topk=2, max_turn_tokens=24, temperature=temperature, kv_reuse=False)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, torch.device("cpu"))
        trajs = [make(tok, q, g) for g, q in enumerate(questions) for _ in range(3)]
        torch.manual_seed(0)
        runner.run(trajs, 0.0, np.random.default_rng(0))
        runs[mode] = [(t.response_ids, t.loss_mask) for t in trajs]
    assert runs["shared"] == runs["per_row"]
    # the first turn shared its context (all but the last column); greedy rollouts of one prompt stay equal,
    # so later turns share too, sampled ones diverge and later turns find nothing to share
    assert prefilled_rows[0] == max(len(make(tok, q).prompt_ids) for q in questions) - 1
    if temperature == 0.0:
        assert all(n is not None for n in prefilled_rows)


# Issue 14.4: a checkpoint's own generation settings must not change what the rollout samples.
ADVERSARIAL_GENERATION_CONFIG = {
    "repetition_penalty": 1.8, "top_k": 3, "top_p": 0.5, "min_p": 0.3, "typical_p": 0.6,
    "no_repeat_ngram_size": 2, "temperature": 0.2, "do_sample": True, "suppress_tokens": [5, 6, 7],
    "min_new_tokens": 4, "epsilon_cutoff": 3e-3,
}


@pytest.fixture(scope="module")
def opinionated_model(searcher_model, tmp_path_factory):
    """The searcher's weights, with a generation_config.json like Qwen2.5-Instruct's and worse."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(searcher_model, out)
    path = out / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**config, **ADVERSARIAL_GENERATION_CONFIG}))
    loaded = AutoModelForCausalLM.from_pretrained(out).generation_config
    assert loaded.repetition_penalty == 1.8 and loaded.top_k == 3  # the checkpoint really says so
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_rollouts_ignore_the_checkpoints_generation_config(searcher_model, opinionated_model, temperature):
    """Same weights, one checkpoint with sampling settings: token for token the same rollouts (sampled with
    the same seed, or greedy), so rollouts sample exactly the softmax(logits / T) the trainer scores."""
    tok = AutoTokenizer.from_pretrained(searcher_model)
    questions = ["what colour is the sky", "what colour is grass", "what colour is a banana"] * 2
    runs = {}
    for name, path in (("plain", searcher_model), ("opinionated", opinionated_model)):
        model = AutoModelForCausalLM.from_pretrained(path)
        settings = RolloutSettings(max_turns=2, topk=2, max_turn_tokens=24, temperature=temperature)
        runner = RolloutRunner(model, tok, FixedDocumentsEngine(DOCS), settings, torch.device("cpu"))
        trajs = [make(tok, q, g) for g, q in enumerate(questions)]
        torch.manual_seed(0)
        runner.run(trajs, 0.0, np.random.default_rng(0))
        runs[name] = [t.response_ids for t in trajs]
        if name == "opinionated":
            assert model.generation_config.repetition_penalty == 1.8  # restored after the call
    assert runs["opinionated"] == runs["plain"]


def test_in_process_chat_model_ignores_the_checkpoints_generation_config(searcher_model, opinionated_model):
    from zerosearch.llm.transformers_backend import TransformersChatModel

    conversations = [[{"role": "user", "content": "what colour is the sky"}]] * 3
    texts = {}
    for name, path in (("plain", searcher_model), ("opinionated", opinionated_model)):
        chat = TransformersChatModel(str(path))
        texts[name] = [o.text for o in chat.complete(conversations, max_tokens=16, temperature=0.9, seed=3)]
        texts[name] += [o.text for o in chat.complete(conversations, max_tokens=16, temperature=0.0)]
    assert texts["opinionated"] == texts["plain"]


def test_generation_never_compiles_the_model_by_itself(searcher_model, monkeypatch):
    """On CUDA, transformers' ``generate`` compiles the forward pass whenever the cache is static; rollout
    shapes change every call (and on an H200 the compile failed inside the first rollout). Within
    ``plain_generation`` its auto-compile test must say no. The device is faked: this machine has no GPU."""
    from transformers import StaticCache

    from zerosearch.llm.sampling import plain_generation

    model = AutoModelForCausalLM.from_pretrained(searcher_model)
    cache = StaticCache(config=model.config, max_cache_len=8)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cuda")))
    kwargs = {"cache": cache, "past_key_values": cache}  # the keyword differs across transformers versions
    assert model._valid_auto_compile_criteria(kwargs, model.generation_config)  # what a GPU would do unasked
    with plain_generation(model):
        assert not model._valid_auto_compile_criteria(kwargs, model.generation_config)
    assert model._valid_auto_compile_criteria(kwargs, model.generation_config)  # the checkpoint's config is back
