"""The simulated search engine: an LLM writes the documents (ZeroSearch's training-time engine).

Each request becomes one chat conversation, as in the original (``llm_agent/generation.py``,
``search_simulate_sft`` / ``search_simulate_prompt`` / ``ask_llm``): an empty system message, then a
user message holding the simulation prompt. Two modes:

* ``"finetuned"`` (the original's ``simulate_sft``): the short prompt the published
  ``Simulation_LLM_*`` checkpoints were tuned on, ``prompts/simulator_finetuned.txt``; ``{kind}`` /
  ``{Kind}`` become useful/Useful or noisy/Noisy.
* ``"prompt"`` (the original's ``simulate_prompt``, for an off-the-shelf instruct model): the few-shot
  prompts ``prompts/simulator_prompt_useful.txt`` and ``simulator_prompt_noisy.txt``, byte-exact
  copies of the original's. As there, the *noisy* prompt does not tell the model the question or the
  answer, and its first line ends with a space.

The question and the *first* gold answer go into the prompt, as in the original
(``ground_truth[index][0]``). The original had no handling for a missing answer (it would raise an
IndexError in the middle of a rollout); here a request without a gold answer, for a template that
needs one, comes back as ``SearchResult(error=..., attempts=0)`` without a model call (counted, not
fatal: one bad dataset row must not stop a run). An empty question is rendered as the empty string.

Departures from the original, on purpose:

* All requests of a batch go to the chat model in one ``complete`` call (the backend batches or runs
  them concurrently), instead of one thread per query around a blocking client.
* Generation stops at ``Doc {topk+1}`` (a stop string, :func:`stop_strings`) instead of running to
  ``max_tokens`` and cutting there afterwards; the output is parsed into documents
  (:func:`parse_simulated_documents`, which keeps the first ``topk``) and re-rendered by the rollout,
  instead of being pasted in raw.
* A failed call is ``SearchResult(error=...)`` (the original retried forever, then trained on
  "No information available"). An output that parses to *zero* documents is an error too
  ("simulator returned no parseable documents"): an empty ``<information>`` block is not what the
  method trains on, so it is counted and that trajectory left out, like any other failed search.
* A reply that restates its prompt (the instructions, the few-shot example, or the gold answer *as the
  answer*: "... whose answer is Sundance Kids") is an error too, ``SearchResult(error=..., echo=True)``:
  parsed into documents it would hand the policy the answer (:mod:`zerosearch.search.echo`). The original
  pasted such a reply in. Counted in :attr:`SimulatedSearchEngine.echoes` and in the trainer's
  ``search_echoes`` metric, and the trajectory is left out of the update like any failed search.
"""

from __future__ import annotations

from typing import Sequence

from zerosearch.llm.base import ChatModel, Completion, Message
from zerosearch.prompts import constant_head, load_template, placeholders, render
from zerosearch.search.base import SearchRequest, SearchResult, check_topk
from zerosearch.search.documents import parse_simulated_documents
from zerosearch.search.echo import PromptEcho

__all__ = ["MODES", "SimulatedSearchEngine", "SimulatorPrompts", "stop_strings"]

# mode -> (template for useful documents, template for noisy documents)
MODES: dict[str, tuple[str, str]] = {
    "finetuned": ("simulator_finetuned", "simulator_finetuned"),
    "prompt": ("simulator_prompt_useful", "simulator_prompt_noisy"),
}
_KNOWN_FIELDS = {"kind", "Kind", "question", "answer", "query"}


def stop_strings(topk: int) -> list[str]:
    """Where a simulator's reply may stop: the start of document ``topk + 1`` (the original cut its output
    there after generating up to ``max_tokens``)."""
    return [f"Doc {topk + 1}"]


class SimulatorPrompts:
    """The conversations a simulation LLM is sent: a mode's templates (or overrides), checked, rendered per request.

    The simulated engine sends them; simulator tuning trains on them (the finetuned mode's prompt, then the real
    documents), so both render the same text without building an engine.

    Args:
        mode: ``"finetuned"`` (a tuned simulation LLM) or ``"prompt"`` (an instruct model, few-shot).
        useful_template / noisy_template: override a mode's templates with a built-in name or a file path;
            placeholders may be any of ``{query}`` (required), ``{question}``, ``{answer}``, ``{kind}``, ``{Kind}``.
    """

    def __init__(self, mode: str = "finetuned", *, useful_template: str | None = None,
                 noisy_template: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown simulator mode {mode!r}; choose one of {sorted(MODES)}")
        self.mode = mode
        default_useful, default_noisy = MODES[mode]
        self.templates = {
            False: load_template(useful_template or default_useful),
            True: load_template(noisy_template or default_noisy),
        }
        for noisy, template in self.templates.items():
            fields = placeholders(template)
            label = "noisy" if noisy else "useful"
            if "query" not in fields:
                raise ValueError(f"the {label} simulator template has no {{query}} placeholder")
            unknown = fields - _KNOWN_FIELDS
            if unknown:
                raise ValueError(
                    f"the {label} simulator template has unknown placeholder(s) {sorted(unknown)}; "
                    f"allowed: {sorted(_KNOWN_FIELDS)}"
                )

    def prompt_for(self, request: SearchRequest) -> str:
        """The user message for ``request`` (raises ValueError if it needs a missing answer)."""
        template = self.templates[request.noisy]
        wanted = placeholders(template)
        kind = "noisy" if request.noisy else "useful"
        answer = request.golden_answers[0] if request.golden_answers else None
        if "answer" in wanted and answer is None:
            raise ValueError(
                "the simulator prompt needs a gold answer but the request has none "
                f"(query {request.query!r}); give SearchRequest.golden_answers"
            )
        fields = {
            "kind": kind,
            "Kind": kind.capitalize(),
            "question": request.question,
            "answer": answer,
            "query": request.query,
        }
        return render(template, **{k: v for k, v in fields.items() if k in wanted})

    def shared_start(self, noisy: bool) -> str:
        """The text every user message of this kind begins with: its template up to the first per-request
        placeholder (``{question}``, ``{answer}`` or ``{query}``), ``{kind}``/``{Kind}`` filled in. An in-process
        chat model runs its tokens once and reuses their KV cache (:mod:`zerosearch.llm.prefix_cache`)."""
        kind = "noisy" if noisy else "useful"
        return constant_head(self.templates[noisy], kind=kind, Kind=kind.capitalize())

    def conversation_for(self, request: SearchRequest) -> list[Message]:
        """The chat sent for ``request``: an empty system message, then the prompt, as the original."""
        return [
            {"role": "system", "content": ""},
            {"role": "user", "content": self.prompt_for(request)},
        ]


class SimulatedSearchEngine:
    """A :class:`~zerosearch.search.base.SearchEngine` whose documents are written by a chat model.

    Args:
        chat_model: any :class:`~zerosearch.llm.base.ChatModel` (in-process or HTTP).
        mode: ``"finetuned"`` (a tuned simulation LLM) or ``"prompt"`` (an instruct model, few-shot).
        max_tokens: generation budget per request (the original: 600).
        temperature: sampling temperature (the original: 0.8 in training).
        useful_template / noisy_template: override a mode's templates (see :class:`SimulatorPrompts`).
    """

    name = "simulated"

    def __init__(
        self,
        chat_model: ChatModel,
        mode: str = "finetuned",
        max_tokens: int = 600,
        temperature: float = 0.8,
        *,
        useful_template: str | None = None,
        noisy_template: str | None = None,
    ) -> None:
        self.prompts = SimulatorPrompts(mode, useful_template=useful_template, noisy_template=noisy_template)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.chat_model = chat_model
        self.mode = mode
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.templates = self.prompts.templates
        # what a reply must not restate, per template (useful / noisy)
        self._echo = {noisy: PromptEcho.from_template(t, "noisy" if noisy else "useful")
                      for noisy, t in self.templates.items()}
        self.replies = 0  # model replies judged (the calls that came back)
        self.echoes = 0  # of which restated the prompt (errors, never served)

    def prompt_for(self, request: SearchRequest) -> str:
        """The user message for ``request`` (:meth:`SimulatorPrompts.prompt_for`)."""
        return self.prompts.prompt_for(request)

    def shared_start(self, noisy: bool) -> str:
        """The constant start of this kind's user messages (:meth:`SimulatorPrompts.shared_start`)."""
        return self.prompts.shared_start(noisy)

    def conversation_for(self, request: SearchRequest) -> list[Message]:
        """The chat sent for ``request`` (:meth:`SimulatorPrompts.conversation_for`)."""
        return self.prompts.conversation_for(request)

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        """Simulate ``topk`` documents per request; one result per request, in order."""
        check_topk(topk)
        results: list[SearchResult | None] = [None] * len(requests)
        conversations: list[list[Message]] = []
        asked: list[int] = []  # indices of the requests that go to the model
        for i, request in enumerate(requests):
            try:
                conversations.append(self.conversation_for(request))
            except ValueError as exc:
                results[i] = SearchResult(error=str(exc), noisy=request.noisy, attempts=0)
                continue
            asked.append(i)
        if conversations:
            # the prompts' constant start, for a chat model that can run it once (the in-process one)
            shared = ({"prefixes": [self.shared_start(requests[i].noisy) for i in asked]}
                      if getattr(self.chat_model, "takes_prefixes", False) else {})
            completions = self.chat_model.complete(
                conversations, max_tokens=self.max_tokens, temperature=self.temperature,
                stop=stop_strings(topk), **shared,
            )
            if len(completions) != len(conversations):
                raise RuntimeError(
                    f"chat model {getattr(self.chat_model, 'name', '?')} returned "
                    f"{len(completions)} completions for {len(conversations)} conversations"
                )
            for i, completion in zip(asked, completions):
                results[i] = self._result(requests[i], completion, topk)
        done = [r for r in results if r is not None]
        assert len(done) == len(requests)  # every request was answered, from the model or not
        return done

    def _result(self, request: SearchRequest, completion: Completion, topk: int) -> SearchResult:
        if not completion.ok:
            return SearchResult(
                error=f"simulator call failed: {completion.error}",
                noisy=request.noisy,
                attempts=completion.attempts,
            )
        self.replies += 1
        documents = parse_simulated_documents(completion.text, topk)
        echo = self._echo[request.noisy].find(completion.text, [d.text for d in documents], request.golden_answers)
        if echo is not None:
            self.echoes += 1
            return SearchResult(error=f"simulator echoed its prompt: {echo}", noisy=request.noisy,
                                attempts=completion.attempts, echo=True)
        if not documents:
            preview = completion.text[:200]
            return SearchResult(
                error=f"simulator returned no parseable documents (output: {preview!r})",
                noisy=request.noisy,
                attempts=completion.attempts,
            )
        return SearchResult(documents=documents, noisy=request.noisy, attempts=completion.attempts)
