"""A simulation LLM that parrots its prompt never hands the policy the gold answer (Alibaba-NLP/ZeroSearch#22).

The simulator is told "... whose answer is {answer}"; a reply that restates the instructions, that answer
sentence or the few-shot example is a failed search (``SearchResult.echo``), counted, and left out of the
update; a useful document that merely contains the answer is served as before."""

from __future__ import annotations

import pytest

from zerosearch.llm.base import Completion
from zerosearch.prompts import load_template
from zerosearch.search.base import SearchRequest
from zerosearch.search.documents import parse_simulated_documents
from zerosearch.search.echo import PromptEcho
from zerosearch.search.simulated import SimulatedSearchEngine

QUESTION = "Which band did Taylor form after leaving the Texans?"
ANSWER = "Sundance Kids"
USEFUL = SearchRequest(query="Taylor band after Texans", question=QUESTION, golden_answers=(ANSWER, "The Kids"))
NOISY = SearchRequest(query="Taylor band after Texans", question=QUESTION, golden_answers=(ANSWER,), noisy=True)

LEGITIMATE = (
    "Doc 1: After leaving the Texans in 1998, Taylor formed the Sundance Kids, a country rock band from Austin.\n"
    "Doc 2: The Sundance Kids released their first album in 2001 and toured Texas with Taylor as lead singer.\n"
    "Doc 3: Taylor played guitar for the Texans for six seasons before starting a new group.\n"
)


class Parrot:
    """A chat model that answers each conversation with ``reply(user message)``."""

    name = "parrot"

    def __init__(self, reply=lambda prompt: prompt):
        self.reply = reply

    def complete(self, conversations, *, max_tokens, temperature, stop=None):
        return [Completion(text=self.reply(c[-1]["content"])) for c in conversations]


def search(mode: str, reply, request=USEFUL):
    engine = SimulatedSearchEngine(Parrot(reply), mode=mode)
    return engine, engine.search([request], 3)[0]


def shown(result) -> str:
    return " ".join(d.text for d in result.documents)


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
@pytest.mark.parametrize("request_", [USEFUL, NOISY], ids=["useful", "noisy"])
def test_a_verbatim_echo_is_a_counted_failure_not_documents(mode, request_):
    # the bug: the finetuned prompt's echo parsed into two documents, the second "... whose answer is Sundance Kids."
    prompt = SimulatedSearchEngine(Parrot(), mode=mode).prompt_for(request_)
    assert parse_simulated_documents(prompt, 3)  # the parser alone would serve it
    engine, result = search(mode, lambda p: p, request_)
    assert not result.ok and result.echo and not result.documents
    assert result.error.startswith("simulator echoed its prompt: ")
    assert (engine.echoes, engine.replies) == (1, 1)


@pytest.mark.parametrize("reply", [
    # the answer sentence alone, inside an otherwise plausible document
    "Doc 1: Taylor's second band is the one whose answer is Sundance Kids.\nDoc 2: Taylor left the Texans in 1998.",
    # the answer sentence restated with the question
    f'Doc 1: The question "{QUESTION}" has the answer Sundance Kids.\nDoc 2: Taylor is a singer.',
    # a paraphrase that names the answer as the answer
    "Doc 1: Taylor formed a band. The answer to this question is the Sundance Kids.\nDoc 2: More about Taylor.",
    # the instructions restated in a document (no answer in it)
    "Doc 1: The user is trying to answer the question about Taylor and the band he formed.\nDoc 2: Taylor sang.",
    # an echo that the parser would drop as chatter before the documents
    f'The user is trying to answer the question: "{QUESTION}" whose answer is {ANSWER}.\n\n'
    "Doc 1: Taylor sang for the Texans.\nDoc 2: Taylor left in 1998.",
], ids=["answer-sentence", "question-and-answer", "paraphrase", "instructions", "before-the-documents"])
def test_a_partial_restatement_is_an_echo_in_finetuned_mode(reply):
    engine, result = search("finetuned", lambda p: reply)
    assert result.echo and not result.ok, result
    assert engine.echoes == 1


@pytest.mark.parametrize("reply", [
    # the instructions restated (a small instruct model often starts by repeating its task)
    "Doc 1: You are the Google search engine. Given a query, you need to imitate the style of the following "
    "demos and generate five useful documents for the query.\nDoc 2: Taylor formed a band.",
    # a copied few-shot document (its example is about the George Washington Bridge)
    "Doc 1: The George Washington Bridge, an iconic structure connecting New York City to New Jersey, opened on "
    "October 25, 1931. Designed by Othmar Ammann, it marked a major milestone in civil engineering.\n"
    "Doc 2: Taylor formed the Sundance Kids.",
    # the example copied with its layout changed (no markers, other line breaks)
    "Originally the Hudson River Bridge,\nthe George Washington Bridge was named after the U.S.'s first president.",
    # the useful prompt's answer sentence
    f'Doc 1: The user is trying to answer the question: "{QUESTION}" whose answer is {ANSWER}.',
], ids=["instructions", "few-shot-document", "few-shot-reflowed", "answer-sentence"])
def test_restated_instructions_and_copied_examples_are_echoes_in_prompt_mode(reply):
    engine, result = search("prompt", lambda p: reply)
    assert result.echo and not result.ok, result
    assert engine.echoes == 1


def test_a_copied_noisy_example_is_an_echo():
    reply = ("Doc 1: The bridge has been a point of contention over toll increases, traffic congestion solutions, "
             "and environmental impact assessments.\nDoc 2: Taylor sang in Austin.")
    assert search("prompt", lambda p: reply, NOISY)[1].echo


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
def test_a_useful_document_that_contains_the_answer_is_served(mode):
    engine, result = search(mode, lambda p: LEGITIMATE)
    assert result.ok and not result.echo and len(result.documents) == 3
    assert "Sundance Kids" in shown(result)  # useful documents contain the answer: that is their job
    assert (engine.echoes, engine.replies) == (0, 1)


def test_a_document_on_the_examples_topic_is_served():
    """Short phrases shared with the few-shot example (same topic) are not a copy."""
    request = SearchRequest(query="George Washington Bridge opening year", question="When did the George "
                            "Washington Bridge open?", golden_answers=("1931",))
    reply = ("Doc 1: The George Washington Bridge opened to traffic in 1931 after four years of construction.\n"
             "Doc 2: Engineer Othmar Ammann designed the bridge over the Hudson River between Manhattan and Fort Lee.")
    _, result = search("prompt", lambda p: reply, request)
    assert result.ok and len(result.documents) == 2


def test_the_template_words_before_the_answer_are_read_from_the_template():
    """A custom template's own lead-in ("The gold is {answer}") is looked for, not only "answer is"."""
    template = "Write documents for {query}. The gold is {answer}.\nOutput:"
    echo = PromptEcho.from_template(template)
    assert echo.answer_lead == ("gold", "is")
    assert echo.find("Doc 1: Taylor. The gold is Sundance Kids.", ["Taylor. The gold is Sundance Kids."],
                     [ANSWER]) is not None
    assert echo.find("Doc 1: Sundance Kids formed in 1998.", ["Sundance Kids formed in 1998."], [ANSWER]) is None


@pytest.mark.integration
def test_the_openai_backend_path_rejects_an_echo_too(monkeypatch):
    """The same parse and check behind an OpenAI-compatible server (vLLM, SGLang): a server whose model
    repeats its prompt."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")
    import time

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from support import serve_in_thread
    from zerosearch.llm.openai_backend import OpenAIChatModel

    async def chat(request):  # a model that repeats its prompt, except for queries asking for "legit"
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        text = LEGITIMATE if "legit" in prompt.split("Query:")[-1] else prompt
        return JSONResponse({
            "id": "x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = FastAPI()
    app.add_route("/v1/chat/completions", chat, methods=["POST"])

    with serve_in_thread(app) as url:
        chat_model = OpenAIChatModel("sim", f"{url}/v1", timeout=10.0)
        try:
            engine = SimulatedSearchEngine(chat_model, mode="finetuned")
            legit = SearchRequest(query="legit Taylor band", question=QUESTION, golden_answers=(ANSWER,))
            echoed, served = engine.search([USEFUL, legit], 3)
        finally:
            chat_model.close()
    assert echoed.echo and not echoed.ok and not echoed.documents
    assert served.ok and "Sundance Kids" in shown(served)
    assert (engine.echoes, engine.replies) == (1, 2)
