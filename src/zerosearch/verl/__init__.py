"""ZeroSearch on verl (0.9.x, unmodified, from PyPI): an agent loop, a reward function and a data export.

Three pieces plug zerosearch into verl's extension points instead of forking it:

* :mod:`zerosearch.verl.export` writes verl's RL parquet from any QA file zerosearch reads
  (``zerosearch export-verl``); no verl needed.
* :mod:`zerosearch.verl.reward` is a verl custom reward function (``compute_score``), i.e.
  :mod:`zerosearch.rewards` in verl's signature; no verl needed.
* :mod:`zerosearch.verl.agent_loop` is a verl agent loop registered as :data:`AGENT_NAME`, and
  :mod:`zerosearch.verl.advantage` the paper's REINFORCE as a verl advantage estimator; these two import
  verl (``pip install zerosearch[verl]``).

Launching on verl: ``configs/verl/README.md``.

``import zerosearch`` never imports this package, and importing this package does not import verl.
"""

from __future__ import annotations

AGENT_NAME = "zerosearch_agent"
"""The name the agent loop is registered under in verl, and the ``agent_name`` column of exported rows."""

# Keys of the agent loop's ``extra_fields`` that the reward function reads (verl hands the loop's extra
# fields to the reward function inside ``extra_info``).
ANSWER_TURN_KEY = "zerosearch_answer_turn"  # the text of the turn that answered, or None
WELL_FORMED_KEY = "zerosearch_well_formed"  # the trajectory is in the protocol's exact format
SEARCHES_KEY = "tool_call_counts"  # searches run and answered (verl logs this column as tool_call_counts/*)
SEARCH_FAILURES_KEY = "zerosearch_search_failures"  # failed engine calls (0 or 1: a failure ends it)
NOISY_SEARCHES_KEY = "zerosearch_noisy_searches"  # searches answered with noisy documents
SEARCH_FAILED_KEY = "zerosearch_search_failed"  # True: response_mask is all 0, the trajectory does not train
STATUS_KEY = "zerosearch_status"  # answered | no_answer | context_exhausted | search_failed
NOISE_PROBABILITY_KEY = "zerosearch_noise_probability"  # the curriculum's p at this step (None: real engine)
STEP_KEY = "zerosearch_step"  # the curriculum step this trajectory was rolled out at
