"""Figures from already computed data (summaries.py); each function returns a matplotlib Figure.

Nothing here computes a statistic: bands, means and CIs arrive as columns. Figures are built on
``matplotlib.figure.Figure`` objects directly (no pyplot global state), so any backend works and
``save_figure`` writes PNG and SVG without a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

COLORS = {"fsp": "#1f77b4", "scratch": "#d62728", "fitnet": "#2ca02c", "kd": "#9467bd"}
_CYCLE = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _color(label: str, i: int) -> str:
    return _CYCLE[i % len(_CYCLE)] if label.split(" ")[0] not in COLORS else COLORS[label.split(" ")[0]]


def learning_curves(bands: pd.DataFrame, title: str, init_end: tuple[float, float] = (0.0, 0.0),
                    target: float | None = None) -> Figure:
    """Mean test accuracy with its 95% band per compared side; steps (left) and seconds (right).

    ``bands``: summaries.curve_band rows (label, step, seconds, mean, low, high); ``init_end``:
    (steps, seconds) where stage 1 ends, shaded; ``target``: accuracy (percent) drawn as a line.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    labels = list(dict.fromkeys(bands["label"]))
    linestyles = ["-", "--", ":", "-."]
    for ax, x, xlabel, shade in ((axes[0], "step", "optimizer steps (all stages)", init_end[0]),
                                 (axes[1], "seconds", "wall-clock seconds (teacher forward passes included)",
                                  init_end[1])):
        if shade > 0:
            ax.axvspan(0, shade, color="0.85", label="stage 1 (FSP only)")
        for i, label in enumerate(labels):
            b = bands[bands["label"] == label]
            same = [lab for lab in labels[:i] if lab.split(" ")[0] == label.split(" ")[0]]
            color, ls = _color(label, i), linestyles[len(same) % len(linestyles)]
            ax.plot(b[x], b["mean"], color=color, linestyle=ls, marker="o", markersize=3,
                    label=f"{label} (n={int(b['n'].max())})")
            ax.fill_between(b[x], b["low"], b["high"], color=color, alpha=0.2, linewidth=0)
        if target is not None:
            ax.axhline(target, color="black", linewidth=1, linestyle="--", label=f"target {target:.2f}%")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%), mean and 95% band over seeds")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return fig


def final_accuracy(summary: pd.DataFrame, points: pd.DataFrame, title: str) -> Figure:
    """Every seed's final accuracy as a point, and each side's mean with its bootstrap CI as an error bar.

    ``summary``: one row per side with label, mean, ci_low, ci_high; ``points``: label, acc (percent).
    """
    fig = Figure(figsize=(max(4.0, 1.3 * len(summary) + 1.5), 4), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(summary.itertuples(index=False)):
        color = _color(row.label, i)
        acc = points.loc[points["label"] == row.label, "acc"].to_numpy()
        offsets = [(k - (len(acc) - 1) / 2) * 0.06 for k in range(len(acc))]
        ax.scatter([i - 0.15 + o for o in offsets], acc, color=color, alpha=0.6, s=18, zorder=2)
        low = row.mean - row.ci_low if row.ci_low == row.ci_low else 0.0  # NaN CI: no bar
        high = row.ci_high - row.mean if row.ci_high == row.ci_high else 0.0
        ax.errorbar([i + 0.15], [row.mean], yerr=[[low], [high]], fmt="D", color=color, capsize=4, zorder=3)
    ax.set_xticks(range(len(summary)), list(summary["label"]), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(title + "\npoints: seeds; diamond: mean with 95% bootstrap CI", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


def steps_to_target(per_run: pd.DataFrame, target: float, title: str) -> Figure:
    """Per run: steps to the target with stage 1 counted, without it, and seconds; one panel each.

    ``per_run``: summaries.per_run_to_target rows with a ``label`` column; hollow markers are runs that
    never reached the target (drawn at their last evaluation: a lower bound).
    """
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    labels = list(dict.fromkeys(per_run["label"]))
    panels = (("steps", "steps, stage 1 included"), ("main_steps", "main-task steps (stage 1 not counted)"),
              ("seconds", "wall-clock seconds"))
    for ax, (col, name) in zip(axes, panels):
        for i, label in enumerate(labels):
            sel = per_run[per_run["label"] == label].reset_index(drop=True)
            color = _color(label, i)
            for k, r in sel.iterrows():
                y = i + (k - (len(sel) - 1) / 2) * 0.08
                ax.scatter([r[col]], [y], s=30, zorder=2, color=color if r["reached"] else "none",
                           edgecolors=color)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_xlabel(name)
        ax.set_xlim(left=0)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{title}: to reach {target:.2f}% (filled: reached; hollow: never, shown at its last evaluation)",
                 fontsize=10)
    return fig


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name``.png (dpi 120) and ``name``.svg (stable: fixed hash salt, no date); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    with mpl.rc_context({"svg.hashsalt": "fspbench", "svg.fonttype": "path"}):
        fig.savefig(png, dpi=120, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return [png, svg]
