"""Before and after: the run's evaluation questions answered by the untrained model, the warmed-up model
and the RL-trained policy, with the same real engine and the same generation settings.

``finish_run`` calls :func:`final_evaluation` when ``final_eval.enabled``. The trained policy's results go
to ``<run>/eval`` (as before this module existed); with ``final_eval.baselines`` the untrained model's go
to ``<run>/eval/untrained`` and, when the run warmed up, the warmed-up model's to ``<run>/eval/warmup``,
and ``<run>/eval/comparison.{md,json}`` put the three side by side (the report and the end-of-run summary
show that table), with the paired differences "after RL vs after warm-up" and "after RL vs untrained": the
change in EM and F1 with a paired bootstrap 95% CI and McNemar's p on EM (:mod:`zerosearch.paired`, the
same statistics as ``zerosearch compare``). ``comparison.json`` holds ``{stage: {"model", **average}}`` as
before, plus ``"paired": {"trained_vs_warmup": COMPARISON, "trained_vs_untrained": COMPARISON}`` where
COMPARISON is what :func:`zerosearch.paired.compare_evaluations` returns (per dataset and on average).

Evaluation is greedy and deterministic, so a baseline is a function of the model and the settings: it is
evaluated once into ``$ZEROSEARCH_CACHE/evals/<key>`` and copied into every run that asks for it again.
The key covers, by content, the model's files, the questions, the engine's corpus, the prompt template, the
settings and the scoring code (``rewards.py``): see :func:`_cache_key` for what it cannot see.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zerosearch.config import TrainConfig
from zerosearch.eval_settings import NEEDS_ENGINE, DataSelection, EvalSettings, EvalSpec
from zerosearch.llm.models import model_fingerprint, resolve_model_path
from zerosearch.paired import COMPARISON_JSON, COMPARISON_MD, compare_evaluations, format_diff, format_p, spans_zero
from zerosearch.paths import cache_dir, cache_key, file_digest, text_digest

__all__ = ["COMPARISON_JSON", "COMPARISON_MD", "PAIRS", "STAGES", "comparison_table", "eval_spec",
           "evaluate_cached", "final_evaluation", "paired_comparisons", "paired_reading", "paired_table", "stage_dir"]

# (key, column label): the order of the before/after table
STAGES = (("untrained", "untrained"), ("warmup", "after warm-up"), ("trained", "after RL"))
# (after, before): the paired differences shown under the table, keyed "<after>_vs_<before>"
PAIRS = (("trained", "warmup"), ("trained", "untrained"))
# (metric, row label, scale, decimals)
_ROWS = (
    ("em", "EM (%)", 100.0, 1),
    ("cover_em", "cover-EM (%)", 100.0, 1),
    ("f1", "F1 (%)", 100.0, 1),
    ("answered_rate", "answered (%)", 100.0, 1),
    ("searches_per_question", "searches / question", 1.0, 2),
    ("invalid_action_rate", "invalid actions (% of turns)", 100.0, 1),
    ("response_tokens", "response tokens", 1.0, 0),
    ("n", "questions", 1.0, 0),
)


def eval_spec(cfg: TrainConfig) -> EvalSpec:
    """A run's final evaluation: its rollout budgets, greedy (:meth:`EvalSettings.of_run`), on the final-eval
    questions against ``final_eval.engine``."""
    from zerosearch.datasets import default_dev_files

    fe = cfg.final_eval
    return EvalSpec(data=DataSelection(list(fe.files) or default_dev_files(), limit=fe.limit or None),
                    settings=EvalSettings.of_run(cfg, method=fe.method, batch_size=fe.batch_size),
                    engine=fe.engine, device=cfg.device, dtype=cfg.dtype)


def _cache_key(model: str, spec: EvalSpec) -> str:
    """The evaluation cache's key: every input that shapes the results, files by content.

    The model's files (:func:`~zerosearch.llm.models.model_fingerprint`), the question files, the engine
    (:func:`~zerosearch.search.factory.engine_fingerprint`: a ``bm25:FILE`` corpus by its bytes; a server
    or Google by its address only, which this key cannot see behind), the prompt template's text (a
    ``prompt_template=FILE`` edited in place gives another key), the other settings (resolved, so that ``topk``
    left to the engine's default and the same number given keep one entry), the selection, the sampled answers,
    the device and dtype, the scoring code (``rewards.py``) and the package version. Not in it: the rest of
    zerosearch's code, which changes results only with a new version, and ``batch_size`` (it only regroups the
    same questions).
    """
    from zerosearch import __version__, rewards
    from zerosearch.prompts import load_template
    from zerosearch.search.factory import engine_fingerprint

    settings = spec.settings.resolved(model, spec.engine)
    payload = {
        "version": __version__,
        "model": model_fingerprint(resolve_model_path(model)),
        "data": [file_digest(f) for f in spec.data.files],
        "engine": engine_fingerprint(spec.engine) if spec.engine and settings.method in NEEDS_ENGINE else None,
        "template": text_digest(load_template(settings.template_name)),
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("batch_size", "prompt_template")},
        "selection": {k: v for k, v in asdict(spec.data).items() if k != "files"},
        "sampling": asdict(spec.sampling) if spec.sampling.enabled else None,
        "device": spec.device,
        "dtype": spec.dtype,
        # cached results hold scores: a change to how answers are normalised and scored invalidates them
        "scoring": file_digest(rewards.__file__),
    }
    return cache_key(payload)


def evaluate_cached(model: str, spec: EvalSpec, out: Path, progress: bool) -> dict[str, Any]:
    """Evaluate ``model`` into the evaluation cache (resumed if partly there) and copy it to ``out``."""
    from zerosearch.evaluate import evaluate  # inside: the report imports this module without torch

    cached = cache_dir() / "evals" / _cache_key(model, spec)
    _relabel(cached, model, spec)
    results = evaluate(model, spec, cached, progress=progress)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cached, out)
    return {**results, "output_dir": str(out)}


def _relabel(cached: Path, model: str, spec: EvalSpec) -> None:
    """Write this call's spelling of the model, the engine and the prompt template into a cached evaluation's
    config. The key holds them by content, so an entry found under the same key was made from the same inputs,
    spelled perhaps otherwise (another path to the same model or corpus, a relative path), which the
    evaluation's resume check, comparing the recorded names, would refuse."""
    from zerosearch.eval_files import CONFIG_FILE

    path = cached / CONFIG_FILE
    if not path.is_file():
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    recorded["model"] = model
    if recorded.get("engine") is not None:  # the label of a method that searches is its engine spec
        recorded["engine"] = spec.engine
    if isinstance(recorded.get("settings"), dict):
        recorded["settings"]["prompt_template"] = spec.settings.prompt_template
    path.write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")


def final_evaluation(cfg: TrainConfig, run_dir: Path, policy_dir: Path, init_model: str,
                     progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate the trained policy (and the baselines, with ``final_eval.baselines``); write the comparison.

    Returns ``{stage: results}`` for the stages evaluated (see :data:`STAGES`); ``results`` is what
    :func:`zerosearch.evaluate.evaluate` returns.
    """
    from zerosearch.evaluate import evaluate, json_safe

    spec = eval_spec(cfg)
    eval_dir = run_dir / "eval"
    results: dict[str, dict[str, Any]] = {}
    if cfg.final_eval.baselines:
        results["untrained"] = evaluate_cached(cfg.model, spec, eval_dir / "untrained", progress)
        if init_model != cfg.model:
            results["warmup"] = evaluate_cached(init_model, spec, eval_dir / "warmup", progress)
    _drop_stale(eval_dir, str(policy_dir))
    results["trained"] = evaluate(str(policy_dir), spec, eval_dir, progress=progress)
    if len(results) > 1:
        try:
            paired = paired_comparisons(eval_dir, results)
        except ValueError as exc:  # not expected (one config, one set of questions), but no reason to lose the run
            print(f"[zerosearch] warning: the before/after table has no paired differences: {exc}", file=sys.stderr)
            paired = {}
        table = comparison_table(results) + ("\n" + paired_table(paired) if paired else "")
        (eval_dir / COMPARISON_MD).write_text(table, encoding="utf-8")
        summary: dict[str, Any] = {stage: {"model": r["model"], **r["average"]} for stage, r in results.items()}
        summary["paired"] = paired
        (eval_dir / COMPARISON_JSON).write_text(json.dumps(json_safe(summary), indent=2) + "\n", encoding="utf-8")
    return results


def stage_dir(eval_dir: Path, stage: str) -> Path:
    """Where a stage's evaluation is: the trained policy's in ``<run>/eval`` itself, the others in a folder."""
    return eval_dir if stage == "trained" else eval_dir / stage


def paired_comparisons(eval_dir: Path, stages: Any) -> dict[str, dict[str, Any]]:
    """``{"<after>_vs_<before>": comparison}`` for each of :data:`PAIRS` whose two stages are in ``stages``
    (results or names); each compares the stages' evaluation directories (:func:`stage_dir`)."""
    return {f"{after}_vs_{before}": compare_evaluations(stage_dir(eval_dir, before), stage_dir(eval_dir, after))
            for after, before in PAIRS if after in stages and before in stages}


def paired_reading(row: dict[str, Any]) -> str:
    """The reading of a comparison ROW (:func:`zerosearch.paired.compare_evaluations`): the metrics whose 95% CI
    excludes 0 with their direction ("EM higher, F1 lower"), or "no detectable change" when both span 0."""
    changed = [f"{name} {'higher' if row[key]['diff'] > 0 else 'lower'}"
               for key, name in (("em", "EM"), ("f1", "F1")) if not spans_zero(row[key]["ci95"])]
    return ", ".join(changed) or "no detectable change"


def paired_table(paired: dict[str, dict[str, Any]]) -> str:
    """The paired differences as markdown: a row per comparison (the average over datasets), with EM's and F1's
    difference and 95% CI in points, McNemar's p on EM, and the reading; empty without comparisons."""
    if not paired:
        return ""
    labels = dict(STAGES)
    boot = next(iter(paired.values()))["bootstrap"]
    lines = ["Paired differences on the same questions (points; average over datasets):", "",
             "| comparison | n | EM diff [95% CI] | p (McNemar) | F1 diff [95% CI] | reading |",
             "|---|---:|---:|---:|---:|---|"]
    for key, comparison in paired.items():
        after, before = key.split("_vs_")
        row = comparison["average"]
        lines.append(f"| {labels[after]} vs {labels[before]} | {row['n']} | {format_diff(row['em'])} | "
                     f"{format_p(row['em']['p_mcnemar'])} | {format_diff(row['f1'])} | {paired_reading(row)} |")
    lines += ["", f"95% CI: paired bootstrap over the questions ({boot['resamples']:,} resamples, seed {boot['seed']}; "
                  "within each dataset for the average). p: McNemar's exact two-sided test on EM. "
                  "\"No detectable change\": both intervals contain 0."]
    return "\n".join(lines) + "\n"


def _drop_stale(eval_dir: Path, model: str) -> None:
    """Remove the trained policy's results of an earlier checkpoint (a run resumed to more steps and
    finished again), keeping an interrupted evaluation of this same checkpoint to resume."""
    from zerosearch.evaluate import CONFIG_FILE, EXAMPLES_DIR, RESULTS_JSON, RESULTS_MD

    config = eval_dir / CONFIG_FILE
    if not config.exists() or json.loads(config.read_text(encoding="utf-8")).get("model") == model:
        return
    for name in (CONFIG_FILE, RESULTS_JSON, RESULTS_MD, COMPARISON_MD, COMPARISON_JSON):
        (eval_dir / name).unlink(missing_ok=True)
    shutil.rmtree(eval_dir / EXAMPLES_DIR, ignore_errors=True)


def _cell(value: Any, scale: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{decimals}f}"


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: a row per metric, a column per stage present (averages over datasets)."""
    stages = [(key, label) for key, label in STAGES if key in results]
    first = next(iter(results.values()))
    lines = [
        f"On the same {first['average'].get('n', 0):.0f} questions with engine "
        f"`{first['engine']}` (greedy):",
        "",
        "| metric | " + " | ".join(label for _, label in stages) + " |",
        "|---|" + "---:|" * len(stages),
    ]
    for metric, label, scale, decimals in _ROWS:
        cells = [_cell(results[key]["average"].get(metric), scale, decimals) for key, _ in stages]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

