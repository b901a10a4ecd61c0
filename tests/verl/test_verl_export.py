"""``zerosearch export-verl``: the parquet it writes is read by verl's own RLHFDataset and gives back the
prompts, answers and ids zerosearch itself builds, from every QA layout zerosearch reads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("verl.protocol", reason="verl is not installed (bash scripts/setup.sh --with-verl)")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402

from zerosearch.cli import main  # noqa: E402
from zerosearch.data import load_qa_file, load_qa_files, policy_prompt  # noqa: E402
from zerosearch.models.tiny import tiny_model_dir  # noqa: E402
from zerosearch.policy import encode_prompt  # noqa: E402
from zerosearch.verl import AGENT_NAME  # noqa: E402

torch.set_num_threads(1)


def _qa_files(tmp: Path) -> list[Path]:
    """One small file per layout zerosearch reads."""
    flashrag = tmp / "nq_train.jsonl"
    flashrag.write_text("\n".join(json.dumps(r) for r in [
        {"id": "q1", "question": "who wrote hamlet", "golden_answers": ["Shakespeare", "William Shakespeare"]},
        {"id": "q2", "question": "  capital of France?  ", "golden_answers": "Paris"},
    ]) + "\n", encoding="utf-8")
    search_r1 = tmp / "hotpotqa_train.parquet"  # the ZeroSearch training parquet: the question only in the prompt
    pq.write_table(pa.Table.from_pylist([{
        "data_source": "hotpotqa", "prompt": [{"role": "user", "content": policy_prompt("which river is longer")}],
        "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target": ["Nile"]}},
        "extra_info": {"split": "train", "index": 7}}]), search_r1)
    agentic = tmp / "agentic.jsonl"  # answers joined into one string, with commas inside answers
    agentic.write_text(json.dumps({
        "data_source": "nq", "prompt": [{"role": "user", "content": "where is Paris, Texas"}],
        "reward_model": {"style": "rule", "ground_truth": "Lamar County, Texas, Texas"},
        "extra_info": {"split": "test", "index": 3, "question": "where is Paris, Texas",
                       "answer": ["Lamar County, Texas", "Texas"]}}) + "\n", encoding="utf-8")
    return [flashrag, search_r1, agentic]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(tiny_model_dir())


def test_verl_reads_the_export_as_zerosearch_builds_it(tmp_path, tok, capsys):
    files = _qa_files(tmp_path)
    out = tmp_path / "verl"
    assert main(["export-verl", "--data", ",".join(map(str, files)), "--out", str(out)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == out / "train.parquet"

    rows = load_qa_files(files)
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 4096, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")})
    dataset = RLHFDataset(data_files=[str(path)], tokenizer=tok, config=config)
    assert len(dataset) == len(rows) == 4
    items = [dataset[i] for i in range(len(dataset))]
    for i, (item, row) in enumerate(zip(items, rows)):
        # the policy prompt as one user message, as zerosearch builds it (stripped, "?" appended)
        assert list(item["raw_prompt"]) == [{"role": "user", "content": policy_prompt(row.question)}]
        # ...which the agent loop tokenizes as zerosearch's trainer does (instruct: the chat template)
        assert encode_prompt(tok, item["raw_prompt"][-1]["content"], chat=True) == encode_prompt(
            tok, policy_prompt(row.question), chat=True)
        assert list(item["reward_model"]["ground_truth"]["target"]) == list(row.golden_answers)
        assert item["reward_model"]["style"] == "rule" and item["ability"] == "fact-reasoning"
        assert item["data_source"] == row.data_source
        assert item["agent_name"] == AGENT_NAME
        assert item["index"] == i  # distinct: verl numbers a prompt's rollouts by it
        info = item["extra_info"]
        assert (info["question"], list(info["golden_answers"]), info["id"], info["split"]) == (
            row.question, list(row.golden_answers), row.id, "train")
    assert [r.golden_answers for r in rows][3] == ("Lamar County, Texas", "Texas")  # never split at commas
    batch = collate_fn(items)  # verl's own collation into a batch
    assert list(batch["agent_name"]) == [AGENT_NAME] * 4

    # zerosearch reads its own export back unchanged (ids, questions, answers, sources)
    back = load_qa_file(path)
    assert [(r.id, r.question, r.golden_answers, r.data_source) for r in back] == [
        (r.id, r.question, r.golden_answers, r.data_source) for r in rows]


def test_split_agent_name_and_errors(tmp_path, capsys):
    files = _qa_files(tmp_path)
    assert main(["export-verl", "--data", str(files[0]), "--out", str(tmp_path / "o"), "--split", "test",
                 "--agent-name", "zerosearch_agent_eval"]) == 0
    table = pq.read_table(tmp_path / "o" / "test.parquet").to_pylist()
    assert {r["agent_name"] for r in table} == {"zerosearch_agent_eval"}
    assert {r["extra_info"]["split"] for r in table} == {"test"}
    capsys.readouterr()
    assert main(["export-verl", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
