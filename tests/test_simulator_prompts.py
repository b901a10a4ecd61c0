"""The simulation prompts are the published formats, byte for byte.

The fine-tuned template must reproduce what the ``Simulation_LLM_*`` checkpoints were tuned on
(METHOD.md, "Simulation prompts"; the original's ``search_simulate_sft``), including the newline after
"Output:" that the original's f-string ends with. The prompt-mode templates are the original's
``search_simulate_prompt`` few-shot prompts, pinned by hash (they are long).
"""

from __future__ import annotations

import dataclasses
import hashlib

from zerosearch.prompts import load_template, placeholders, render
from zerosearch.search.base import SearchRequest
from zerosearch.search.simulated import SimulatedSearchEngine

FIELDS = dict(
    question="when did the george washington bridge open?",
    answer="October 25, 1931",
    query="George Washington Bridge opening year",
)

USEFUL = (
    "You are the Google search engine.\n"
    "Given a query, you need to generate five useful documents for the query.\n"
    "\n"
    'The user is trying to answer the question: "when did the george washington bridge open?" '
    "whose answer is October 25, 1931.\n"
    "Each document should contain about 30 words, and these documents should contain useful information.\n"
    "\n"
    "Query: George Washington Bridge opening year\n"
    "Useful Output:\n"
)
NOISY = USEFUL.replace("five useful", "five noisy").replace(
    "useful information", "noisy information"
).replace("Useful Output:", "Noisy Output:")


def test_finetuned_template_useful_byte_exact():
    template = load_template("simulator_finetuned")
    assert placeholders(template) == {"kind", "Kind", "question", "answer", "query"}
    assert render(template, kind="useful", Kind="Useful", **FIELDS) == USEFUL


def test_finetuned_template_noisy_byte_exact():
    template = load_template("simulator_finetuned")
    assert render(template, kind="noisy", Kind="Noisy", **FIELDS) == NOISY
    assert NOISY.count("noisy") == 2 and "Noisy Output:\n" in NOISY


def _sha(name: str) -> str:
    return hashlib.sha256(load_template(name).encode("utf-8")).hexdigest()


def test_prompt_mode_templates_pinned():
    assert _sha("simulator_prompt_useful") == (
        "7a4846d5700dd4ba9f286dc8a20a78400b174780dfe1c5c81a642e5ddb13240b"
    )
    assert _sha("simulator_prompt_noisy") == (
        "0fe0d8e1bf44444812cd95dcddf257f4d9fb7ff77763e201e424501d68e39246"
    )
    assert _sha("simulator_finetuned") == (
        "53efcfc92465d8f2d7e6fe716df331c6f335dd64fe667826c4622400969d923c"
    )


def test_prompt_mode_templates_shape():
    useful = load_template("simulator_prompt_useful")
    noisy = load_template("simulator_prompt_noisy")
    assert placeholders(useful) == {"question", "answer", "query"}
    # As in the original, the noisy few-shot prompt is not told the question or the answer.
    assert placeholders(noisy) == {"query"}
    assert noisy.startswith("You are the Google search engine. \n")  # trailing space, as the original
    for template, kind in [(useful, "Useful"), (noisy, "Noisy")]:
        assert "Query: George Washington Bridge opening year\n" in template
        assert template.count("\nDoc ") == 5
        assert "You must directly output the English documents and not output any other texts.\n" in template
        assert template.endswith(f"Query: {{query}}\n{kind} Output:\n")


def test_engine_renders_the_templates():
    class Never:
        name = "never"

        def complete(self, conversations, *, max_tokens, temperature, stop=None):  # pragma: no cover
            raise AssertionError("not called")

    request = SearchRequest(
        query=FIELDS["query"], question=FIELDS["question"], golden_answers=(FIELDS["answer"], "1931")
    )
    engine = SimulatedSearchEngine(Never())
    assert engine.conversation_for(request) == [
        {"role": "system", "content": ""},
        {"role": "user", "content": USEFUL},
    ]
    noisy = dataclasses.replace(request, noisy=True)
    assert engine.prompt_for(noisy) == NOISY

    prompt_engine = SimulatedSearchEngine(Never(), mode="prompt")
    useful_prompt = prompt_engine.prompt_for(request)
    assert useful_prompt.endswith(
        'The user is trying to answer the question: "when did the george washington bridge open?" '
        "whose answer is October 25, 1931.\n"
        "You should generate documents that can help the user find the answer.\n"
        "Each document should contain about 30 words.\n"
        "You must directly output the English documents and not output any other texts.\n\n"
        "Query: George Washington Bridge opening year\nUseful Output:\n"
    )
    assert prompt_engine.prompt_for(noisy).endswith(
        "Query: George Washington Bridge opening year\nNoisy Output:\n"
    )
