"""The multi-turn search rollout: batched generation, stops, observations, and the loss mask.

Each trajectory is ``prompt_ids`` + ``response_ids`` with a ``loss_mask`` the length of the response,
built *while appending*: 1 for every token the policy sampled, 0 for every token the environment
inserted (the ``<information>`` block with its tags, the corrective message). Nothing re-tokenises the
trajectory later and nothing reconstructs the mask from text.

One turn = one batched ``generate`` over the still-active trajectories, stopping at ``</search>`` /
``</answer>`` / EOS or the per-turn token budget. Rows with the same context (a prompt's rollouts at their
first turn) prefill it once (:func:`zerosearch.shared_prefix.shared_prefill`), and a later turn continues from
the KV cache the turn before left, running only the tokens the environment appended
(:mod:`zerosearch.turn_cache`; Search-R1 and the original re-encode the whole context at every turn). Then
every trajectory's action is parsed:

- ``answer``: done.
- ``search`` (turns < max_turns): the query joins one batched engine call for the whole turn; the
  useful/noisy flag of each call is drawn from the curriculum probability with the passed generator.
  The documents come back as ``\\n\\n<information>…</information>\\n\\n`` (mask 0). Documents are dropped
  from the end until the block fits ``max_obs_tokens`` (a single document longer than that is cut at a
  token boundary, :func:`fit_observation`), and the turn logs the documents as shown; if the block does
  not fit the context, the trajectory ends cleanly (``context_exhausted``) instead of being cut mid-block.
- anything else: the corrective message (mask 0) and the turn counts.
- After ``max_turns`` turns, one final turn in which only an answer counts.

What a generated turn does to a trajectory (trim at the stop, parse, the corrective message, the
observation, the budgets) lives in :class:`SearchEnvironment`, which works on one trajectory at a time and
knows no model: :class:`RolloutRunner` drives it with batched in-process ``generate`` calls, the verl agent
loop (:mod:`zerosearch.verl.agent_loop`) with one rollout-server request per turn.

Departures from the original: EOS without an action ends the trajectory (the original appended the
corrective message after the EOS); a search whose engine call failed ends the trajectory with status
``search_failed`` so the trainer can leave it out of the update (the original trained on
"No information available").
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from zerosearch.config import RolloutSettings
from zerosearch.curriculum import draw_noisy
from zerosearch.llm.sampling import plain_generation
from zerosearch.llm.seeded_sampling import RowSeededSampling, derive_seed
from zerosearch.llm.stopping import StopOnStrings
from zerosearch.padding import left_pad
from zerosearch.protocol import INVALID_ACTION_MESSAGE, STOP_STRINGS, parse_action
from zerosearch.runtime import autocast_context
from zerosearch.search.base import Document, SearchEngine, SearchRequest, SearchResult
from zerosearch.search.documents import DEFAULT_DOC_FORMAT, information_block
from zerosearch.shared_prefix import cache_keyword, shared_prefill, shares_cache
from zerosearch.turn_cache import TurnCache

# Trajectory statuses.
ANSWERED = "answered"
NO_ANSWER = "no_answer"  # final turn spent (or EOS) without an answer
CONTEXT_EXHAUSTED = "context_exhausted"
SEARCH_FAILED = "search_failed"


@dataclass
class Turn:
    """One generated turn and what the environment did with it."""

    action: str  # search | answer | invalid
    text: str
    n_tokens: int
    query: str | None = None
    documents: list[str] = field(default_factory=list)
    noisy: bool | None = None
    error: str | None = None

    @property
    def searched(self) -> bool:
        """The engine answered this turn's search (or a baseline's retrieval). A ``<search>`` written in the
        final turn, or ended by EOS, is never sent: its ``query`` stays None and it does not count."""
        return self.action in ("search", "retrieve") and self.query is not None and self.error is None


@dataclass
class Trajectory:
    """A question being answered. ``loss_mask[i]`` belongs to ``response_ids[i]``."""

    question: str
    golden_answers: tuple[str, ...]
    prompt_ids: list[int]
    group: int = 0
    response_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    status: str | None = None
    answer_text: str | None = None  # the text of the turn that answered
    response_text: str = ""  # decoded response, environment text included (for logging and reward)
    # when sampling (temperature > 0): this row's own seed, so that its samples do not depend on the rows it is
    # batched with (zerosearch.llm.seeded_sampling); None: draws from torch's global generator, as training does
    sample_seed: int | None = None

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def n_searches(self) -> int:
        """Searches the engine answered (see :attr:`Turn.searched`)."""
        return sum(1 for t in self.turns if t.searched)

    def append(self, ids: Sequence[int], mask_value: int, text: str) -> None:
        self.response_ids.extend(ids)
        self.loss_mask.extend([mask_value] * len(ids))
        self.response_text += text

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly record of the whole trajectory (for rollouts/step_N.jsonl)."""
        return {
            "question": self.question,
            "golden_answers": list(self.golden_answers),
            "status": self.status,
            "turns": [t.__dict__ for t in self.turns],
            "response": self.response_text,
            "response_tokens": len(self.response_ids),
            "policy_tokens": int(sum(self.loss_mask)),
        }


def logged_documents(docs: Sequence[Document]) -> list[str]:
    """The documents as a turn logs them (``rollouts/``, eval ``examples/``): ``(title) text`` or ``text``."""
    return [d.text if not d.title else f"({d.title}) {d.text}" for d in docs]


def fit_observation(docs: Sequence[Document], tokenizer: Any, max_obs_tokens: int,
                    doc_format: str = DEFAULT_DOC_FORMAT) -> tuple[str, list[int], list[Document]]:
    """The ``<information>`` block of ``docs`` fitted to ``max_obs_tokens``: its text, its token ids and
    the documents it shows.

    Whole documents are dropped from the end first; when the first document alone is longer than the
    budget, its text is cut at a token boundary to the longest prefix that fits, so a search that returned
    documents never shows an empty block (unless the budget cannot even hold the tags and the title). The
    rollout and the warm-up's demonstrations both insert exactly this, and log the documents it shows.
    """
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    docs = list(docs)
    while True:
        text = information_block(docs, doc_format)
        ids = encode(text)
        if len(ids) <= max_obs_tokens or len(docs) <= 1:
            break
        docs = docs[:-1]
    if len(ids) <= max_obs_tokens or not docs:
        return text, ids, docs
    body = encode(docs[0].text)

    def shortened(n: int) -> Document:
        return dataclasses.replace(docs[0], text=tokenizer.decode(body[:n], skip_special_tokens=True).strip())

    lo, hi = 0, len(body)  # the longest prefix (in tokens) whose block fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(information_block([shortened(mid)], doc_format))) <= max_obs_tokens:
            lo = mid
        else:
            hi = mid - 1
    shown = [shortened(lo)] if lo > 0 else []
    text = information_block(shown, doc_format)
    return text, encode(text), shown


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """The ids that end a trajectory: the tokenizer's EOS and the model's ``generation_config`` EOS ids
    (an instruct model often has two, e.g. ``<|im_end|>`` and ``<|endoftext|>``)."""
    ids: set[int] = set()
    for eos in (tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)):
        if eos is not None:
            ids |= set(eos if isinstance(eos, list) else [eos])
    return ids


class SearchEnvironment:
    """The environment's side of the protocol, one trajectory at a time: budgets, trimming a generated turn,
    parsing its action, the corrective message and the ``<information>`` block, each appended with the loss
    mask it gets (1 for the policy's tokens, 0 for the environment's).

    Whoever generates (a batched in-process ``generate``, a rollout server) calls, per turn and trajectory:
    :meth:`out_of_room` before generating, :meth:`turn_budget` for the token limit, :meth:`take_turn` with
    the generated ids, and for a pending search :meth:`requests` then :meth:`observe` with the engine's
    result.
    """

    def __init__(self, tokenizer: Any, settings: RolloutSettings, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.settings = settings
        self.eos_ids = set(eos_ids)
        self._invalid_ids = self._encode(INVALID_ACTION_MESSAGE)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def room(self, traj: Trajectory) -> int:
        """Tokens left in the context budget (``max_context_tokens`` minus prompt and response)."""
        return self.settings.max_context_tokens - len(traj.prompt_ids) - len(traj.response_ids)

    def out_of_room(self, traj: Trajectory) -> bool:
        """End ``traj`` (``context_exhausted``) when no token can be generated any more; True if it ended."""
        if not traj.done and self.room(traj) < 1:
            traj.status = CONTEXT_EXHAUSTED
        return traj.done

    def turn_budget(self, traj: Trajectory) -> int:
        """The most tokens the next turn may generate: ``max_turn_tokens``, or less near the context limit."""
        return min(self.settings.max_turn_tokens, self.room(traj))

    def take_turn(self, traj: Trajectory, ids: Sequence[int], final_turn: bool) -> Turn | None:
        """Append the turn the policy generated (``ids``, at most :meth:`turn_budget` of them; trimmed after
        the first EOS or stop string) with mask 1 and act on it: an answer ends the trajectory, so do the
        final turn and an EOS without an answer; an invalid action gets the corrective message (mask 0).

        Returns the turn when it asks for a search (its ``query`` set), else None.
        """
        ids, text, hit_eos = self.trim(ids)
        traj.append(ids, 1, text)
        action = parse_action(text)
        turn = Turn(action=action.kind, text=text, n_tokens=len(ids))
        traj.turns.append(turn)
        if action.kind == "answer":
            traj.answer_text, traj.status = text, ANSWERED
        elif final_turn or hit_eos:
            traj.status = NO_ANSWER
        elif action.kind == "search":
            turn.query = action.content
            return turn
        else:
            self.insert(traj, self._invalid_ids, INVALID_ACTION_MESSAGE)
        return None

    @staticmethod
    def requests(pending: Sequence[tuple[Trajectory, Turn]], noisy_flags: Sequence[bool]) -> list[SearchRequest]:
        """The engine requests of the pending searches, each with its useful/noisy flag."""
        return [
            SearchRequest(query=turn.query or "", question=traj.question,
                          golden_answers=tuple(traj.golden_answers), noisy=noisy)
            for (traj, turn), noisy in zip(pending, noisy_flags)
        ]

    def observe(self, traj: Trajectory, turn: Turn, result: SearchResult, noisy: bool | None) -> None:
        """Apply one search result: a failed call ends ``traj`` as ``search_failed``; otherwise the top-k
        documents go in as the ``<information>`` block (mask 0), fitted to ``max_obs_tokens``, and the turn
        logs the documents as shown. ``noisy``: the flag drawn for the call, None without a curriculum."""
        turn.noisy = noisy
        if not result.ok:
            turn.error = result.error
            traj.status = SEARCH_FAILED
            return
        docs = list(result.documents[: self.settings.topk])
        text, ids, shown = fit_observation(docs, self.tokenizer, self.settings.max_obs_tokens,
                                           self.settings.doc_format)
        turn.documents = logged_documents(shown)  # as shown, not as returned
        self.insert(traj, ids, text)

    def insert(self, traj: Trajectory, ids: list[int], text: str) -> None:
        """Append environment text (mask 0) if it fits with room to generate, else end the trajectory."""
        if len(ids) >= self.room(traj):
            traj.status = CONTEXT_EXHAUSTED
            return
        traj.append(ids, 0, text)

    def trim(self, ids: Sequence[int]) -> tuple[list[int], str, bool]:
        """Cut a generated row after its first EOS or stop string (generate pads finished rows after that,
        and a server may return tokens past the stop): ``(ids, text, ended with EOS)``."""
        ids = list(ids)
        hit_eos = False
        for i, tok in enumerate(ids):
            if tok in self.eos_ids:
                ids, hit_eos = ids[: i + 1], True
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if any(stop in text for stop in STOP_STRINGS):
            # smallest prefix that contains a stop string (containment is monotone in the length)
            lo, hi = 1, len(ids)
            while lo < hi:
                mid = (lo + hi) // 2
                if any(stop in self.tokenizer.decode(ids[:mid], skip_special_tokens=False) for stop in STOP_STRINGS):
                    hi = mid
                else:
                    lo = mid + 1
            ids, hit_eos = ids[:lo], False
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
        # A row that stopped by neither rule ran its whole budget, so generate never padded it.
        return ids, text, hit_eos


@dataclass
class RolloutStats:
    generate_seconds: float = 0.0
    search_seconds: float = 0.0
    search_calls: int = 0
    search_failures: int = 0  # echoes included
    search_echoes: int = 0  # failures where the simulator restated its prompt (SearchResult.echo)
    noisy_calls: int = 0


class RolloutRunner:
    """Runs rollouts for a policy against a search engine: batched in-process generation driving a
    :class:`SearchEnvironment`."""

    def __init__(self, model, tokenizer, engine: SearchEngine, settings: RolloutSettings, device: torch.device,
                 autocast: torch.dtype | None = None):
        self.model = model
        self.autocast = autocast  # e.g. torch.bfloat16: mixed-precision generation (see zerosearch.runtime)
        self.tokenizer = tokenizer
        self.engine = engine
        self.settings = settings
        self.device = device
        self.pad_id = tokenizer.pad_token_id
        self.env = SearchEnvironment(tokenizer, settings,
                                     eos_token_ids(tokenizer, getattr(model, "generation_config", None)))
        self._turn_cache: TurnCache | None = None  # the last turn's KV cache, within one run()

    # ------------------------------------------------------------------------------------------
    def run(self, trajectories: list[Trajectory], noise_probability: float | None = None,
            rng: np.random.Generator | None = None) -> RolloutStats:
        """Roll every trajectory to completion in place; returns timing and search counts.

        ``noise_probability``: the curriculum's p for this step, with the seeded ``rng`` each search's
        useful/noisy flag is drawn from (the simulated engine in training). Left out (None, the default)
        for an engine with no curriculum (a real one: evaluation, collection, training with
        ``engine.kind=real``): nothing is drawn, every request asks for useful documents, and each search
        turn logs ``noisy`` as None (null), never a ``false`` that no draw decided. Raises ValueError for a
        probability without a generator.
        """
        if noise_probability is not None and rng is None:
            raise ValueError("a noise probability needs the seeded generator its draws come from (rng=)")
        stats = RolloutStats()
        try:
            self._turn_rounds(trajectories, noise_probability, rng, stats)
        finally:
            self._turn_cache = None  # the cache is the rollout's largest tensor; scoring needs the memory
        return stats

    def _turn_rounds(self, trajectories: list[Trajectory], noise_probability: float | None,
                     rng: np.random.Generator | None, stats: RolloutStats) -> None:
        s = self.settings
        for turn_index in range(s.max_turns + 1):
            active = [t for t in trajectories if not self.env.out_of_room(t)]
            if not active:
                break
            final_turn = turn_index == s.max_turns
            t0 = time.perf_counter()
            generated = self._generate(active)
            stats.generate_seconds += time.perf_counter() - t0
            pending: list[tuple[Trajectory, Turn]] = []
            for traj, ids in zip(active, generated):
                turn = self.env.take_turn(traj, ids, final_turn)
                if turn is not None:
                    pending.append((traj, turn))
            if pending:
                t0 = time.perf_counter()
                self._search(pending, noise_probability, rng, stats)
                stats.search_seconds += time.perf_counter() - t0

    def _search(self, pending: list[tuple[Trajectory, Turn]], p: float | None, rng: np.random.Generator | None,
                stats: RolloutStats) -> None:
        noisy_flags = [False] * len(pending) if p is None else draw_noisy(rng, p, len(pending))
        requests = self.env.requests(pending, noisy_flags)
        results = self.engine.search(requests, self.settings.topk)
        if len(results) != len(requests):
            raise RuntimeError(f"engine {self.engine.name!r} returned {len(results)} results for {len(requests)} requests")
        stats.search_calls += len(requests)
        stats.noisy_calls += sum(noisy_flags)
        for (traj, turn), result, noisy in zip(pending, results, noisy_flags):
            self.env.observe(traj, turn, result, None if p is None else noisy)
            stats.search_failures += not result.ok
            stats.search_echoes += result.echo

    # ------------------------------------------------------------------------------------------
    def _generate(self, active: list[Trajectory]) -> list[list[int]]:
        """One turn for every active trajectory: its new token ids (at most its budget; the environment
        trims them at the first stop)."""
        s = self.settings
        size = s.batch_size or len(active)
        # the turn cache follows one batch from turn to turn: with several generate calls per turn, none is kept
        carry = s.carries_kv_cache and size >= len(active) and shares_cache(self.model)
        results: list[list[int]] = []
        for start in range(0, len(active), size):
            chunk = active[start : start + size]
            budgets = [self.env.turn_budget(t) for t in chunk]
            results.extend(self._generate_chunk(chunk, budgets, carry))
        return results

    @staticmethod
    def _row_seeded(chunk: Sequence[Trajectory]) -> bool:
        """Whether the rows carry their own sampling seeds (all or none of them may)."""
        seeded = [t.sample_seed is not None for t in chunk]
        if any(seeded) and not all(seeded):
            raise ValueError("a generation batch mixes rows with and without sample_seed; seed all or none")
        return all(seeded)

    @torch.no_grad()
    def _generate_chunk(self, chunk: list[Trajectory], budgets: list[int], carry: bool = False) -> list[list[int]]:
        rows = [t.prompt_ids + t.response_ids for t in chunk]
        turn_cache, self._turn_cache = self._turn_cache, None
        continued = turn_cache.continue_rows(chunk, rows, self.pad_id) if carry and turn_cache else None
        if continued is None:
            input_ids, attention = left_pad(rows, max(len(r) for r in rows), self.pad_id)
            input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        else:
            input_ids, attention, carried = continued
        width = input_ids.shape[1]
        max_new = max(1, max(budgets))
        sampling = self.settings.temperature > 0
        row_seeded = sampling and self._row_seeded(chunk)
        was_training = self.model.training
        self.model.eval()
        # plain_generation: the checkpoint's generation_config (repetition_penalty, top_k, ...) must not
        # reshape the distribution the trainer scores as softmax(logits / T)
        with autocast_context(self.device, self.autocast), plain_generation(self.model):
            if self.settings.kv_cache == "static":
                cache = {"cache_implementation": "static"}
            elif continued is not None:  # the turn before's cache: only the new tokens run
                cache = {cache_keyword(self.model): carried}
            else:  # a prompt's rollouts start from one context: prefill it once, not once per rollout
                prefilled = shared_prefill(self.model, input_ids, attention)
                cache = {} if prefilled is None else {cache_keyword(self.model): prefilled}
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new,
                # row-seeded sampling draws in its logits processor and lets generate take the argmax
                do_sample=sampling and not row_seeded,
                temperature=self.settings.temperature if sampling and not row_seeded else None,
                top_p=1.0 if sampling and not row_seeded else None,
                top_k=0 if sampling and not row_seeded else None,
                logits_processor=LogitsProcessorList([RowSeededSampling(
                    # a fresh stream per turn, keyed by where the turn starts: the same whatever the batch
                    [derive_seed(t.sample_seed, len(t.response_ids)) for t in chunk],
                    self.settings.temperature)]) if row_seeded else None,
                stopping_criteria=StoppingCriteriaList([StopOnStrings(self.tokenizer, width, STOP_STRINGS)]),
                pad_token_id=self.pad_id,
                use_cache=True,
                return_dict_in_generate=carry,  # generate's cache comes back only to be carried
                **cache,
            )
        if was_training:
            self.model.train()
        sequences = out.sequences if carry else out
        if carry:
            kept = getattr(out, "cache", None)  # ``past_key_values`` before transformers 5.2x
            if kept is None:
                kept = getattr(out, "past_key_values", None)
            self._turn_cache = TurnCache.after_generate(kept, chunk, attention, sequences)
        new = sequences[:, width:].tolist()
        return [ids[: max(budget, 0)] for ids, budget in zip(new, budgets)]
