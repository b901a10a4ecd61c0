"""Paired comparison of two evaluations of the same questions (``zerosearch compare EVAL_A EVAL_B``).

Two evaluation directories (``zerosearch eval --output-dir``) are paired question by question (by dataset
and id; the question text and gold answers must agree) and compared per dataset and on the average:

* EM and F1 of each (in percent, over the paired questions) and ``diff = b - a`` (percentage points);
* ``ci95``: a paired bootstrap 95% confidence interval of the difference (:func:`zerosearch.stats.
  paired_bootstrap_ci`, percentile interval, ``resamples`` draws, seeded);
* ``p_mcnemar``: McNemar's exact two-sided p on the EM outcomes (:func:`zerosearch.stats.mcnemar_exact_p`).

The average row is the papers' average: the unweighted mean over datasets of each dataset's score
(``results.md``'s average). Its interval comes from a stratified bootstrap that resamples the questions
within each dataset (each keeping its size) and averages the datasets' differences, so it is the interval
of the statistic the table shows; its p pools the discordant pairs of all questions (McNemar has no
stratified form that keeps the exact test; a dataset whose difference goes the other way weakens it, as it
should). With few questions the two can disagree (four discordant questions all going B's way: the interval
excludes 0, McNemar's p = 0.125): the percentile bootstrap is approximate and narrow at small n, the test
exact; read both. A question whose search failed is scored 0, as in the evaluation itself, and counted in
``search_failed``. Only the torch-free :mod:`zerosearch.eval_files` is read: the command starts fast.

Written by :func:`write_comparison`::

    comparison.json   {"a": SIDE, "b": SIDE, "bootstrap": {...}, "datasets": {NAME: ROW}, "average": ROW}
    comparison.md     the same as two markdown tables (EM, F1), "no detectable change" where the CI spans 0

where ``ROW = {"n", "em": {"a", "b", "diff", "ci95": [lo, hi], "p_mcnemar"}, "f1": {"a", "b", "diff",
"ci95": [lo, hi]}}`` and ``SIDE = {"dir", "model", "method", "engine", "search_failed"}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from zerosearch.eval_files import CONFIG_FILE, EXAMPLES_DIR, RESULTS_JSON, read_examples
from zerosearch.stats import discordant_pairs, mcnemar_exact_p, paired_bootstrap_ci, paired_difference

__all__ = ["COMPARISON_JSON", "COMPARISON_MD", "DEFAULT_RESAMPLES", "compare_evaluations", "comparison_row",
           "format_comparison", "format_diff", "format_p", "spans_zero", "write_comparison"]

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
DEFAULT_RESAMPLES = 10_000
CONFIDENCE = 0.95
NO_CHANGE = "no detectable change"
_SHOWN_IDS = 5  # ids listed in a refusal before "and N more"


# ---------------------------------------------------------------------------------------------
# Reading and pairing


def _read_evaluation(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
    """(eval_config.json, {dataset: {id: record}}) of an evaluation directory, datasets in results.json's order."""
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; pass two evaluation directories (zerosearch eval --output-dir)")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{path} is not an evaluation directory: it has no {CONFIG_FILE} "
                         f"(pass the --output-dir of a `zerosearch eval`)")
    files = {f.stem: f for f in sorted((path / EXAMPLES_DIR).glob("*.jsonl"))}
    if not files:
        raise ValueError(f"{path} has no {EXAMPLES_DIR}/*.jsonl: the evaluation has not answered a question yet "
                         "(run or resume it with the same zerosearch eval command)")
    order: list[str] = []
    results = path / RESULTS_JSON
    if results.is_file():  # the evaluation's own order of datasets (the papers' order when it followed them)
        order = [name for name in json.loads(results.read_text(encoding="utf-8")).get("datasets", {}) if name in files]
    names = order + [name for name in files if name not in order]
    return json.loads(config_file.read_text(encoding="utf-8")), {name: read_examples(files[name]) for name in names}


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(sorted(ids)[:_SHOWN_IDS])
    return shown + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


def _pair(a: dict[str, dict[str, dict[str, Any]]], b: dict[str, dict[str, dict[str, Any]]], dir_a: Path,
          dir_b: Path) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """``{dataset: [(record_a, record_b), ...]}`` in A's order; ValueError naming every difference."""
    problems = [f"{EXAMPLES_DIR}/{name}.jsonl is in {dir_a} but missing in {dir_b}" for name in a if name not in b]
    problems += [f"{EXAMPLES_DIR}/{name}.jsonl is in {dir_b} but missing in {dir_a}" for name in b if name not in a]
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for name in (n for n in a if n in b):
        only_a = [i for i in a[name] if i not in b[name]]
        only_b = [i for i in b[name] if i not in a[name]]
        changed = [i for i in a[name] if i in b[name] and (
            a[name][i].get("question") != b[name][i].get("question")
            or a[name][i].get("golden_answers") != b[name][i].get("golden_answers"))]
        if only_a:
            problems.append(f"{name}: {len(only_a)} question(s) only in {dir_a} ({_ids(only_a)})")
        if only_b:
            problems.append(f"{name}: {len(only_b)} question(s) only in {dir_b} ({_ids(only_b)})")
        if changed:
            problems.append(f"{name}: {len(changed)} id(s) with another question text or other gold answers "
                            f"({_ids(changed)})")
        pairs[name] = [(a[name][i], b[name][i]) for i in a[name] if i in b[name]]
    if problems:
        raise ValueError("the two evaluations are not of the same questions, so they cannot be paired: "
                         + "; ".join(problems) + ". Evaluate both with the same --data, --limit/--sample and --seed")
    return pairs


# ---------------------------------------------------------------------------------------------
# Statistics per row


def comparison_row(em_a: Sequence[float], em_b: Sequence[float], f1_a: Sequence[float], f1_b: Sequence[float],
                   strata: Sequence[str] | None = None, *, seed: int = 0,
                   resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """One ROW (see the module docstring) from per-question scores in [0, 1] (EM 0/1), paired by position.

    With ``strata`` (a dataset per question) the scores are means over strata and the interval a stratified
    bootstrap (the average row); McNemar's p always pools every paired question.
    """
    def metric(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
        lo, hi = paired_bootstrap_ci(a, b, strata=strata, resamples=resamples, confidence=CONFIDENCE, seed=seed)
        mean_a = paired_difference([0.0] * len(a), a, strata)  # the (macro) mean of a alone
        mean_b = paired_difference([0.0] * len(b), b, strata)
        return {"a": 100 * mean_a, "b": 100 * mean_b, "diff": 100 * paired_difference(a, b, strata),
                "ci95": [100 * lo, 100 * hi]}

    return {"n": len(em_a), "em": {**metric(em_a, em_b), "p_mcnemar": mcnemar_exact_p(*discordant_pairs(em_a, em_b))},
            "f1": metric(f1_a, f1_b)}


def _side(path: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"dir": str(path), "model": config.get("model"), "method": config.get("method"),
            "engine": config.get("engine"), "search_failed": sum(r.get("search_failures", 0) > 0 for r in records)}


def compare_evaluations(dir_a: str | Path, dir_b: str | Path, *, seed: int = 0,
                        resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """Compare evaluation B with evaluation A on their common questions (which must be all of them).

    Args:
        dir_a, dir_b: evaluation directories (``eval_config.json`` and ``examples/<dataset>.jsonl``).
        seed, resamples: of the bootstrap (the same inputs, seed and resamples give the same intervals).

    Returns:
        ``{"a", "b", "bootstrap", "datasets": {name: ROW}, "average": ROW}`` (see the module docstring).

    Raises:
        ValueError: a path that is not an evaluation directory or holds no examples file, an examples file
            on one side only, or questions that differ (ids on one side only, or one id with another question
            text or gold answers); the message names them.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    (config_a, records_a), (config_b, records_b) = _read_evaluation(dir_a), _read_evaluation(dir_b)
    pairs = _pair(records_a, records_b, dir_a, dir_b)
    empty = [name for name, rows in pairs.items() if not rows]
    if empty:
        raise ValueError(f"no answered question in {', '.join(empty)} of {dir_a}; nothing to compare there")

    def scores(key: str, side: int, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[float]:
        return [float(pair[side][key]) for pair in rows]

    datasets = {name: comparison_row(scores("em", 0, rows), scores("em", 1, rows), scores("f1", 0, rows),
                                     scores("f1", 1, rows), seed=seed, resamples=resamples)
                for name, rows in pairs.items()}
    every = [(name, pair) for name, rows in pairs.items() for pair in rows]
    flat = [pair for _, pair in every]
    average = comparison_row(scores("em", 0, flat), scores("em", 1, flat), scores("f1", 0, flat),
                             scores("f1", 1, flat), [name for name, _ in every], seed=seed, resamples=resamples)
    return {
        "a": _side(dir_a, config_a, [p[0] for p in flat]),
        "b": _side(dir_b, config_b, [p[1] for p in flat]),
        "bootstrap": {"method": "paired percentile bootstrap; the average resamples within each dataset",
                      "resamples": resamples, "seed": seed, "confidence": CONFIDENCE},
        "datasets": datasets,
        "average": average,
    }


# ---------------------------------------------------------------------------------------------
# Output


def spans_zero(ci: Sequence[float]) -> bool:
    """Whether a confidence interval ``[lo, hi]`` contains 0 (no detectable change)."""
    return ci[0] <= 0 <= ci[1]


def _reading(cell: dict[str, Any], label_b: str) -> str:
    if spans_zero(cell["ci95"]):
        return NO_CHANGE
    return f"{label_b} higher" if cell["diff"] > 0 else f"{label_b} lower"


def format_diff(cell: dict[str, Any]) -> str:
    """``+2.3 [-0.7, 5.3]``: a metric's difference and its 95% CI, in points."""
    lo, hi = cell["ci95"]
    return f"{cell['diff']:+.1f} [{lo:.1f}, {hi:.1f}]"


def format_p(p: float) -> str:
    """A p-value as the tables show it: three decimals, or ``<0.001``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_comparison(comparison: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    """The comparison as markdown: an EM table (with McNemar's p) and an F1 table, a row per dataset and the
    average, each with n, A, B, B − A [95% CI] and the reading ("no detectable change" where the CI spans 0)."""
    a, b, boot = comparison["a"], comparison["b"], comparison["bootstrap"]
    rows = [*comparison["datasets"].items(), ("average", comparison["average"])]
    lines = [f"# {label_b} vs {label_a}", "",
             f"- {label_a}: `{a['model']}` ({a['method']}, engine `{a['engine'] or 'none'}`) in `{a['dir']}`",
             f"- {label_b}: `{b['model']}` ({b['method']}, engine `{b['engine'] or 'none'}`) in `{b['dir']}`", ""]
    for metric, title, with_p in (("em", "EM (exact match, %)", True), ("f1", "F1 (%)", False)):
        lines += [f"{title} on the same questions:", "",
                  f"| dataset | n | {label_a} | {label_b} | {label_b} − {label_a} [95% CI] |"
                  + (" p (McNemar) |" if with_p else "") + " reading |",
                  "|---|---:|---:|---:|---:|" + ("---:|" if with_p else "") + "---|"]
        for name, row in rows:
            cell = row[metric]
            lines.append(f"| {name} | {row['n']} | {cell['a']:.1f} | {cell['b']:.1f} | {format_diff(cell)} |"
                         + (f" {format_p(cell['p_mcnemar'])} |" if with_p else "") + f" {_reading(cell, label_b)} |")
        lines.append("")
    lines.append(f"95% CI: paired bootstrap percentile interval ({boot['resamples']:,} resamples of the questions, "
                 f"seed {boot['seed']}); the average is the mean over datasets, as in results.md, and its interval "
                 "resamples within each dataset. p: McNemar's exact two-sided test on the EM outcomes (the "
                 "average's over all paired questions). \"No detectable change\": the interval contains 0.")
    failed = [f"{label} {side['search_failed']}" for label, side in ((label_a, a), (label_b, b)) if side["search_failed"]]
    if failed:
        lines.append(f"Questions whose search failed, scored 0: {', '.join(failed)}; resuming that evaluation "
                     "runs them again.")
    return "\n".join(lines) + "\n"


def write_comparison(comparison: dict[str, Any], out_dir: str | Path, label_a: str = "A",
                     label_b: str = "B") -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``comparison.md`` into ``out_dir`` (made if missing); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / COMPARISON_JSON, out / COMPARISON_MD
    json_path.write_text(json.dumps(comparison, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(format_comparison(comparison, label_a, label_b), encoding="utf-8")
    return json_path, md_path
