"""The simulator's constant prompt start run once (zerosearch.llm.prefix_cache): where it ends in tokens, that the
model computes the same thing with it as without it, and that a changed template or model invalidates it."""

from __future__ import annotations

import pytest
import torch

from zerosearch.llm.prefix_cache import PrefixCache, prefixed_batch
from zerosearch.prompts import constant_head
from zerosearch.search.base import SearchRequest
from zerosearch.search.simulated import SimulatedSearchEngine

# questions and queries whose first characters a BPE could merge with the template's last ones
AWKWARD = [("Who wrote Hamlet?", "hamlet author"), ("'Allo 'Allo! lead actor?", "'allo 'allo cast"),
           ('"Jaws" director?', '"jaws" director'), ("  spaced out", " spaced"), ("中文问题?", "中文"),
           ("", "empty question"), ("1945 events", "1945"), ("\nnewline first", "\tx")]


def awkward_requests() -> list[SearchRequest]:
    return [SearchRequest(query=q, question=question, golden_answers=(f"answer {i}",), noisy=bool(i % 2))
            for i, (question, q) in enumerate(AWKWARD)]


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerosearch.models.tiny import tiny_model_dir

    path = tiny_model_dir()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def chat_model(tiny, **kwargs):
    from zerosearch.llm.transformers_backend import TransformersChatModel

    model, tokenizer = tiny
    return TransformersChatModel(model=model, tokenizer=tokenizer, **kwargs)


def test_constant_head_stops_at_the_first_field_not_given():
    template = 'Find {kind} docs.\n{Kind} list for "{question}" and {answer}: {query}\n{Kind} Output:'
    assert constant_head(template, kind="noisy", Kind="Noisy") == 'Find noisy docs.\nNoisy list for "'
    assert constant_head(template, kind="x") == "Find x docs.\n"
    assert constant_head("{query} first", kind="x") == ""
    assert constant_head("no fields at all", kind="x") == "no fields at all"


def test_shared_start_of_each_mode_and_kind():
    finetuned = SimulatedSearchEngine(None, mode="finetuned")  # type: ignore[arg-type]
    assert finetuned.shared_start(False) == (
        "You are the Google search engine.\nGiven a query, you need to generate five useful documents for the "
        'query.\n\nThe user is trying to answer the question: "')
    assert finetuned.shared_start(True).startswith(
        "You are the Google search engine.\nGiven a query, you need to generate five noisy documents")
    prompt = SimulatedSearchEngine(None, mode="prompt")  # type: ignore[arg-type]
    assert prompt.shared_start(False).endswith('Bridge\'s steel towers and cables exemplified engineering progress. '
                                               'It crucially linked New York and New Jersey\'s transportation '
                                               'networks.\nDoc 5: Handling over 103 million annual vehicles, the '
                                               'George Washington Bridge is globally one of the busiest. The Port '
                                               'Authority of NY and NJ oversees its traffic and infrastructure '
                                               'maintenance.\n\nThe user is trying to answer the question: "')
    assert prompt.shared_start(True).endswith("not output any other texts.\n\nQuery: ")  # the noisy one has no question
    for engine in (finetuned, prompt):  # every request's user message begins with it
        for request in awkward_requests():
            assert engine.prompt_for(request).startswith(engine.shared_start(request.noisy))


def _tokenizers():
    from transformers import AutoTokenizer

    from zerosearch.llm.models import resolve_model_path

    return {name: AutoTokenizer.from_pretrained(resolve_model_path(name))
            for name in ("zerosearch:tiny", "zerosearch:smollm2-135m-instruct")}


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
def test_shared_tokens_are_a_token_prefix_of_every_prompt(mode):
    """The shared start ends on a token boundary that no continuation moves: every awkward request's own
    tokenisation begins with it (so none falls back), and it covers the chat header and the instructions."""
    engine = SimulatedSearchEngine(None, mode=mode)  # type: ignore[arg-type]
    for name, tokenizer in _tokenizers().items():
        encode = lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        cache = PrefixCache(tokenizer, encode)
        for request in awkward_requests():
            conversation = engine.conversation_for(request)
            full = encode(tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True))
            shared = cache._shared_ids(conversation, engine.shared_start(request.noisy))
            assert full[: len(shared)] == list(shared), (name, request)
            text = tokenizer.decode(shared)
            assert text.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nYou are the Google search")
            # at most the last word of the shared text is left to the request (the merge-prone end)
            hint = engine.shared_start(request.noisy)
            assert len(hint) - len(text.split("<|im_start|>user\n", 1)[1]) <= len(hint.split()[-1]) + 1


def _scores(model, input_ids, attention, cache=None, steps=6):
    from zerosearch.shared_prefix import cache_keyword

    extra = {} if cache is None else {cache_keyword(model): cache}
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=steps, min_new_tokens=steps,
                             do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0,
                             **extra)
    return torch.stack(out.scores, 1), out.sequences[:, input_ids.shape[1]:]


def test_prefixed_batch_computes_what_the_full_prompt_does(tiny):
    """Rows with two different shared starts of different lengths, and one row run in full, in one batch: every
    step's logits match those of the plain left-padded batch (positions and masks right for every row)."""
    from zerosearch.padding import left_pad

    model, tokenizer = tiny
    encode = lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    cache = PrefixCache(tokenizer, encode)
    engine = SimulatedSearchEngine(None, mode="prompt")  # type: ignore[arg-type]
    requests = awkward_requests()[:4]
    conversations = [engine.conversation_for(r) for r in requests]
    prompts = [encode(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True))
               for c in conversations]
    hints = [engine.shared_start(r.noisy) for r in requests]
    hints[2] = None  # run in full
    with torch.inference_mode():
        starts = cache.starts(model, None, conversations, prompts, hints)
    assert [s is not None for s in starts] == [True, True, False, True]
    assert len(starts[0].ids) != len(starts[1].ids)  # useful and noisy starts differ in length
    assert cache.builds == 2 and cache.hits == 3 and cache.fallbacks == 0
    ids, attention, kv = prefixed_batch(prompts, starts, 0, model.config, torch.device("cpu"))
    assert ids.shape[1] == max(len(s.ids) for s in starts if s) + max(
        len(p) - (len(s.ids) if s else 0) for p, s in zip(prompts, starts))
    for row, (p, s) in enumerate(zip(prompts, starts)):  # each row's real tokens are its prompt, in order
        assert ids[row][attention[row].bool()].tolist() == p
    plain_ids, plain_attention = left_pad(prompts, max(len(p) for p in prompts), 0)
    got, got_tokens = _scores(model, ids, attention, kv)
    want, want_tokens = _scores(model, plain_ids, plain_attention)
    assert torch.equal(got_tokens, want_tokens)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_stored_start_is_never_written(tiny):
    chat = chat_model(tiny, seed=0)
    engine = SimulatedSearchEngine(chat, mode="finetuned", max_tokens=8, temperature=1.0)
    engine.search(awkward_requests()[:3], topk=3)
    entries = list(chat.prefix_store._entries.values())
    saved = [[t.clone() for t in e.keys + e.values] for e in entries]
    engine.search(awkward_requests(), topk=3)
    assert chat.prefix_store.builds == 2  # useful and noisy, once each
    for entry, before in zip(entries, saved):
        assert all(torch.equal(a, b) for a, b in zip(entry.keys + entry.values, before))


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
def test_same_replies_with_and_without_the_prefix_cache(tiny, mode):
    """Greedy replies, and sampled ones with one seed (the tiny model's greedy replies are mostly newlines; its
    sampled ones are varied tokens), are the same with the cache and without, in batches mixing useful and
    noisy requests and split into chunks."""
    cached = chat_model(tiny, seed=3, max_batch_size=3)
    plain = chat_model(tiny, seed=3, max_batch_size=3, prefix_cache=False)
    requests = awkward_requests()
    for temperature in (0.0, 1.0):
        a = SimulatedSearchEngine(cached, mode=mode, max_tokens=16, temperature=temperature)
        b = SimulatedSearchEngine(plain, mode=mode, max_tokens=16, temperature=temperature)
        conversations = [a.conversation_for(r) for r in requests]
        hints = [a.shared_start(r.noisy) for r in requests]
        got = cached.complete(conversations, max_tokens=16, temperature=temperature, prefixes=hints)
        want = plain.complete(conversations, max_tokens=16, temperature=temperature, prefixes=hints)
        assert [c.text for c in got] == [c.text for c in want]
        assert a.search(requests, 3) == b.search(requests, 3)
    assert len({c.text for c in got}) > 1  # the sampled replies differ from one another: a real comparison
    assert cached.prefix_store.hits == 4 * len(requests) and cached.prefix_store.fallbacks == 0
    assert plain.prefix_store.hits == 0 and plain.prefix_store.builds == 0


def test_a_template_writing_per_request_text_first_runs_every_row_in_full(tiny):
    """A chat template that puts something of the request before the message (here its length) leaves no shared
    start: every row falls back to its full prompt, and the replies are unchanged."""
    import copy

    model, tokenizer = tiny
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = "[{{ messages[-1]['content'] | length }}]" + tokenizer.chat_template
    cached = chat_model((model, tokenizer), seed=0)
    plain = chat_model((model, tokenizer), seed=0, prefix_cache=False)
    requests = awkward_requests()[:4]
    engine = SimulatedSearchEngine(cached, mode="finetuned", max_tokens=12, temperature=1.0)
    assert engine.search(requests, 3) == SimulatedSearchEngine(plain, mode="finetuned", max_tokens=12,
                                                               temperature=1.0).search(requests, 3)
    assert cached.prefix_store.hits == 0 and cached.prefix_store.fallbacks == 4 and cached.prefix_store.builds == 0


def test_static_cache_runs_in_full(tiny):
    chat = chat_model(tiny, seed=0, kv_cache="static")
    SimulatedSearchEngine(chat, mode="finetuned", max_tokens=4).search(awkward_requests()[:2], 3)
    assert chat.prefix_store.hits == 0 and chat.prefix_store.builds == 0


def _sampled(chat, engine_kwargs, requests):
    return [c.text for c in chat.complete(
        [SimulatedSearchEngine(chat, **engine_kwargs).conversation_for(r) for r in requests],
        max_tokens=12, temperature=1.0, seed=11,
        prefixes=[SimulatedSearchEngine(chat, **engine_kwargs).shared_start(r.noisy) for r in requests])]


def test_a_changed_template_gets_its_own_start(tiny, tmp_path):
    """Two templates that differ inside the shared start, one chat model: each gets its own cached start, and
    each one's replies are those of its full prompts."""
    from zerosearch.prompts import load_template

    other = tmp_path / "other.txt"
    other.write_text(load_template("simulator_finetuned").replace("Google", "Bing"), encoding="utf-8")
    cached = chat_model(tiny)
    plain = chat_model(tiny, prefix_cache=False)
    requests = [r for r in awkward_requests() if not r.noisy]
    for kwargs in ({"mode": "finetuned"}, {"mode": "finetuned", "useful_template": str(other)}):
        assert _sampled(cached, kwargs, requests) == _sampled(plain, kwargs, requests)
    assert cached.prefix_store.builds == 2 and len(cached.prefix_store._entries) == 2


def test_a_changed_model_invalidates_the_cached_start(tiny):
    """Weights changed in place (an optimizer step), or another model object: the start is run again, so the
    replies are those of the changed model's full prompts, not of the stale cache."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = tiny
    model = AutoModelForCausalLM.from_config(model.config).eval()
    model.load_state_dict(tiny[0].state_dict())
    cached = chat_model((model, tokenizer))
    plain = chat_model((model, tokenizer), prefix_cache=False)
    requests = awkward_requests()[:4]
    kwargs = {"mode": "prompt"}
    before = _sampled(cached, kwargs, requests)
    assert before == _sampled(plain, kwargs, requests) and cached.prefix_store.builds == 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()  # in place, as a training step changes a model that is also the simulator
    after = _sampled(cached, kwargs, requests)
    assert after != before  # the weights changed the replies ...
    assert after == _sampled(plain, kwargs, requests)  # ... and the cache followed
    assert cached.prefix_store.builds == 4
    swapped = AutoModelForCausalLM.from_config(model.config).eval()  # another model object
    cached.model = plain.model = swapped
    assert _sampled(cached, kwargs, requests) == _sampled(plain, kwargs, requests)
    assert cached.prefix_store.builds == 6


@pytest.mark.slow
def test_smollm2_greedy_replies_are_the_same_with_the_prefix_cache():
    """SmolLM2-135M-Instruct in fp32, prompt mode, useful and noisy requests in one batch: token for token."""
    from zerosearch.llm.models import resolve_model_path
    from zerosearch.llm.transformers_backend import TransformersChatModel

    cached = TransformersChatModel(resolve_model_path("zerosearch:smollm2-135m-instruct"), dtype="float32")
    plain = TransformersChatModel(model=cached.model, tokenizer=cached.tokenizer, prefix_cache=False)
    requests = awkward_requests()[:4]
    results = [SimulatedSearchEngine(chat, mode="prompt", max_tokens=16, temperature=0).search(requests, 3)
               for chat in (cached, plain)]
    assert results[0] == results[1]
    assert cached.prefix_store.hits == 4 and cached.prefix_store.reused_tokens > 4 * 250


def test_the_setting_reaches_the_simulator_and_the_run_records_it(tmp_path):
    from zerosearch.config import load_train_config, save_config
    from zerosearch.search.factory import build_engine as build_spec
    from zerosearch.trainer import RESUMABLE_KEYS, build_engine

    for value, expected in (([], True), (["engine.simulator.prefix_cache=false"], False)):
        cfg = load_train_config(None, ["model=zerosearch:tiny", *value])
        assert cfg.engine.simulator.prefix_cache is expected
        engine = build_engine(cfg, torch.device("cpu"), torch.float32)
        assert engine.chat_model.prefix_cache is expected
        save_config(cfg, tmp_path / "config.yaml")
        assert f"prefix_cache: {str(expected).lower()}" in (tmp_path / "config.yaml").read_text()
    assert "engine.simulator.prefix_cache" in RESUMABLE_KEYS  # a speed lever: the same documents either way
    assert build_spec("simulated:zerosearch:tiny", prefix_cache=False).chat_model.prefix_cache is False
    assert build_spec("simulated:zerosearch:tiny").chat_model.prefix_cache is True
