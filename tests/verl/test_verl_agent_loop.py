"""The zerosearch agent loop, run by verl's own AgentLoopWorker (verl 0.9) on CPU.

verl's worker is built from verl's own trainer config (``ppo_trainer.yaml``, composed with hydra as
``main_ppo`` does), loads the loop from an agent loop config file through its registry, and post-processes
the ``AgentLoopOutput`` into its padded batch. Only the rollout server is replaced: by an object shaped like
verl's ``LLMServerClient`` (``async generate(request_id, prompt_ids=, sampling_params=) -> TokenOutput``)
that generates with a real tiny model in this process, exactly as zerosearch's ``RolloutRunner`` does, or
replays a script.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verl.protocol", reason="verl is not installed (bash scripts/setup.sh --with-verl)")

import torch  # noqa: E402
import yaml  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, _agent_loop_registry  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402
from verl.utils.ray_utils import get_event_loop  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from support import SHORT_TEMPLATE, FixedDocumentsEngine  # noqa: E402
from zerosearch.curriculum import Curriculum, draw_noisy  # noqa: E402
from zerosearch.data import load_qa_file, policy_prompt  # noqa: E402
from zerosearch.llm.sampling import plain_generation  # noqa: E402
from zerosearch.llm.stopping import StopOnStrings  # noqa: E402
from zerosearch.models.tiny import tiny_model_dir  # noqa: E402
from zerosearch.policy import encode_prompt  # noqa: E402
from zerosearch.protocol import INVALID_ACTION_MESSAGE  # noqa: E402
from zerosearch.rewards import answer_metrics, extract_answer  # noqa: E402
from zerosearch.rollout import RolloutRunner, RolloutSettings, Trajectory  # noqa: E402
from zerosearch.search.base import Document, SearchResult  # noqa: E402
from zerosearch.search.documents import information_block  # noqa: E402
from zerosearch.verl import (  # noqa: E402
    AGENT_NAME, ANSWER_TURN_KEY, NOISE_PROBABILITY_KEY, NOISY_SEARCHES_KEY, SEARCH_FAILED_KEY,
    SEARCH_FAILURES_KEY, SEARCHES_KEY, STATUS_KEY, STEP_KEY,
)
import zerosearch.verl.agent_loop  # noqa: E402,F401  (importing it registers the loop, as verl's own loops do)
from zerosearch.verl.export import export_verl  # noqa: E402
from zerosearch.verl.reward import compute_score  # noqa: E402

torch.set_num_threads(1)

DOCS = ["the sky is blue", "grass is green", "bananas are yellow"]
QUESTIONS = {"what colour is the sky": "blue", "what colour is grass": "green", "what colour is a banana": "yellow"}
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- servers
class InProcessServer:
    """verl's LLMServerClient, shaped: generates with a model in this process, one request at a time, the
    way RolloutRunner generates a batch of one (same sampling, same stop strings, same RNG use)."""

    def __init__(self, model, tokenizer, weight_version: int = 0):
        self.model, self.tokenizer, self.weight_version = model, tokenizer, weight_version

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        width = len(prompt_ids)
        temperature = sampling_params.get("temperature", 1.0)
        sampling = temperature > 0
        self.model.eval()
        with torch.no_grad(), plain_generation(self.model):
            out = self.model.generate(
                input_ids=torch.tensor([prompt_ids]), attention_mask=torch.ones((1, width), dtype=torch.long),
                max_new_tokens=max(1, sampling_params["max_tokens"]), do_sample=sampling,
                temperature=temperature if sampling else None, top_p=1.0 if sampling else None,
                top_k=0 if sampling else None, pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
                stopping_criteria=StoppingCriteriaList([StopOnStrings(self.tokenizer, width, sampling_params["stop"])]))
        return TokenOutput(token_ids=out[0, width:].tolist(), extra_fields={"global_steps": self.weight_version})


class ScriptedServer:
    """verl's LLMServerClient, shaped: each turn's text comes from ``script(question, turn_index)``; it
    returns ``extra`` tokens past the budget and the stop, as a careless server might, and log-probs."""

    def __init__(self, tokenizer, script, weight_version: int = 0, extra: str = " trailing junk"):
        self.tokenizer, self.script, self.weight_version, self.extra = tokenizer, script, weight_version, extra

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        text = self.tokenizer.decode(prompt_ids)  # (the rows here use the short prompt, free of protocol tags)
        question = text.split("Question: ", 1)[1].split("?")[0] if "Question: " in text else ""
        turn = text.count("</information>") + text.count("Let me try again.")
        ids = self.tokenizer(self.script(question, turn) + self.extra, add_special_tokens=False)["input_ids"]
        return TokenOutput(token_ids=ids, log_probs=[-0.5 - i for i in range(len(ids))],
                           extra_fields={"global_steps": self.weight_version})


# ---------------------------------------------------------------------------------------------- engines
class RecordingEngine:
    """Fixed documents; every request of every instance is logged (verl builds a loop per trajectory)."""

    name = "simulated"
    log: list = []

    def __init__(self, documents=tuple(DOCS), fail: bool = False):
        self.engine = FixedDocumentsEngine(list(documents))
        self.fail = fail

    def search(self, requests, topk):
        RecordingEngine.log.extend(requests)
        if self.fail:
            return [SearchResult(error="connection refused (test)", noisy=r.noisy) for r in requests]
        return self.engine.search(requests, topk)


# ---------------------------------------------------------------------------------------------- verl setup
def verl_config(model_dir: Path, loops_file: Path, response_length: int = 512, log_probs: bool = False):
    """verl's own PPO trainer config, composed as main_ppo composes it, with our agent loop file."""
    import verl

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}",
            "actor_rollout_ref.rollout.name=vllm",  # the server is ours; verl only reads the name
            "actor_rollout_ref.rollout.prompt_length=1024",
            f"actor_rollout_ref.rollout.response_length={response_length}",
            f"actor_rollout_ref.rollout.calculate_log_probs={log_probs}",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loops_file}",
        ])


def make_worker(tmp_path: Path, model_dir: Path, server, name: str, engine: dict, **settings) -> AgentLoopWorker:
    """verl's AgentLoopWorker (the class verl's AgentLoopManager runs as a Ray actor), in this process."""
    response_length = settings.pop("response_length", 512)
    log_probs = settings.pop("log_probs", False)
    loops = tmp_path / f"{name}.yaml"
    entry = {"name": name, "_target_": "zerosearch.verl.agent_loop.ZeroSearchAgentLoop", "engine": engine,
             "max_turns": 2, "topk": 2, "max_turn_tokens": 24, "total_steps": 10, **settings}
    loops.write_text(yaml.safe_dump([entry]))
    return AgentLoopWorker(verl_config(model_dir, loops, response_length, log_probs), llm_client=server)


def engine_entry(**kwargs) -> dict:
    return {"_target_": f"{__name__}.RecordingEngine", **kwargs}


def batch_of(rows: list[dict], agent_name: str, template: str | None = SHORT_TEMPLATE, step: int = 1) -> DataProto:
    """A batch as verl's trainer hands it to the rollout: the dataset's columns, one row per trajectory."""
    n = len(rows)
    non_tensor = {
        "raw_prompt": [[{"role": "user", "content": policy_prompt(r["question"], template)}] for r in rows],
        "extra_info": [{"index": i, "question": r["question"], "golden_answers": [r["answer"]]} for i, r in enumerate(rows)],
        "reward_model": [{"style": "rule", "ground_truth": {"target": [r["answer"]]}} for r in rows],
        "data_source": ["test"] * n,
        "agent_name": [agent_name] * n,
        "index": list(range(n)),
        "priority": list(range(n)),  # verl's AgentLoopManager numbers a batch's samples so
    }
    return DataProto.from_dict(tensors={"dummy_tensor": torch.zeros((n, 1), dtype=torch.uint8)},
                               non_tensors={k: np.array(v, dtype=object) for k, v in non_tensor.items()},
                               meta_info={"global_steps": step, "validate": False})


def run(worker: AgentLoopWorker, batch: DataProto) -> DataProto:
    """``worker.generate_sequences(batch)``, as verl's AgentLoopManager awaits it (one event loop)."""
    return get_event_loop().run_until_complete(worker.generate_sequences(batch))


def unpadded(out: DataProto, i: int) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, response ids, response mask) of row ``i`` without verl's padding."""
    width = out.batch["prompts"].shape[1]
    attention = out.batch["attention_mask"][i]
    n_prompt, n_response = int(attention[:width].sum()), int(attention[width:].sum())
    prompt = out.batch["prompts"][i, width - n_prompt:].tolist()
    response = out.batch["responses"][i, :n_response].tolist()
    mask = out.batch["response_mask"][i].tolist()
    assert not any(mask[n_response:]), "padding is never trained on"
    return prompt, response, mask[:n_response]


def zerosearch_rollout(model, tok, question, answer, engine, seed, template=SHORT_TEMPLATE, **settings):
    """The same trajectory by zerosearch's own RolloutRunner (a batch of one)."""
    settings = {"max_turns": 2, "topk": 2, "max_turn_tokens": 24, **settings}
    runner = RolloutRunner(model, tok, engine, RolloutSettings(**settings), torch.device("cpu"))
    traj = Trajectory(question, (answer,), encode_prompt(tok, policy_prompt(question, template), chat=True))
    torch.manual_seed(seed)
    runner.run([traj], 0.0, np.random.default_rng(0))
    return traj


# ---------------------------------------------------------------------------------------------- tests
def test_registered_in_verls_registry_under_its_documented_name():
    assert _agent_loop_registry[AGENT_NAME] == {"_target_": "zerosearch.verl.agent_loop.ZeroSearchAgentLoop"}
    shipped = yaml.safe_load((REPO / "configs" / "verl" / "agent_loops.yaml").read_text())
    assert {e["name"] for e in shipped} >= {AGENT_NAME}
    assert {e["_target_"] for e in shipped} == {"zerosearch.verl.agent_loop.ZeroSearchAgentLoop"}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_same_tokens_and_mask_as_zerosearchs_rollout(tmp_path, searcher_model, seed):
    """A sampled trajectory through verl (its worker, registry, output type and padding) is zerosearch's own
    trajectory for the same seed: response_ids and response_mask equal response_ids and loss_mask, token by
    token; and the reward verl computes from it is the reward zerosearch's trainer computes."""
    tok = AutoTokenizer.from_pretrained(searcher_model)
    model = AutoModelForCausalLM.from_pretrained(searcher_model)
    question = list(QUESTIONS)[seed % 3]
    expected = zerosearch_rollout(model, tok, question, QUESTIONS[question], FixedDocumentsEngine(DOCS), seed)
    assert expected.turns[0].action == "search" and expected.turns[0].documents  # the search path is exercised

    worker = make_worker(tmp_path, searcher_model, InProcessServer(model, tok), "zs_same", engine_entry())
    torch.manual_seed(seed)
    out = run(worker, batch_of([{"question": question, "answer": QUESTIONS[question]}], "zs_same"))
    prompt, response, mask = unpadded(out, 0)
    assert prompt == expected.prompt_ids
    assert response == expected.response_ids
    assert mask == expected.loss_mask
    assert out.non_tensor_batch[STATUS_KEY][0] == expected.status
    answer_turn = out.non_tensor_batch[ANSWER_TURN_KEY][0]
    assert answer_turn == expected.answer_text
    fields = {k: out.non_tensor_batch[k][0] for k in (ANSWER_TURN_KEY, "tool_call_counts")}
    scored = compute_score("test", tok.decode(response, skip_special_tokens=True), {"target": [QUESTIONS[question]]},
                           fields)
    assert scored["score"] == answer_metrics(
        extract_answer(expected.answer_text) if expected.answer_text else None, [QUESTIONS[question]])["f1"]
    assert fields["tool_call_counts"] == sum(t.action == "search" and bool(t.documents) for t in expected.turns)


def test_export_to_rlhf_dataset_to_agent_loop_matches_zerosearch(tmp_path):
    """The whole data path on an untrained tiny model (invalid actions, corrective messages, the forced last
    turn, cut turns): export-verl -> verl's RLHFDataset and collate_fn -> the agent loop, vs RolloutRunner."""
    model_dir = Path(tiny_model_dir())
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(f'{{"id": "{i}", "question": "{q}", "golden_answers": ["{a}"]}}\n'
                          for i, (q, a) in enumerate(QUESTIONS.items())))
    path, _ = export_verl([qa], tmp_path / "verl", agent_name="zs_export")
    dataset = RLHFDataset([str(path)], tok, {"max_prompt_length": 1024, "cache_dir": str(tmp_path / "c"),
                                              "filter_overlong_prompts_workers": 1})
    worker = make_worker(tmp_path, model_dir, InProcessServer(model, tok), "zs_export", engine_entry(),
                         max_turn_tokens=16)
    for seed, row in enumerate(load_qa_file(qa)):
        expected = zerosearch_rollout(model, tok, row.question, row.golden_answers[0], FixedDocumentsEngine(DOCS),
                                      seed, template=None, max_turn_tokens=16)
        batch = DataProto.from_single_dict(collate_fn([dataset[seed]]), meta_info={"global_steps": 1})
        torch.manual_seed(seed)
        out = run(worker, batch)
        prompt, response, mask = unpadded(out, 0)
        assert (prompt, response, mask) == (expected.prompt_ids, expected.response_ids, expected.loss_mask)
        assert [t.action for t in expected.turns].count("invalid") >= 1  # the corrective path was taken


def test_invalid_action_search_and_answer_token_by_token(tmp_path):
    """Scripted turns: the policy's tokens have mask 1, the documents and the corrective message mask 0;
    tokens a server returns past the stop are cut; the server's log-probs sit at the policy's tokens."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    turns = ["<think> look </think> <search> sky colour </search>", "hmm", "<think> ok </think> <answer> blue </answer>"]
    server = ScriptedServer(tok, lambda question, k: turns[k])
    worker = make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_scripted", engine_entry(), max_turns=3,
                         max_turn_tokens=64, log_probs=True)
    out = run(worker, batch_of([{"question": "what colour is the sky", "answer": "blue"}], "zs_scripted"))
    _, response, mask = unpadded(out, 0)
    # the server appends " trailing junk" to every turn: cut after a stop, kept where there is none
    pieces = [(turns[0], 1), (information_block([Document(d) for d in DOCS[:2]]), 0), (turns[1] + " trailing junk", 1),
              (INVALID_ACTION_MESSAGE, 0), (turns[2], 1)]
    expected_ids = [i for text, _ in pieces for i in tok(text, add_special_tokens=False)["input_ids"]]
    expected_mask = [m for text, m in pieces for _ in tok(text, add_special_tokens=False)["input_ids"]]
    assert response == expected_ids and mask == expected_mask
    logprobs = out.batch["rollout_log_probs"][0, :len(mask)].tolist()
    assert all((lp != 0.0) == bool(m) for lp, m in zip(logprobs, mask))
    assert out.non_tensor_batch[STATUS_KEY][0] == "answered"
    assert out.non_tensor_batch["__num_turns__"][0] == 6  # prompt + 3 policy turns + 2 insertions


def test_max_turns_then_a_forced_answer_and_the_budgets(tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    always_search = ScriptedServer(tok, lambda q, k: "<search> more </search>")
    worker = make_worker(tmp_path, Path(tiny_model_dir()), always_search, "zs_turns", engine_entry(), max_turns=2)
    out = run(worker, batch_of([{"question": "q one", "answer": "a"}], "zs_turns"))
    assert out.non_tensor_batch[STATUS_KEY][0] == "no_answer"  # the third turn had to answer and did not
    assert out.non_tensor_batch["tool_call_counts"][0] == 2  # its search was not executed
    _, response, mask = unpadded(out, 0)
    assert tok.decode(response).count("<information>") == 2

    # a server that ignores max_tokens: every turn is cut to max_turn_tokens, the response to verl's
    # response_length (the context budget), so verl never has to truncate
    rambler = ScriptedServer(tok, lambda q, k: "word " * 200, extra="")
    worker = make_worker(tmp_path, Path(tiny_model_dir()), rambler, "zs_budget", engine_entry(), max_turn_tokens=40,
                         response_length=100)
    out = run(worker, batch_of([{"question": "q two", "answer": "a"}], "zs_budget"))
    _, response, mask = unpadded(out, 0)
    assert len(response) <= 100
    policy_runs = "".join(map(str, mask)).split("0")
    assert all(len(r) <= 40 for r in policy_runs)
    assert out.non_tensor_batch[STATUS_KEY][0] == "context_exhausted"


@pytest.mark.parametrize("weights", [1, 8])
def test_noise_draw_follows_the_curriculum_at_verls_step(tmp_path, weights):
    """The rollout server holds the weights of step ``weights``: the rollout is for step weights + 1, each
    search is noisy with the curriculum's p there, drawn from the documented seed, and the simulator is
    asked for exactly those kinds of documents."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    server = ScriptedServer(tok, lambda q, k: "<search> x </search>" if k == 0 else "<answer> a </answer>",
                            weight_version=weights)
    curriculum = {"start": 0.0, "end": 1.0, "base": 4.0}
    worker = make_worker(tmp_path, Path(tiny_model_dir()), server, f"zs_noise{weights}", engine_entry(),
                         curriculum=curriculum, total_steps=10, seed=7)
    rows = [{"question": f"question {i}", "answer": "a"} for i in range(200)]
    RecordingEngine.log.clear()
    out = run(worker, batch_of(rows, f"zs_noise{weights}"))
    step = weights + 1
    p = Curriculum(**curriculum).probability(step, 10)
    assert set(out.non_tensor_batch[STEP_KEY]) == {step}
    assert set(out.non_tensor_batch[NOISE_PROBABILITY_KEY]) == {p}
    drawn = [draw_noisy(np.random.default_rng([7, step, i, i]), p, 1)[0] for i in range(len(rows))]
    assert list(out.non_tensor_batch[NOISY_SEARCHES_KEY]) == [int(d) for d in drawn]
    asked = {r.question: r.noisy for r in RecordingEngine.log}
    assert [asked[f"question {i}"] for i in range(len(rows))] == drawn
    assert abs(sum(drawn) - p * len(rows)) < 4 * (p * (1 - p) * len(rows)) ** 0.5 + 1
    # a real engine draws nothing
    worker = make_worker(tmp_path, Path(tiny_model_dir()), server, f"zs_real{weights}", engine_entry(),
                         engine_kind="real")
    RecordingEngine.log.clear()
    out = run(worker, batch_of(rows[:20], f"zs_real{weights}"))
    assert set(out.non_tensor_batch[NOISE_PROBABILITY_KEY]) == {None}
    assert not any(r.noisy for r in RecordingEngine.log)


def test_a_failed_search_is_counted_and_does_not_train(tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    server = ScriptedServer(tok, lambda q, k: "<search> x </search>" if k == 0 else "<answer> a </answer>")
    worker = make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_fail", engine_entry(fail=True))
    out = run(worker, batch_of([{"question": "q", "answer": "a"}] * 3, "zs_fail"))
    assert list(out.non_tensor_batch[STATUS_KEY]) == ["search_failed"] * 3
    assert list(out.non_tensor_batch[SEARCH_FAILED_KEY]) == [True] * 3
    assert list(out.non_tensor_batch[SEARCH_FAILURES_KEY]) == [1] * 3
    assert [m["search_failures"] for m in out.meta_info["metrics"]] == [1] * 3  # the output's metrics
    assert out.batch["response_mask"].sum() == 0  # not one token of these trajectories trains
    assert out.batch["attention_mask"][:, out.batch["prompts"].shape[1]:].sum() > 0  # the search turn is there


def test_missing_settings_are_errors_that_say_where_to_set_them(tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    server = ScriptedServer(tok, lambda q, k: "<answer> a </answer>")
    loops = tmp_path / "bare.yaml"
    loops.write_text(yaml.safe_dump([{"name": "zs_no_engine", "_target_": "zerosearch.verl.agent_loop.ZeroSearchAgentLoop"}]))
    worker = AgentLoopWorker(verl_config(Path(tiny_model_dir()), loops), llm_client=server)
    with pytest.raises(InstantiationException, match="has no engine"):  # hydra wraps our ValueError
        run(worker, batch_of([{"question": "q", "answer": "a"}], "zs_no_engine"))
    with pytest.raises(InstantiationException, match=r"unknown setting\(s\) max_turn \(did you mean max_turns"):
        run(make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_typo", engine_entry(), max_turn=3),
            batch_of([{"question": "q", "answer": "a"}], "zs_typo"))
    with pytest.raises(InstantiationException, match="needs total_steps"):
        run(make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_no_steps", engine_entry(), total_steps=None),
            batch_of([{"question": "q", "answer": "a"}], "zs_no_steps"))


def test_an_engine_spec_decides_whether_the_curriculum_draws(tmp_path):
    """Without engine_kind, a ``simulated:`` spec draws useful/noisy from the curriculum (the factory's
    engine_kind reads the spec) and any other spec draws nothing."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    server = ScriptedServer(tok, lambda q, k: "<search> x </search>" if k == 0 else "<answer> a </answer>")
    rows = [{"question": "q", "answer": "a"}] * 2
    # the tiny model as the simulator: whatever it writes (parsed or not), the draw came first
    simulated = make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_sim_spec", "simulated:zerosearch:tiny",
                            engine_options={"mode": "prompt", "max_tokens": 8})
    out = run(simulated, batch_of(rows, "zs_sim_spec"))
    assert set(out.non_tensor_batch[NOISE_PROBABILITY_KEY]) == {Curriculum().probability(1, 10)}
    real = make_worker(tmp_path, Path(tiny_model_dir()), server, "zs_real_spec", "example")
    out = run(real, batch_of(rows, "zs_real_spec"))
    assert set(out.non_tensor_batch[NOISE_PROBABILITY_KEY]) == {None}
    assert list(out.non_tensor_batch[SEARCHES_KEY]) == [1, 1]
