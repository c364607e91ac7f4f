"""Figures from already computed data (summaries.py); each function returns a matplotlib Figure.

Nothing here computes a statistic: bands, means and CIs arrive as columns. Figures are built on
``matplotlib.figure.Figure`` objects directly (no pyplot global state), so any backend works and
``save_figure`` writes PNG and SVG without a display.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from fspbench import claims as kinds
from fspbench import methods
from fspbench.io import atomic_write_bytes

_CYCLE = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _color(label: str, i: int) -> str:
    """A method's own colour (``Method.color``) for a label that starts with its name, else the i-th of a cycle."""
    name = label.split(" ")[0]
    own = methods.get(name).color if name in methods.names() else ""
    return own or _CYCLE[i % len(_CYCLE)]


def learning_curves(acc: dict[str, pd.DataFrame], stage1: pd.DataFrame, title: str,
                    target: float | None = None) -> Figure:
    """Stage 1 apart, then test accuracy against main-task steps and against seconds.

    ``acc``: {"steps": bands, "seconds": bands} of summaries.band rows (label, x, mean, low, high, n)
    for every compared side; ``stage1``: bands of the stage-1 loss of the two-stage sides (may be
    empty); ``target``: accuracy (percent) drawn as a line.
    """
    fig = Figure(figsize=(14, 4), layout="constrained")
    ax0, ax1, ax2 = fig.subplots(1, 3)
    labels = list(dict.fromkeys(acc["steps"]["label"]))
    for ax, key, xlabel in ((ax1, "steps", "main-task steps (stage 2 of two-stage methods)"),
                            (ax2, "seconds", "training seconds, stage 1 included")):
        _bands(ax, acc[key], labels)
        if target is not None:
            ax.axhline(target, color="black", linewidth=1, linestyle="--", label=f"target {target:.2f}%")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%), curve images")
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    if stage1.empty:
        ax0.text(0.5, 0.5, "no stage 1", ha="center", va="center", transform=ax0.transAxes)
    else:
        _bands(ax0, stage1, list(dict.fromkeys(stage1["label"])))
        ax0.set_yscale("log")
        ax0.legend(fontsize=7)
    ax0.set_xlabel("stage-1 steps")
    ax0.set_ylabel("stage-1 training loss (FSP or hint)")
    ax0.grid(alpha=0.3)
    fig.suptitle(title + " (mean and 95% t band over seeds)")
    return fig


def _bands(ax: Any, bands: pd.DataFrame, labels: list[str]) -> None:
    linestyles = ["-", "--", ":", "-."]
    for i, label in enumerate(labels):
        b = bands[bands["label"] == label].astype({"x": float, "mean": float, "low": float, "high": float})
        if b.empty:
            continue
        same = [lab for lab in labels[:i] if lab.split(" ")[0] == label.split(" ")[0]]
        color, ls = _color(label, i), linestyles[len(same) % len(linestyles)]
        ax.plot(b["x"], b["mean"], color=color, linestyle=ls, marker="o", markersize=2.5,
                label=f"{label} (n={int(b['n'].max())})")
        ax.fill_between(b["x"], b["low"], b["high"], color=color, alpha=0.18, linewidth=0)


def forest_plot(rows: pd.DataFrame, boundaries: dict[str, list[float]], notes: dict[str, str],
                titles: dict[str, str], show_roles: bool = True) -> Figure:
    """Every test's estimate with its 95% interval, one panel per claim, against its decision boundaries.

    ``rows``: summaries.forest_rows (claim, label, role, estimate, low, high); ``boundaries``: claim ->
    x positions drawn as vertical lines (0, and -margin for non-inferiority); ``notes``: claim -> the
    regime and verdict printed under the panel's title.
    """
    claims = [c for c in titles if c in set(rows["claim"])]
    heights = [max(1, (rows["claim"] == c).sum()) for c in claims]
    fig = Figure(figsize=(10, 1.2 + 0.38 * sum(heights) + 0.9 * len(claims)), layout="constrained")
    axes = fig.subplots(len(claims), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    markers = {"decides": ("D", "black"), "regime": ("s", "#7f7f7f"), "control": ("o", "#1f77b4"),
               "sweep": ("v", "#2ca02c")}
    for ax, claim in zip(axes, claims):
        sel = rows[rows["claim"] == claim].reset_index(drop=True)
        ys = list(range(len(sel)))[::-1]
        for y, r in zip(ys, sel.itertuples()):
            m, color = markers.get(r.role, ("o", "#1f77b4"))
            if r.low == r.low:  # NaN interval: the point alone
                ax.plot([r.low, r.high], [y, y], color=color, linewidth=2)
            ax.plot([r.estimate], [y], marker=m, color=color, markersize=7)
        for x in boundaries.get(claim, [0.0]):
            ax.axvline(x, color="#d62728" if x else "black", linestyle="--" if x else "-", linewidth=1)
        ax.set_yticks(ys, [f"{r.label} [{r.role}]" if show_roles else r.label for r in sel.itertuples()], fontsize=8)
        ax.set_title(f"{titles[claim]}\n{notes.get(claim, '')}", fontsize=8.5, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("difference in final test accuracy (points), 95% interval (the deciding test's: repeated)")
    return fig


def budget_sweep(rows: pd.DataFrame, titles: dict[str, str]) -> Figure:
    """FSP minus scratch at matched main-task budgets (fraction of the full budget), one line per claim."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for i, (claim, sel) in enumerate(rows.groupby("claim", sort=False)):
        sel = sel.sort_values("fraction")
        x = sel["fraction"].to_numpy() * (1 + 0.03 * (i - 1))  # a small dodge so intervals do not overlap
        ax.errorbar(x, sel["estimate"], yerr=[sel["estimate"] - sel["low"], sel["high"] - sel["estimate"]],
                    marker="o", capsize=3, color=_CYCLE[i % len(_CYCLE)], label=titles.get(claim, claim))
    ax.axhline(0, color="black", linewidth=1)
    ax.set_xscale("log")
    fracs = sorted(set(rows["fraction"]))
    ax.set_xticks(fracs, [f"{f:.2g}" for f in fracs])
    ax.set_xlabel("main-task budget, fraction of the full budget (both sides matched)")
    ax.set_ylabel("FSP minus scratch (points), 95% interval")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def final_accuracy(summary: pd.DataFrame, points: pd.DataFrame, title: str) -> Figure:
    """Every seed's final accuracy and each arm's mean with its 95% t interval; one axis per task.

    ``summary``: one row per arm with panel (a task and its classes), label, mean, ci_low, ci_high, in
    the order arms should stand (compared arms next to each other); ``points``: label, acc (percent).
    """
    panels = list(dict.fromkeys(summary["panel"]))
    widths = [max(2, (summary["panel"] == p).sum()) for p in panels]
    fig = Figure(figsize=(max(5.0, 0.9 * sum(widths) + 2), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    for ax, panel in zip(axes, panels):
        sel = summary[summary["panel"] == panel].reset_index(drop=True)
        for i, row in enumerate(sel.itertuples(index=False)):
            color = _color(row.label.split(": ")[-1], i)
            acc = points.loc[points["label"] == row.label, "acc"].to_numpy()
            offsets = [(k - (len(acc) - 1) / 2) * 0.06 for k in range(len(acc))]
            ax.scatter([i - 0.15 + o for o in offsets], acc, color=color, alpha=0.6, s=14, zorder=2)
            low = row.mean - row.ci_low if row.ci_low == row.ci_low else 0.0  # NaN CI: no bar
            high = row.ci_high - row.mean if row.ci_high == row.ci_high else 0.0
            ax.errorbar([i + 0.15], [row.mean], yerr=[[low], [high]], fmt="D", color=color, capsize=4, zorder=3)
        ax.set_xticks(range(len(sel)), [lab.split(": ", 1)[-1] for lab in sel["label"]], rotation=35, ha="right",
                      fontsize=7)
        ax.set_title(panel, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("final test accuracy (%)")
    fig.suptitle(title + "; points: seeds; diamond: mean with 95% t interval", fontsize=10)
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


def look_paths(rows: pd.DataFrame, boundaries: dict[str, list[float]], titles: dict[str, str]) -> Figure:
    """Each claim's path across its looks: the estimate and its repeated interval at n seeds per arm.

    ``rows``: summaries.look_rows (claim, look, n, estimate, low, high, decision); ``boundaries``: claim ->
    the decision lines (0 and the smallest effect of interest, or -margin).
    """
    claims = [c for c in titles if c in set(rows["claim"])]
    fig = Figure(figsize=(4.2 * max(1, len(claims)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(claims)), squeeze=False)[0]
    for ax, claim in zip(axes, claims):
        sel = rows[rows["claim"] == claim].sort_values("look")
        for r in sel.itertuples():
            color = {"supported": "#2ca02c", "contradicted": "#d62728"}.get(r.decision, "black")
            if r.low == r.low:
                ax.plot([r.n, r.n], [r.low, r.high], color=color, linewidth=2)
            ax.plot([r.n], [r.estimate], marker="D", color=color)
            ax.annotate(r.decision, (r.n, r.high), textcoords="offset points", xytext=(4, 2), fontsize=7)
        ax.plot(sel["n"], sel["estimate"], color="black", linewidth=0.8, alpha=0.6)
        for x in boundaries.get(claim, [0.0]):
            ax.axhline(x, color="black" if x == 0 else "#d62728", linestyle="-" if x == 0 else "--", linewidth=1)
        ax.set_xticks(sorted(set(sel["n"])))
        ax.set_xlabel("seeds per arm at the look")
        ax.set_title(titles[claim], fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FSP minus scratch (points), repeated interval")
    fig.suptitle("Each claim across its looks (green: supported, red: contradicted, black: open); dashed: the "
                 "smallest effect of interest or -margin", fontsize=9)
    return fig


def teacher_gains(rows: pd.DataFrame, titles: dict[str, str]) -> Figure:
    """Each FSP student's gain over scratch against its own teacher's final accuracy, one panel per claim."""
    claims = [c for c in titles if c in set(rows["claim"])]
    fig = Figure(figsize=(4.2 * max(1, len(claims)), 3.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(claims)), squeeze=False)[0]
    for ax, claim in zip(axes, claims):
        sel = rows[rows["claim"] == claim]
        ax.scatter(sel["teacher_acc"], sel["gain"], color=_color(kinds.TREATMENT, 0), s=18)
        ax.axhline(0, color="black", linewidth=1)
        ax.set_xlabel("its teacher's final test accuracy (%)")
        against = sel["against"].iloc[0] if not sel.empty else ""
        ax.set_title(f"{titles[claim]}\n(gain against {against})", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FSP student minus scratch (points)")
    fig.suptitle("Every FSP student has its own teacher: its gain against its teacher's accuracy", fontsize=9)
    return fig


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name``.png (dpi 120) and ``name``.svg (stable: fixed hash salt, no date); returns the paths.

    Each is drawn in memory and written atomically (fspbench.io), so a full disk leaves no half-drawn figure.
    """
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    with mpl.rc_context({"svg.hashsalt": "fspbench", "svg.fonttype": "path"}):
        for path, kwargs in ((png, {"dpi": 120, "metadata": {"Software": None}}),
                             (svg, {"metadata": {"Date": None, "Creator": None}})):
            buf = io.BytesIO()
            fig.savefig(buf, format=path.suffix[1:], **kwargs)
            atomic_write_bytes(path, buf.getvalue())
    return [png, svg]
