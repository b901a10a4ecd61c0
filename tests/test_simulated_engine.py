"""SimulatedSearchEngine over a real tiny in-process model, and over fakes for the failure paths."""

from __future__ import annotations

import pytest

from zerosearch.llm.base import ChatModel, Completion
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.search.simulated import SimulatedSearchEngine


@pytest.fixture(scope="module")
def tiny_chat():
    import torch

    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.models.tiny import tiny_model_dir

    # One intra-op thread: for a model this small more threads only add overhead, and on a shared
    # CPU OpenMP spin-waiting made a 0.2 s generate take 10+ s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TransformersChatModel(str(tiny_model_dir()), seed=0, max_batch_size=4)
    torch.set_num_threads(threads)


class Recording:
    """Wraps a chat model and keeps every batch of conversations it was sent."""

    def __init__(self, inner: ChatModel):
        self.inner = inner
        self.name = f"recording:{inner.name}"
        self.batches: list[list] = []
        self.kwargs: list[dict] = []

    def complete(self, conversations, *, max_tokens, temperature, stop=None):
        self.batches.append([list(c) for c in conversations])
        self.kwargs.append({"max_tokens": max_tokens, "temperature": temperature, "stop": stop})
        return self.inner.complete(conversations, max_tokens=max_tokens, temperature=temperature, stop=stop)


class Scripted:
    """A fake chat model that answers from a list (a Completion or a text per conversation)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)

    def complete(self, conversations, *, max_tokens, temperature, stop=None):
        out = []
        for _ in conversations:
            answer = self.answers.pop(0)
            out.append(answer if isinstance(answer, Completion) else Completion(text=answer))
        return out


def requests(n: int) -> list[SearchRequest]:
    return [
        SearchRequest(
            query=f"query number {i}",
            question=f"question number {i}?",
            golden_answers=(f"answer{i}", f"alias{i}"),
            noisy=bool(i % 2),
        )
        for i in range(n)
    ]


def test_is_a_search_engine():
    assert isinstance(SimulatedSearchEngine(Scripted([])), SearchEngine)
    assert SimulatedSearchEngine.name == "simulated"


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
def test_tiny_model_one_result_per_request_in_order(tiny_chat, mode):
    recorder = Recording(tiny_chat)
    engine = SimulatedSearchEngine(recorder, mode=mode, max_tokens=48, temperature=1.0)
    reqs = requests(6)
    results = engine.search(reqs, topk=3)

    assert len(results) == len(reqs)
    assert len(recorder.batches) == 1 and len(recorder.batches[0]) == len(reqs)  # ONE batched call
    # stops at the start of document topk + 1 instead of generating max_tokens and cutting there
    assert recorder.kwargs == [{"max_tokens": 48, "temperature": 1.0, "stop": ["Doc 4"]}]
    for request, result, conversation in zip(reqs, results, recorder.batches[0]):
        assert isinstance(result, SearchResult)
        assert result.noisy == request.noisy
        assert len(result.documents) <= 3
        # Gibberish either parses into documents or is reported as an error, never both/neither.
        assert result.ok == bool(result.documents)
        if not result.ok:
            assert "no parseable documents" in result.error
        # In order: the i-th conversation is the i-th request's.
        assert conversation[0] == {"role": "system", "content": ""}
        assert conversation[1]["role"] == "user"
        assert f"Query: {request.query}\n" in conversation[1]["content"]
    assert any(r.ok for r in results), "sampled gibberish should parse into some documents"


def test_conversation_carries_the_first_gold_answer_and_the_query():
    recorder = Recording(Scripted(["Doc 1: a\nDoc 2: b", "Doc 1: c"]))
    engine = SimulatedSearchEngine(recorder)
    reqs = [
        SearchRequest(query="capital of france", question="What is the capital of France?",
                      golden_answers=("Paris", "City of Light")),
        SearchRequest(query="eiffel tower height", question="How tall is it?",
                      golden_answers=("330 m",), noisy=True),
    ]
    results = engine.search(reqs, topk=5)
    (first, second), = recorder.batches
    user = first[1]["content"]
    assert 'question: "What is the capital of France?" whose answer is Paris.\n' in user
    assert "City of Light" not in user
    assert "Query: capital of france\nUseful Output:\n" in user
    assert "whose answer is 330 m.\n" in second[1]["content"]
    assert "Query: eiffel tower height\nNoisy Output:\n" in second[1]["content"]
    assert results[0] == SearchResult(documents=[Document("a"), Document("b")], noisy=False)
    assert results[1] == SearchResult(documents=[Document("c")], noisy=True)


def test_failed_completion_becomes_an_error_result():
    fake = Scripted([
        Completion(error="ConnectionError: refused [after 4 attempts]", attempts=4),
        "Doc 1: fine",
        Completion(error="timeout", attempts=2),
    ])
    results = SimulatedSearchEngine(fake).search(requests(3), topk=5)
    assert [r.ok for r in results] == [False, True, False]
    assert "refused" in results[0].error and results[0].attempts == 4
    assert results[0].documents == [] and results[0].noisy is False
    assert results[1].documents == [Document("fine")]
    assert results[2].attempts == 2 and results[1].noisy is True  # requests(3): odd ones noisy


def test_unparseable_output_is_an_error_not_an_empty_result():
    results = SimulatedSearchEngine(Scripted(["", "Here are five documents:"])).search(requests(2), 5)
    assert all(not r.ok and "no parseable documents" in r.error for r in results)


def test_topk_caps_the_documents():
    text = "\n".join(f"Doc {i}: d{i}" for i in range(1, 8))
    (result,) = SimulatedSearchEngine(Scripted([text])).search(requests(1), topk=5)
    assert [d.text for d in result.documents] == ["d1", "d2", "d3", "d4", "d5"]


def test_missing_gold_answer_is_reported_without_a_model_call():
    recorder = Recording(Scripted(["Doc 1: ok"]))
    reqs = [SearchRequest(query="q0", question="?"), requests(1)[0]]
    results = SimulatedSearchEngine(recorder).search(reqs, topk=5)
    assert not results[0].ok and "gold answer" in results[0].error and results[0].attempts == 0
    assert results[1].ok
    assert len(recorder.batches[0]) == 1  # only the answerable request was sent
    # The noisy few-shot prompt does not use the answer, so a noisy request without one is fine.
    noisy = SearchRequest(query="q", noisy=True)
    assert SimulatedSearchEngine(Scripted(["Doc 1: x"]), mode="prompt").search([noisy], 5)[0].ok


def test_empty_batch_makes_no_call():
    recorder = Recording(Scripted([]))
    assert SimulatedSearchEngine(recorder).search([], topk=5) == []
    assert recorder.batches == []


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="unknown simulator mode"):
        SimulatedSearchEngine(Scripted([]), mode="sft")
    with pytest.raises(ValueError, match="topk"):
        SimulatedSearchEngine(Scripted([])).search(requests(1), topk=0)


def test_transformers_backend_is_seeded_and_batched(tiny_chat):
    from zerosearch.llm.transformers_backend import TransformersChatModel

    convs = [[{"role": "user", "content": f"hello {i}"}] for i in range(5)]
    a = TransformersChatModel(model=tiny_chat.model, tokenizer=tiny_chat.tokenizer, seed=7)
    b = TransformersChatModel(model=tiny_chat.model, tokenizer=tiny_chat.tokenizer, seed=7)
    first = a.complete(convs, max_tokens=12, temperature=1.0)
    assert first == b.complete(convs, max_tokens=12, temperature=1.0)
    assert len(first) == 5 and all(c.ok for c in first)
    # Greedy decoding of a conversation does not depend on the rest of the batch's chunking.
    greedy = a.complete(convs, max_tokens=8, temperature=0)
    chunked = TransformersChatModel(model=tiny_chat.model, tokenizer=tiny_chat.tokenizer,
                                    max_batch_size=1).complete(convs, max_tokens=8, temperature=0)
    assert [c.text for c in greedy] == [c.text for c in chunked]


def test_transformers_backend_needs_a_chat_template():
    from zerosearch.llm.transformers_backend import TransformersChatModel
    from zerosearch.models.tiny import tiny_model_dir

    with pytest.raises(ValueError, match="no chat template"):
        TransformersChatModel(str(tiny_model_dir(chat_template=False)))
