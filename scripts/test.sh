#!/usr/bin/env bash
# The whole test suite: fast unit tests first, then the integration tests (real servers on loopback,
# end-to-end runs). Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python -m pytest -m "not integration" "$@"; unit=$?
python -m pytest -m integration "$@"; integration=$?
# pytest exits 5 when a selection is empty; that is not a failure here
[ $unit -eq 5 ] && unit=0
[ $integration -eq 5 ] && integration=0
echo "unit tests: exit $unit, integration tests: exit $integration"
[ $unit -eq 0 ] && [ $integration -eq 0 ]
