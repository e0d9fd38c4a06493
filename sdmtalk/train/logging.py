"""Metrics of a training run: ``metrics.csv`` (one row per logged step and split) and
``loss.png`` (train and val curves). Written by rank 0 only."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

FIXED_COLUMNS = ["step", "split"]
NOT_LOSSES = ("lr", "grad_norm", "steps_per_s", "skipped_steps")  # logged beside the losses, not plotted


class MetricsLog:
    """Rows ``{step, split, <metric>: float}`` kept in memory and mirrored to a CSV file.

    Columns are the union of the metric names seen so far (blank where a row lacks one);
    a new name rewrites the file with the wider header.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.columns = list(FIXED_COLUMNS)

    def load(self, up_to_step: int) -> None:
        """Read an existing file, dropping rows after ``up_to_step`` (a resumed run redoes
        the steps that followed its last checkpoint)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or FIXED_COLUMNS)
            for row in reader:
                step = int(row["step"])
                if step <= up_to_step:
                    self.rows.append({"step": step, "split": row["split"],
                                      **{k: float(v) for k, v in row.items()
                                         if k not in FIXED_COLUMNS and v != ""}})
        self._rewrite()

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self.columns, restval="").writerow(_fmt(row))

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.columns, restval="")
            writer.writeheader()
            writer.writerows(_fmt(r) for r in self.rows)
        os.replace(tmp, self.path)

    def series(self, split: str, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric of one split."""
        pts = [(r["step"], r[name]) for r in self.rows if r["split"] == split and name in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    def names(self, split: str) -> list[str]:
        return [c for c in self.columns[len(FIXED_COLUMNS):]
                if any(c in r for r in self.rows if r["split"] == split)]


def _fmt(row: dict) -> dict:
    return {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}


def plot_losses(log: MetricsLog, path: Path, total: str = "total") -> None:
    """``path`` (PNG): train and val ``total`` loss; every train loss term; the val
    metrics that are not losses (e.g. lip sync correlation)."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot: no global backend state

    fig = Figure(figsize=(15, 4))
    ax_total, ax_terms, ax_val = fig.subplots(1, 3)
    for split, style in (("train", "-"), ("val", "o-")):
        steps, values = log.series(split, total)
        if steps:
            ax_total.plot(steps, values, style, label=f"{split} {total}", markersize=3)
    ax_total.set_title("total loss")
    for name in log.names("train"):
        if name not in (total, *NOT_LOSSES):
            ax_terms.plot(*log.series("train", name), label=name)
    ax_terms.set_title("train loss terms")
    for name in log.names("val"):
        if name not in log.names("train"):
            ax_val.plot(*log.series("val", name), "o-", label=name, markersize=3)
    ax_val.set_title("val metrics")
    ax_val.set_xlabel("step")
    if ax_val.lines:
        ax_val.legend(fontsize=7)
    for ax in (ax_total, ax_terms):
        ax.set_xlabel("step")
        if ax.lines and all(_positive(line.get_ydata()) for line in ax.lines):
            ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.92, wspace=0.2)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)


def _positive(values) -> bool:
    return len(values) > 0 and all(math.isfinite(v) and v > 0 for v in values)
