"""The verl reward function is zerosearch.rewards: loaded and called the way verl 0.9 does it.

verl loads it with ``get_custom_reward_fn`` (``verl/trainer/ppo/reward.py``) and calls it from its
``NaiveRewardManager`` (``verl/experimental/reward_loop/reward_manager/naive.py``) with the decoded response;
these tests go through both and compare with zerosearch's own scoring of the same answer.
"""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("verl.protocol", reason="verl is not installed (bash scripts/setup.sh --with-verl)")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402

from zerosearch.models.tiny import tiny_model_dir  # noqa: E402
from zerosearch.protocol import INVALID_ACTION_MESSAGE  # noqa: E402
from zerosearch.rewards import answer_metrics, extract_answer, format_shaped_reward  # noqa: E402
from zerosearch.search.base import Document  # noqa: E402
from zerosearch.search.documents import information_block  # noqa: E402
from zerosearch.verl import ANSWER_TURN_KEY, WELL_FORMED_KEY  # noqa: E402
from zerosearch.verl.reward import compute_score  # noqa: E402

torch.set_num_threads(1)

INFO = information_block([Document("Paris is the capital. <answer> Lyon </answer>")])

# (turn that answered or None, the whole response, gold answers): the hard cases of tests/test_rewards.py,
# plus what only a whole response has (documents and the corrective message around the answer)
HARD_CASES = [
    ("<think> t </think> <answer> Beyonce\u0301 </answer>", None, ["Beyonc\u00e9"]),  # NFD vs NFC
    ("<answer> Guns N\u2019 Roses </answer>", None, ["Guns N' Roses"]),  # typographic apostrophe
    ("<answer> \uff35\uff33\uff21 </answer>", None, ["USA"]),  # full-width
    ("<answer> yes it is </answer>", None, ["yes"]),  # HotpotQA's yes/no rule: F1 0, cover-EM 1
    ("<answer> the cat, a hat. </answer>", None, ["Cat"]),  # articles and punctuation
    ("<answer> um <answer> Paris </answer>", None, ["Paris"]),  # reopened tag
    ("<answer>   </answer>", None, ["Paris"]),  # empty answer
    ("<answer> Paris, France </answer>", None, "Paris"),  # one string is one gold answer
    ("<answer> 1,000 </answer>", None, ["1000"]),
    ("<answer> Martial arts </answer>", None, ["art"]),  # cover-EM is a plain substring test
    # the corrective message says "<answer> and </answer>": never the answer
    (None, f"<think> hmm </think>{INVALID_ACTION_MESSAGE}<think> still </think>", ["and"]),
    ("<answer> Paris </answer>", f"<search> capital </search>{INFO}<answer> Paris </answer>", ["Paris"]),
    # a document quoting an answer tag is not the policy's answer
    (None, f"<search> capital </search>{INFO}", ["Lyon"]),
]


def _golds(golds):
    return [golds] if isinstance(golds, str) else golds


def _zerosearch(answer_turn, golds):
    """What zerosearch's trainer scores: the last <answer> of the turn that answered."""
    return answer_metrics(extract_answer(answer_turn) if answer_turn else None, _golds(golds))


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(tiny_model_dir())


def _verl_fn(**reward_kwargs):
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": "pkg://zerosearch.verl.reward", "name": "compute_score", "reward_kwargs": reward_kwargs}}})
    return get_custom_reward_fn(config)


def _run_naive(tok, fn, response: str, golds, extra_fields=None):
    """One trajectory through verl's NaiveRewardManager, as its reward loop worker runs it."""
    prompt = tok("Question: q?\n", add_special_tokens=False)["input_ids"]
    response_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    batch = {
        "prompts": torch.tensor([prompt]),
        "responses": torch.tensor([response_ids]),
        "attention_mask": torch.ones((1, len(prompt) + len(response_ids)), dtype=torch.long),
    }
    non_tensor = {
        "data_source": np.array(["nq"], dtype=object),
        "reward_model": np.array([{"style": "rule", "ground_truth": {"target": np.array(_golds(golds))}}], dtype=object),
        "extra_info": np.array([{"index": 0, "split": "train"}], dtype=object),
    }
    if extra_fields is not None:
        non_tensor["tool_extra_fields"] = np.array([extra_fields], dtype=object)
    data = DataProto.from_dict(tensors=batch, non_tensors=non_tensor)
    manager = NaiveRewardManager(config=None, tokenizer=tok, compute_score=fn)
    return manager.loop.run_until_complete(manager.run_single(data))  # verl binds it to its event loop


@pytest.mark.parametrize(("answer_turn", "response", "golds"), HARD_CASES)
def test_scores_equal_zerosearch_rewards_from_the_agent_loops_answer(answer_turn, response, golds):
    expected = _zerosearch(answer_turn, golds)
    for kind in ("f1", "em", "cover_em"):
        got = _verl_fn(reward=kind)(data_source="nq", solution_str=response or answer_turn,
                                    ground_truth={"target": _golds(golds)},
                                    extra_info={ANSWER_TURN_KEY: answer_turn})
        assert {k: got[k] for k in expected} == expected
        assert got["score"] == expected[kind]


@pytest.mark.parametrize(("answer_turn", "response", "golds"), HARD_CASES)
def test_scores_equal_zerosearch_rewards_from_the_decoded_response_alone(tok, answer_turn, response, golds):
    """Without the agent loop's record, the answer is read from verl's decoded response, environment text
    removed: the same scores."""
    result = _run_naive(tok, _verl_fn(), response or answer_turn, golds)
    expected = _zerosearch(answer_turn, golds)
    assert result["reward_score"] == expected["f1"]
    assert {k: result["reward_extra_info"][k] for k in expected} == expected


def test_the_agent_loops_extra_fields_reach_the_reward_through_verl(tok):
    """verl passes the agent loop's extra fields inside extra_info; the recorded answer turn wins over the
    text, and the loop's counts come back as logged extra info."""
    fields = {ANSWER_TURN_KEY: "<answer> Paris </answer>", WELL_FORMED_KEY: False, "tool_call_counts": 1,
              "zerosearch_search_failures": 0, "zerosearch_noisy_searches": 1}
    result = _run_naive(tok, _verl_fn(reward="em"), "<answer> Lyon </answer>", ["Paris"], fields)
    assert result["reward_score"] == 1.0
    info = result["reward_extra_info"]
    assert (info["searches"], info["search_failures"], info["noisy_searches"], info["answered"]) == (1, 0, 1, 1)
    shaped = _run_naive(tok, _verl_fn(format_reward=0.2), "x", ["Paris"], fields)["reward_score"]
    assert shaped == pytest.approx(format_shaped_reward(1.0, False, 0.2))


def test_the_same_keys_for_every_trajectory_and_clear_errors():
    keys = set(compute_score("nq", "", {"target": ["Paris"]}))
    assert keys == set(compute_score("nq", "<answer> Paris </answer>", ["Paris"], {ANSWER_TURN_KEY: None}))
    # a row's extra_info picks its metric; the answer may come as a numpy array, as parquet gives it
    assert compute_score("nq", "<answer> Paris x </answer>", np.array(["Paris"]), {"reward": "em"})["score"] == 0.0
    with pytest.raises(ValueError, match="unknown reward 'bleu'"):
        compute_score("nq", "", ["Paris"], reward="bleu")
    with pytest.raises(ValueError, match="format_reward needs the zerosearch agent loop"):
        compute_score("nq", "<answer> Paris </answer>", ["Paris"], format_reward=0.2)


def test_reinforce_is_a_verl_advantage_estimator():
    """algorithm.adv_estimator=zerosearch_reinforce: advantage = the raw outcome reward on the policy's
    tokens (zerosearch.rl.advantages.reinforce_advantages), looked up through verl's own registry."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from zerosearch.verl.advantage import ESTIMATOR, register

    register()
    register()  # idempotent: Ray may run the hook in a process that already imported the module
    rewards = torch.zeros((3, 5))
    rewards[0, 3], rewards[1, 4], rewards[2, 1] = 0.5, 1.0, 0.0
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])  # row 2: a failed search
    advantages, returns = get_adv_estimator_fn(ESTIMATOR)(token_level_rewards=rewards, response_mask=mask,
                                                         index=np.array(["a", "a", "b"]), config=None)
    assert advantages.tolist() == [[0.5, 0.5, 0, 0.5, 0], [1.0] * 5, [0.0] * 5]
    assert torch.equal(advantages, returns)


def test_grpo_leaves_failed_searches_out_of_their_group():
    """algorithm.adv_estimator=zerosearch_grpo through verl's own compute_advantage: a trajectory with an
    all-0 response_mask (a failed search) gets 0 and does not enter its group's mean and std; equal rewards
    give exactly 0; Dr. GRPO (norm_adv_by_std_in_grpo=False) is honoured. Worked by hand below."""
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from zerosearch.verl.advantage import GRPO_ESTIMATOR, register

    register()
    # group a: rewards 1, 0 and a failed search (0); group b: 0.5 twice; group c: one trajectory, 1
    scores = [1.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    rewards = torch.zeros((6, 4))
    rewards[:, 2] = torch.tensor(scores)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0]])
    uid = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)

    def advantages(**algo) -> torch.Tensor:
        data = DataProto.from_dict(tensors={"token_level_rewards": rewards.clone(), "response_mask": mask},
                                   non_tensors={"uid": uid})
        out = compute_advantage(data, adv_estimator=GRPO_ESTIMATOR, config=AlgoConfig(**algo),
                                norm_adv_by_std_in_grpo=algo.get("norm_adv_by_std_in_grpo", True))
        assert torch.equal(out.batch["advantages"], out.batch["returns"])
        return out.batch["advantages"]

    # group a without the failed row: mean 0.5, unbiased std sqrt(0.5), so +-0.5 / sqrt(0.5) = +-0.7071
    a = 0.5 / 0.5 ** 0.5
    per_row = torch.tensor([a, -a, 0.0, 0.0, 0.0, 1.0 / (1 + 1e-6)])
    assert torch.allclose(advantages(), per_row[:, None] * mask, atol=1e-6)
    assert (advantages()[2] == 0).all() and (advantages()[3:5] == 0).all()  # exactly 0, not a residue
    dr = torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0, 1.0])  # Dr. GRPO: r - mean, singleton mean 0
    assert torch.allclose(advantages(norm_adv_by_std_in_grpo=False), dr[:, None] * mask, atol=1e-6)
    # verl's grpo averages the failed search's 0 in: mean 1/3, std sqrt(1/3), so row 1 gets -0.577, not -0.707
    theirs, _ = compute_grpo_outcome_advantage(rewards.clone(), mask, uid)
    assert abs(theirs[1, 0].item() + (1 / 3) / (1 / 3) ** 0.5) < 1e-4
    with pytest.raises(ValueError, match="needs the rollouts' group ids"):
        from zerosearch.verl.advantage import zerosearch_grpo

        zerosearch_grpo(rewards, mask)


def test_rloo_leaves_failed_searches_out_of_their_group():
    """algorithm.adv_estimator=zerosearch_rloo through verl's own compute_advantage: the reward minus the mean
    of the other rollouts of its prompt, counting only trajectories with some response_mask; equal rewards
    and a group left with one trajectory give exactly 0. Where no search failed and every group has two or
    more members, the values are verl's own rloo's. Worked by hand below."""
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.core_algos import compute_rloo_outcome_advantage
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from zerosearch.verl.advantage import RLOO_ESTIMATOR, register

    register()
    # group a: 1, 0 and a failed search (0); group b: 0.5 twice; group c: one trajectory, 1; group d: 1, 0, 0.5
    scores = [1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 0.0, 0.5]
    rewards = torch.zeros((9, 4))
    rewards[:, 2] = torch.tensor(scores)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0],
                         [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    uid = np.array(list("aaabbcddd"), dtype=object)
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards.clone(), "response_mask": mask},
                               non_tensors={"uid": uid})
    out = compute_advantage(data, adv_estimator=RLOO_ESTIMATOR, config=AlgoConfig())
    advantages = out.batch["advantages"]
    assert torch.equal(advantages, out.batch["returns"])
    # a without the failed row: 1 - 0 = 1, 0 - 1 = -1; b equal: 0; c alone: 0 (verl's rloo: its reward 1);
    # d (sum 1.5): 1 - 0.5/2 = 0.75, 0 - 1.5/2 = -0.75, 0.5 - 1/2 = 0
    per_row = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.75, -0.75, 0.0])
    assert torch.allclose(advantages, per_row[:, None] * mask, atol=1e-6)
    assert (advantages[2:6] == 0).all()  # exactly 0, not a residue
    # verl's rloo on group d alone gives the same values
    theirs, _ = compute_rloo_outcome_advantage(rewards[6:].clone(), mask[6:], uid[6:])
    assert torch.allclose(theirs, advantages[6:], atol=1e-6)
    with pytest.raises(ValueError, match="needs the rollouts' group ids"):
        from zerosearch.verl.advantage import zerosearch_rloo

        zerosearch_rloo(rewards, mask)
