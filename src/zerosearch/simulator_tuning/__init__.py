"""Tuning a simulation LLM on real search results: collect, build, train, evaluate.

The paper fine-tunes the simulator on the documents a real engine returned to a policy, each labelled by
whether the policy went on to answer correctly; the original code for this was never released. This
package is that pipeline, in four stages that each read the previous stage's files, one module per stage
(:mod:`.collect`, :mod:`.build`, :mod:`.train`, :mod:`.evaluate`; what more than one stage uses is in
:mod:`.records`):

1. :func:`collect` runs a policy against a *real* engine (:class:`~zerosearch.rollout.RolloutRunner`) over
   QA rows and appends one JSON line per row to a jsonl file: the row, the trajectory's outcome and every
   search call it made (query + the documents the engine returned). Resumable.
2. :func:`build` labels every search call useful or noisy, drops what the rule cannot decide, removes
   duplicates, splits by question and balances the classes, then writes chat-format SFT data.
3. :func:`train` fine-tunes an instruct model on it through :mod:`zerosearch.sft` (loss on the assistant
   reply only; the policy's format warm-up uses the same code) and saves a plain Hugging Face directory (LoRA merged) that ``simulated:DIR`` and vLLM load.
4. :func:`evaluate` compares simulators (and the real engine) on held-apart questions: answer containment
   in useful / noisy mode, output format, and a fixed reader's EM/F1 from the documents.

Labelling rules (:func:`label_call`):

* a search call of a *policy* trajectory is **useful** when the trajectory's final answer was correct
  *and* the documents contain a gold answer, **noisy** when the answer was wrong *and* the documents
  contain none; the two mixed cases are ambiguous and dropped (counted). "Correct" is cover EM = 1 (a
  normalised gold answer inside the normalised prediction, what the original code called EM); ``build``
  can use exact EM instead (``correct_metric="em"``).
* a call collected with ``query_source="question"`` (below) has no trajectory: it is labelled by
  containment alone (useful iff the documents contain a gold answer).
* "contain" means a normalised gold answer (:func:`~zerosearch.rewards.normalize_answer`) occurs as a
  whole-word sequence in the normalised title + text of the documents. Yes/no gold answers cannot be
  judged by containment: such calls are undecidable and dropped (counted); evaluation leaves them out of
  the containment shares too.

Departures from the paper, on purpose:

* ``query_source="question"``: a weak policy (e.g. SmolLM2-135M) rarely writes a well-formed search, so
  ``collect`` can instead issue one search per row with the question itself as the query. Without a
  trajectory the label rests on containment only (the paper's "documents alone suffice" check).
  ``extra_query_field`` adds the sub-queries a capable multi-hop searcher would issue, read from the
  rows (HotpotQA's ``metadata.supporting_titles``): one question then yields calls of both labels under
  the same prompt but for the mode word, the contrast a simulator must learn to heed that word.
* Documents are cut to search-snippet length (``max_doc_words``, default 40) before labelling and
  training: the published prompt asks for "about 30 words" per document (Google snippets), while
  wiki-style corpora hold ~100-word passages. Like a search engine's snippet, the window shows the part
  of the passage around the match: around the gold answer when the passage holds one (so cutting never
  changes a label), else the passage's start; it ends at a sentence end when one falls in its second half.
* The assistant reply is the documents in the wiki rendering the policy sees at test time,
  ``Doc 1(Title: {title}) {text}`` one per line (``Doc 1: {text}`` for untitled ones), so the tuned
  simulator writes titles, and :func:`~zerosearch.search.documents.parse_simulated_documents` reads them.
* The user message is produced by :meth:`SimulatedSearchEngine.conversation_for` itself (finetuned mode),
  so the training prompt is byte for byte the one the engine sends when the tuned model serves.
"""

# The stage modules are named after their main functions. Each ``from .X import X`` below binds the package
# attribute X to the function, replacing the submodule the import had bound, so ``simulator_tuning.train`` is
# the function, as before. To reach a stage module itself (e.g. to patch something in it), use
# ``sys.modules["zerosearch.simulator_tuning.train"]`` or ``importlib.import_module``: both
# ``from zerosearch.simulator_tuning import train`` and ``import zerosearch.simulator_tuning.train as m``
# give the function.
from zerosearch.simulator_tuning.records import (
    CORRECT_METRICS,
    NOISY,
    QUERY_SOURCES,
    TUNING_INFO,
    USEFUL,
    PathLike,
    contains_answer,
    snippet,
)
from zerosearch.simulator_tuning.collect import CollectSummary, collect, done_row_ids
from zerosearch.simulator_tuning.build import (
    BALANCE_MODES,
    BuildStats,
    SearchCall,
    balance,
    build,
    dedupe,
    label_call,
    read_collected,
    search_calls,
    simulator_messages,
    split_by_question,
)
from zerosearch.simulator_tuning.train import load_sft_examples, tokenized_examples, train
from zerosearch.simulator_tuning.evaluate import (
    READER_SYSTEM,
    READER_USER,
    EvalItem,
    Reader,
    SimulatorSpec,
    containment,
    eval_items,
    evaluate,
    format_stats,
    parse_simulator_spec,
    results_table,
)

__all__ = [
    "BuildStats",
    "CollectSummary",
    "EvalItem",
    "Reader",
    "SearchCall",
    "SimulatorSpec",
    "balance",
    "build",
    "collect",
    "containment",
    "contains_answer",
    "dedupe",
    "done_row_ids",
    "eval_items",
    "evaluate",
    "format_stats",
    "label_call",
    "load_sft_examples",
    "tokenized_examples",
    "parse_simulator_spec",
    "read_collected",
    "results_table",
    "search_calls",
    "simulator_messages",
    "snippet",
    "split_by_question",
    "train",
]
