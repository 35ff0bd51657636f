"""Training curves of a run directory as one PNG: losses, D's outputs, speed and metrics against kimg.

Read from ``stats.jsonl`` (one record per tick) and ``metrics.jsonl`` (one per evaluated metric);
drawn with matplotlib, an optional extra (``pip install inrgan[plot]``), imported only when drawing.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PANELS = (
    ("losses", ("loss_G", "loss_D", "loss_r1")),
    ("D output (logits)", ("D_real", "D_fake")),
    ("speed (img/s)", ("img_per_s",)),
    ("augmentation p", ("aug_p",)),  # drawn only for runs that augment
)


class PlotError(ValueError):
    """A run directory whose logs cannot be read; the message names the file and line."""


@dataclass
class Curves:
    """Per-key series against kimg: ``stats[key] = (kimg, values)``; ``metrics[name]`` likewise."""

    stats: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    metrics: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def _records(path: Path) -> list[dict]:
    records = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlotError(f"{path}, line {i}: not a JSON record ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("kimg"), (int, float)):
            raise PlotError(f"{path}, line {i}: a record without a numeric 'kimg'")
        records.append(rec)
    return records


def _append(series: dict, key: str, kimg: float, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        xs, ys = series.setdefault(key, ([], []))
        xs.append(float(kimg))
        ys.append(float(value))


def read_curves(run_dir: str | os.PathLike) -> Curves:
    """The series of a run directory's ``stats.jsonl`` and (if present) ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    stats_path = run_dir / "stats.jsonl"
    if not stats_path.is_file():
        raise PlotError(f"{run_dir}: not a run directory with training stats (no stats.jsonl)")
    curves = Curves()
    for rec in _records(stats_path):
        for key in {k for _, keys in PANELS for k in keys}:
            _append(curves.stats, key, rec["kimg"], rec.get(key))
    if (run_dir / "metrics.jsonl").is_file():
        for rec in _records(run_dir / "metrics.jsonl"):
            _append(curves.metrics, str(rec.get("metric", "metric")), rec["kimg"], rec.get("value"))
    return curves


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw the run's curves into ``out`` (default ``RUN_DIR/plots/training.png``), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_bytes

    curves = read_curves(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "plots" / "training.png"
    panels = [(title, {k: curves.stats[k] for k in keys if k in curves.stats}) for title, keys in PANELS]
    panels = [(title, series) for title, series in panels if series or title != "augmentation p"]
    panels.append(("metrics", curves.metrics))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=100)
    for ax, (title, series) in zip(axes, panels, strict=True):
        for name, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=name)
        ax.set_title(title)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "none recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
