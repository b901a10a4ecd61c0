"""tests/verl: zerosearch on verl. They run in .venv-verl (``bash scripts/setup.sh --with-verl``) and skip
where verl is not installed, unless ``$ZEROSEARCH_REQUIRE_VERL=1`` (CI), when collection fails instead.

Each module skips with ``pytest.importorskip("verl.protocol")``, not ``"verl"``: this folder is itself named
``verl``, and where verl is not installed ``import verl`` finds this folder as a namespace package.
"""

from __future__ import annotations

import importlib.util
import os

VERL_HINT = ("verl is not installed here: bash scripts/setup.sh --with-verl, "
             "then .venv-verl/bin/python -m pytest tests/verl")

if os.environ.get("ZEROSEARCH_REQUIRE_VERL") == "1" and importlib.util.find_spec("verl.protocol") is None:
    raise RuntimeError(VERL_HINT + " ($ZEROSEARCH_REQUIRE_VERL is set)")
