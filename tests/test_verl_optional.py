"""verl is optional: zerosearch, its CLI, export-verl and the reward function never import it."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq

from zerosearch.cli import main
from zerosearch.datasets import default_dev_files
from zerosearch.verl import AGENT_NAME


def test_nothing_but_the_agent_loop_imports_verl():
    code = ("import sys, zerosearch, zerosearch.cli, zerosearch.verl.export, zerosearch.verl.reward; "
            "assert not any(m == 'verl' or m.startswith('verl.') for m in sys.modules), 'verl was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_verl_needs_no_verl(tmp_path, capsys):
    assert main(["export-verl", "--data", ",".join(default_dev_files()), "--out", str(tmp_path)]) == 0
    rows = pq.read_table(capsys.readouterr().out.strip()).to_pylist()
    assert len(rows) == 300 and {r["agent_name"] for r in rows} == {AGENT_NAME}
    assert [r["extra_info"]["index"] for r in rows] == list(range(300))
