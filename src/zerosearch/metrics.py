"""Where a run's numbers go: ``metrics.jsonl``, ``rollouts/step_<N>.jsonl``, TensorBoard, W&B.

On resume, lines of ``metrics.jsonl`` for steps after the checkpoint (the step that was in progress
when the run was killed, whose line may or may not have been written) are dropped, so the file always
reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from zerosearch.config import TrainConfig, to_dict
from zerosearch.jsonio import json_safe

METRICS_FILE = "metrics.jsonl"
ROLLOUTS_DIR = "rollouts"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # a line torn by a kill mid-write ends the readable history; a bad line with lines after it
                # is no torn write, and what it hides is said
                after = sum(1 for rest in lines[number:] if rest.strip())
                if after:
                    print(f"[zerosearch] warning: {path}:{number} is not a JSON line; the {len(rows)} step(s) "
                          f"before it are read, the {after} line(s) after it are not", file=sys.stderr)
                break
    return rows


class MetricsLogger:
    def __init__(self, run_dir: Path, cfg: TrainConfig, resume_step: int = 0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        kept = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        (self.run_dir / ROLLOUTS_DIR).mkdir(parents=True, exist_ok=True)
        self.tb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise RuntimeError("tensorboard=true needs `pip install tensorboard`") from exc
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step + 1)
        self.wandb = None
        if cfg.wandb:
            try:
                import wandb
            except ImportError as exc:  # pragma: no cover
                raise RuntimeError("wandb=true needs `pip install wandb` (and `wandb login`)") from exc
            self.wandb = wandb.init(project=cfg.wandb_project, name=self.run_dir.name, dir=str(self.run_dir),
                                    config=to_dict(cfg), id=self.run_dir.name, resume="allow")

    def log(self, metrics: dict[str, Any], records: list[dict[str, Any]]) -> None:
        step = metrics["step"]
        with (self.run_dir / ROLLOUTS_DIR / f"step_{step}.jsonl").open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(json_safe(metrics)) + "\n")  # JSON has no NaN; a missing value reads as null
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb is not None:
            for k, v in numeric.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
