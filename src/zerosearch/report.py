"""An HTML report of a training run: curves, a sample of trajectories, and the evaluation table.

``write_report(run_dir)`` reads ``metrics.jsonl``, ``config.yaml``, ``rollouts/step_*.jsonl`` and, when
present, ``eval/results.md`` (or ``results.json``, also one level down: ``eval/<name>/``), and writes
``report/index.html`` with the plots embedded as base64 PNG data URIs (the same PNGs are saved beside it
for reuse). The page is one self-contained file: inline CSS, no scripts, every text HTML-escaped.

Missing data is shown as missing, never invented: a metric that is absent or NaN/null at every step
is left out of its plot (a plot with nothing left says so), a single step is drawn as points, and a
run without rollout logs or evaluation simply has no such section.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from zerosearch.jsonio import read_jsonl, skip_bad_lines
from zerosearch.metrics import METRICS_FILE, ROLLOUTS_DIR, read_metrics

__all__ = ["PLOTS", "REPORT_DIR", "markdown_tables_to_html", "render_plot", "write_report"]

REPORT_DIR = "report"
_STEP_FILE = re.compile(r"step_(\d+)\.jsonl$")


# ---------------------------------------------------------------------------------------------
# Plots


@dataclass(frozen=True)
class Panel:
    """One set of axes: ``series`` are (metric key, legend label) pairs; ``stacked`` stacks them."""

    ylabel: str
    series: tuple[tuple[str, str], ...]
    stacked: bool = False


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    panels: tuple[Panel, ...]


PLOTS: tuple[Plot, ...] = (
    Plot("reward", "Reward and answer quality", (
        Panel("score", (("reward_mean", "reward"), ("reward_moving_average", "reward, moving average"),
                        ("f1_mean", "F1"), ("em_mean", "EM"), ("cover_em_mean", "cover-EM"))),)),
    Plot("groups", "Groups of rollouts (a group baseline learns only from groups whose rewards differ)", (
        Panel("groups per step", (("groups_sampled", "sampled"), ("groups_uniform", "uniform (no signal)"),
                                  ("groups_trained", "trained on"))),)),
    Plot("curriculum", "Noise curriculum", (
        Panel("probability", (("noise_probability", "p(noisy) scheduled"),
                              ("noisy_share", "noisy share of search calls"))),)),
    Plot("search", "Searches and turns", (
        Panel("per rollout", (("searches_per_rollout", "searches"), ("turns_mean", "turns"))),
        Panel("rate", (("invalid_action_rate", "invalid actions / turn"), ("answered_rate", "answered"),
                       ("well_formed_rate", "well formed"), ("context_exhausted_rate", "context exhausted"))),
    )),
    Plot("length", "Response length", (
        Panel("tokens", (("response_tokens_mean", "response (all)"),
                         ("policy_tokens_mean", "written by the policy"))),)),
    Plot("time", "Time per step", (
        Panel("seconds", (("generate_seconds", "generation"), ("search_seconds", "search"),
                          ("update_seconds", "update"), ("other_seconds", "other")), stacked=True),)),
    Plot("kl_entropy", "KL to the reference and entropy", (
        Panel("KL", (("kl", "KL"),)),
        Panel("entropy (nats)", (("entropy", "entropy"),)),
    )),
    Plot("loss", "Losses and gradient", (
        Panel("loss", (("policy_loss", "policy loss"), ("value_loss", "value loss"))),
        Panel("norm", (("grad_norm", "grad norm"),)),
        Panel("fraction", (("clipfrac", "clip fraction"),)),
    )),
)


def _number(value: Any) -> float:
    """A finite float, or NaN for None / missing / non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _derived(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row with the plotted quantities the trainer does not log directly."""
    row = dict(row)
    row["policy_tokens_mean"] = _number(row.get("response_tokens_mean")) * _number(row.get("loss_mask_fraction"))
    parts = [_number(row.get(k)) for k in ("step_seconds", "generate_seconds", "search_seconds", "update_seconds")]
    row["other_seconds"] = max(0.0, parts[0] - sum(parts[1:])) if not any(map(math.isnan, parts)) else math.nan
    return row


MOVING_AVERAGE_STEPS = 10  # the reward's trailing window: one step's reward swings with its few rollouts


def with_moving_average(rows: Sequence[dict[str, Any]], key: str = "reward_mean",
                        window: int = MOVING_AVERAGE_STEPS) -> list[dict[str, Any]]:
    """``rows`` with ``<key without _mean>_moving_average``: the mean of ``key`` over each step's trailing
    ``window`` steps (fewer at the start; steps where ``key`` is missing are skipped)."""
    name = key.removesuffix("_mean") + "_moving_average"
    out, recent = [], []
    for row in rows:
        value = _number(row.get(key))
        if not math.isnan(value):
            recent = (recent + [value])[-window:]
        out.append({**row, name: sum(recent) / len(recent) if recent else math.nan})
    return out


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]] | None:
    """(steps, values) of ``key``, or None when it has no finite value at any step."""
    steps = [_number(r.get("step")) for r in rows]
    values = [_number(r.get(key)) for r in rows]
    if all(math.isnan(v) for v in values):
        return None
    return steps, values


def _draw_panel(ax: Any, rows: Sequence[dict[str, Any]], panel: Panel) -> bool:
    """Draw one panel; False if none of its series has data."""
    from matplotlib.ticker import MaxNLocator

    present = [(label, data) for key, label in panel.series if (data := _series(rows, key)) is not None]
    if not present:
        return False
    few = len(rows) <= 60
    if panel.stacked:
        steps = present[0][1][0]
        values = [[0.0 if math.isnan(v) else v for v in data[1]] for _, data in present]
        if len(steps) > 1:
            ax.stackplot(steps, values, labels=[label for label, _ in present], alpha=0.85)
        else:  # a single step: a stacked bar shows the split where an area cannot
            bottom = 0.0
            for (label, _), vals in zip(present, values):
                ax.bar(steps, vals, bottom=bottom, label=label, width=0.4)
                bottom += vals[0]
    else:
        for label, (steps, values) in present:
            ax.plot(steps, values, label=label, marker="o" if few else None, markersize=3, linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel(panel.ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if panel.stacked:  # an area fills the axes: the legend goes below them
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=len(present), frameon=False)
    else:
        ax.legend(fontsize=8, loc="best")
    return True


def render_plot(rows: Sequence[dict[str, Any]], plot: Plot) -> bytes | None:
    """The plot as PNG bytes, or None when none of its metrics was logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * len(plot.panels), 3.3), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(plot.panels), squeeze=False)[0]
    drawn = [_draw_panel(ax, rows, panel) for ax, panel in zip(axes, plot.panels)]
    if not any(drawn):
        return None
    for ax, ok in zip(axes, drawn):
        if not ok:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", color="#888", transform=ax.transAxes)
    fig.suptitle(plot.title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Reading the run


def _rollout_files(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / ROLLOUTS_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.search(p.name))]
    return sorted(found)


def _sample_steps(files: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
    """The first, middle and last logged steps (fewer when fewer are logged)."""
    if not files:
        return []
    picks = sorted({0, len(files) // 2, len(files) - 1})
    return [files[i] for i in picks]


def _read_config(run_dir: Path) -> tuple[dict[str, Any], str]:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}, ""
    import yaml

    from zerosearch.config import yaml_load

    text = path.read_text(encoding="utf-8")
    try:
        data = yaml_load(text)
    except yaml.YAMLError:
        data = None
    return (data if isinstance(data, dict) else {}), text


def _eval_tables(run_dir: Path) -> list[tuple[str, str]]:
    """(label, markdown) of every evaluation under ``run_dir/eval`` (results.md, else results.json)."""
    from zerosearch.evaluate import RESULTS_JSON, RESULTS_MD, format_results_table

    root = run_dir / "eval"
    if not root.is_dir():
        return []
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    tables = []
    for folder in folders:
        label = "eval" if folder == root else f"eval/{folder.name}"
        if (folder / RESULTS_MD).exists():
            tables.append((label, (folder / RESULTS_MD).read_text(encoding="utf-8")))
        elif (folder / RESULTS_JSON).exists():
            results = json.loads((folder / RESULTS_JSON).read_text(encoding="utf-8"))
            tables.append((label, format_results_table(results)))
    return tables


# ---------------------------------------------------------------------------------------------
# HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    number = _number(value)
    if not math.isfinite(number):
        return "–"
    if number == int(number) and abs(number) < 1e6:
        return str(int(number))
    return f"{number:.{digits}g}" if abs(number) < 1e-3 else f"{number:.{digits}f}"


def _inline_markdown(text: str) -> str:
    """Escape, then render ``**bold**`` and ```code``` (all the markdown results.md uses)."""
    text = _e(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_tables_to_html(markdown: str) -> str:
    """Pipe tables become ``<table>``, other non-blank lines paragraphs (enough for results.md)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append("<table class='eval'><thead><tr>" + "".join(f"<th>{_inline_markdown(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{_inline_markdown(c)}</td>" for c in row) + "</tr>" for row in body)
                       + "</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
            continue
        flush()
        if stripped:
            out.append(f"<p>{_inline_markdown(stripped)}</p>")
    flush()
    return "\n".join(out)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2329}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 12px;border-bottom:1px solid #d8dde3;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 8px}
.sub{color:#5b6670;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;margin:8px 0 12px}
th,td{border:1px solid #d8dde3;padding:4px 10px;text-align:right} th:first-child,td:first-child{text-align:left}
th{background:#eef1f4}
.plots{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:6px}
figure img{display:block;max-width:100%;height:auto}
.missing{color:#8a939b;font-style:italic}
.traj{background:#fff;border:1px solid #d8dde3;border-left:5px solid #9aa5b1;border-radius:6px;
  padding:10px 14px;margin:10px 0}
.traj.good{border-left-color:#2e9d58} .traj.partial{border-left-color:#d9a21b} .traj.bad{border-left-color:#c94a4a}
.traj header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline}
.q{font-weight:600;flex:1 1 100%}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#eef1f4;color:#33404c}
.flag{display:inline-block;border-radius:4px;padding:0 6px;font-size:11px;font-weight:700;letter-spacing:.04em;
  color:#fff}
.flag.noisy{background:#c94a4a} .flag.useful{background:#2e9d58} .flag.failed{background:#6d2b8f}
ol.turns{list-style:none;padding:0;margin:8px 0}
.turn{border-top:1px dashed #e0e4e8;padding:6px 0}
.turn .label{font-size:12px;color:#5b6670;font-weight:600;text-transform:uppercase}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f5f7;border-radius:4px;padding:6px 8px;margin:4px 0;
  font-size:12.5px}
.query{font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
details{margin:4px 0} summary{cursor:pointer;color:#2b5f9e}
details ol{margin:4px 0;padding-left:22px;font-size:12.5px} details li{margin:2px 0}
.answer{margin-top:6px}
"""


def _plot_section(rows: Sequence[dict[str, Any]], out_dir: Path) -> str:
    figures = []
    for plot in PLOTS:
        png = render_plot(rows, plot)
        if png is None:
            figures.append(f"<figure><p class='missing'>{_e(plot.title)}: not logged in this run</p></figure>")
            continue
        (out_dir / f"{plot.name}.png").write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        figures.append(f"<figure id='plot-{plot.name}'><img src='data:image/png;base64,{data}' "
                       f"alt='{_e(plot.title)}'></figure>")
    return "<h2>Training curves</h2><div class='plots'>" + "\n".join(figures) + "</div>"


SUMMARY_METRICS = (
    ("reward_mean", "reward"), ("f1_mean", "F1"), ("em_mean", "EM"), ("cover_em_mean", "cover-EM"),
    ("noise_probability", "p(noisy)"), ("searches_per_rollout", "searches / rollout"),
    ("invalid_action_rate", "invalid actions / turn"), ("response_tokens_mean", "response tokens"),
    ("reward_moving_average", f"reward, mean of the last {MOVING_AVERAGE_STEPS} steps"),
    ("kl", "KL"), ("entropy", "entropy"), ("search_failures", "search failures"),
    ("search_echoes", "simulator echoes (failed searches)"), ("groups_trained", "groups trained on"),
    ("step_seconds", "seconds / step"),
)


def _summary_section(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<h2>Summary</h2><p class='missing'>metrics.jsonl holds no steps yet.</p>"
    first, last = rows[0], rows[-1]
    body = "".join(
        f"<tr><td>{_e(label)}</td><td>{_fmt(first.get(key))}</td><td>{_fmt(last.get(key))}</td></tr>"
        for key, label in SUMMARY_METRICS if key in first or key in last  # a run logs what its settings make
    )
    return (f"<h2>Summary</h2><table><thead><tr><th>metric</th><th>step {_e(first.get('step'))}</th>"
            f"<th>step {_e(last.get('step'))}</th></tr></thead><tbody>{body}</tbody></table>")


def _flag(turn: dict[str, Any]) -> str:
    if turn.get("error"):
        return "<span class='flag failed'>SEARCH FAILED</span>"
    if turn.get("noisy") is True:
        return "<span class='flag noisy'>NOISY</span>"
    if turn.get("noisy") is False:
        return "<span class='flag useful'>USEFUL</span>"
    return ""


def _turn_html(index: int, turn: dict[str, Any]) -> str:
    action = str(turn.get("action", "?"))
    note = " · corrective message appended" if action == "invalid" else ""
    parts = [f"<li class='turn {_e(action)}'><div class='label'>turn {index} · {_e(action)}{note} {_flag(turn)}</div>",
             f"<pre>{_e(turn.get('text', ''))}</pre>"]
    if turn.get("query") is not None:
        parts.append(f"<div class='query'>query: {_e(turn['query'])}</div>")
    if turn.get("error"):
        parts.append(f"<div class='query'>error: {_e(turn['error'])}</div>")
    documents = turn.get("documents") or []
    if documents:
        kind = " (noisy)" if turn.get("noisy") is True else " (useful)" if turn.get("noisy") is False else ""
        items = "".join(f"<li>{_e(doc)}</li>" for doc in documents)
        parts.append(f"<details><summary>{len(documents)} document(s){kind}</summary><ol>{items}</ol></details>")
    return "".join(parts) + "</li>"


def _trajectory_html(record: dict[str, Any]) -> str:
    reward = _number(record.get("reward", record.get("f1")))
    grade = "good" if reward >= 1 else "partial" if reward > 0 else "bad" if not math.isnan(reward) else ""
    golds = " | ".join(str(g) for g in record.get("golden_answers", []))
    turns = "".join(_turn_html(i, t) for i, t in enumerate(record.get("turns", []), start=1))
    answer = record.get("answer")
    answer_html = f"<b>{_e(answer)}</b>" if answer is not None else "<span class='missing'>no answer</span>"
    scores = " · ".join(f"{label} {_fmt(record.get(key), 2)}" for key, label in
                        (("f1", "F1"), ("em", "EM"), ("cover_em", "cover-EM")) if key in record)
    return (f"<article class='traj {grade}'><header><span class='q'>Q: {_e(record.get('question', ''))}</span>"
            f"<span class='badge'>gold: {_e(golds)}</span><span class='badge'>reward {_fmt(reward, 2)}</span>"
            f"<span class='badge'>{_e(scores)}</span><span class='badge'>{_e(record.get('status'))}</span>"
            f"<span class='badge'>{_e(record.get('response_tokens', '?'))} tokens</span></header>"
            f"<ol class='turns'>{turns}</ol><div class='answer'>answer: {answer_html}</div></article>")


def _trajectory_section(run_dir: Path, per_step: int) -> str:
    chosen = _sample_steps(_rollout_files(run_dir))
    if not chosen:
        return ""
    parts = ["<h2>Sample trajectories</h2><p class='sub'>From the first, middle and last logged steps. "
             "Each search is marked <span class='flag useful'>USEFUL</span> or "
             "<span class='flag noisy'>NOISY</span> as the curriculum drew it; documents are folded. "
             "The left bar is green for reward 1, amber for partial credit, red for 0.</p>"]
    for step, path in chosen:
        # what can be read: a line torn by a kill is skipped
        records = [r for r in read_jsonl(path, skip_bad_lines) if isinstance(r, dict)][:per_step]
        parts.append(f"<h3 id='step-{step}'>Step {step}</h3>")
        parts += [_trajectory_html(r) for r in records] or ["<p class='missing'>no trajectories logged</p>"]
    return "\n".join(parts)


WARMUP_PLOT = Plot("warmup", "Format warm-up (before RL)", (
    Panel("NLL per policy token", (("warmup_loss", "training loss"),)),))


def _comparison_section(run_dir: Path) -> str:
    """The before/after table (untrained, warmed-up, RL-trained on the same questions), when evaluated, with the
    paired differences (95% CI, McNemar's p) under it."""
    from zerosearch.compare import COMPARISON_MD

    path = run_dir / "eval" / COMPARISON_MD
    if not path.exists():
        return ""
    markdown = path.read_text(encoding="utf-8") + _paired_of_an_older_run(run_dir / "eval")
    return f"<h2>Before and after</h2><div id='comparison'>{markdown_tables_to_html(markdown)}</div>"


def _paired_of_an_older_run(eval_dir: Path) -> str:
    """The paired differences of a run whose comparison was written before it held them (no ``paired`` in
    comparison.json), computed from its stages' evaluations; "" when it holds them or they cannot be paired."""
    from zerosearch.compare import COMPARISON_JSON, PAIRS, paired_comparisons, paired_table, stage_dir
    from zerosearch.eval_files import EXAMPLES_DIR

    try:
        summary = json.loads((eval_dir / COMPARISON_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        summary = {}
    if "paired" in summary:
        return ""
    paired: dict[str, Any] = {}
    for pair in PAIRS:  # one by one: a stage of other questions (an interrupted evaluation) drops only its row
        if all((stage_dir(eval_dir, stage) / EXAMPLES_DIR).is_dir() for stage in pair):
            try:
                paired.update(paired_comparisons(eval_dir, pair))
            except ValueError:
                continue
    table = paired_table(paired)
    return "\n" + table if table else ""


def _warmup_section(run_dir: Path, out_dir: Path) -> str:
    """Where the policy started: the warm-up's demonstrations and its loss curve (``warmup.json``)."""
    path = run_dir / "warmup.json"
    if not path.exists():
        return ""
    info = json.loads(path.read_text(encoding="utf-8"))
    demos = info.get("demonstrations") or {}
    sft = info.get("sft") or {}
    facts = (f"{demos.get('one_search', 0) + demos.get('two_searches', 0)} demonstrations "
             f"({demos.get('one_search', 0)} with one search, {demos.get('two_searches', 0)} with two) from "
             f"{demos.get('rows', 0)} training rows, {sft.get('steps', '?')} steps"
             + (" (taken from the cache)" if info.get("cached") else ""))
    parts = [f"<h2>Format warm-up</h2><p class='sub'>{_e(facts)}; model <code>{_e(info.get('model_dir'))}</code></p>"]
    rows = [{"step": step, "warmup_loss": loss} for step, loss in sft.get("loss_curve") or []]
    png = render_plot(rows, WARMUP_PLOT) if rows else None
    if png is not None:
        (out_dir / f"{WARMUP_PLOT.name}.png").write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure id='plot-warmup'><img src='data:image/png;base64,{data}' "
                     f"alt='{_e(WARMUP_PLOT.title)}'></figure>")
    return "\n".join(parts)


def _pool_section(run_dir: Path) -> str:
    """The difficulty-filtered training pool (``pool.json``): its size, the outcomes and the starting pass rates."""
    from zerosearch.pool import POOL_INFO, pool_summary, pool_table

    path = run_dir / POOL_INFO
    if not path.exists():
        return ""
    stats = json.loads(path.read_text(encoding="utf-8"))
    summary = pool_summary(stats).removeprefix("training pool: ")
    return (f"<h2>Training pool</h2><p class='sub'>{_e(summary)}; scored by <code>{_e(stats.get('model'))}</code> "
            f"with engine <code>{_e(stats.get('engine'))}</code></p>"
            f"<div id='pool'>{markdown_tables_to_html(pool_table(stats))}</div>")


def _eval_section(run_dir: Path) -> str:
    tables = _eval_tables(run_dir)
    if not tables:
        return ""
    parts = ["<h2>Evaluation</h2>"]
    for label, markdown in tables:
        parts.append(f"<h3>{_e(label)}</h3>{markdown_tables_to_html(markdown)}")
    return "\n".join(parts)


def _steps_done(rows: Sequence[dict[str, Any]], total: Any) -> str:
    done = rows[-1].get("step", len(rows)) if rows else 0
    return f"{done} of {total}" if total is not None else str(done)


def _header(run_dir: Path, config: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    curriculum = config.get("curriculum") or {}
    facts = [
        ("model", config.get("model")), ("algorithm", config.get("algorithm")),
        ("steps", _steps_done(rows, config.get("total_steps"))),
        ("prompts per step", config.get("prompts_per_step")),
        ("rollouts per prompt", config.get("rollouts_per_prompt")),
        ("max turns", config.get("max_turns")), ("top-k", config.get("topk")), ("lr", config.get("lr")),
        ("KL coef", config.get("kl_coef")), ("noise start", curriculum.get("start")),
        ("noise end", curriculum.get("end")),
    ]
    facts_html = " · ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in facts if v is not None)
    return f"<h1>ZeroSearch run {_e(run_dir.name)}</h1><p class='sub'>{facts_html}</p>"


def write_report(run_dir: str | Path, trajectories_per_step: int = 3) -> Path:
    """Write ``run_dir/report/index.html`` (and the plot PNGs beside it); return the HTML's path.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory (it has no metrics.jsonl).
    """
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).exists():
        raise FileNotFoundError(f"{run_dir} is not a training run directory: it has no {METRICS_FILE} "
                                "(pass the directory `zerosearch train` printed)")
    rows = with_moving_average([_derived(r) for r in read_metrics(run_dir)])
    config, config_text = _read_config(run_dir)
    out_dir = run_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        _header(run_dir, config, rows),
        _comparison_section(run_dir),
        _summary_section(rows),
        _warmup_section(run_dir, out_dir),
        _pool_section(run_dir),
        _plot_section(rows, out_dir) if rows else "",
        _eval_section(run_dir),
        _trajectory_section(run_dir, trajectories_per_step),
        f"<h2>Configuration</h2><details><summary>config.yaml</summary><pre>{_e(config_text)}</pre></details>"
        if config_text else "",
        f"<p class='sub'>Written by zerosearch report on {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>",
    ]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>ZeroSearch run {_e(run_dir.name)}</title><style>{CSS}</style></head><body><main>"
            + "\n".join(s for s in sections if s) + "</main></body></html>\n")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
