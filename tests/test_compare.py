"""The evaluation cache of the before/after table: what its key covers."""

from __future__ import annotations

from pathlib import Path

from zerosearch import compare, rewards
from zerosearch.datasets import default_dev_files


def test_cached_baselines_are_invalidated_by_a_change_in_scoring(monkeypatch):
    kwargs = {"data_files": default_dev_files(), "engine_spec": "example", "method": "agent", "limit": 5,
              "batch_size": 4, "max_turns": 2}
    key = compare._cache_key("zerosearch:tiny", kwargs)
    assert compare._cache_key("zerosearch:tiny", {**kwargs, "batch_size": 8}) == key  # batching is not a setting
    assert compare._cache_key("zerosearch:tiny", {**kwargs, "limit": 6}) != key
    digest = compare.file_digest
    scoring = Path(rewards.__file__)
    monkeypatch.setattr(compare, "file_digest",
                        lambda p: "edited" if Path(p) == scoring else digest(p))
    assert compare._cache_key("zerosearch:tiny", kwargs) != key  # rewards.py changed: scores are stale
