"""The report's tables as DataFrames, and their CSV and LaTeX files.

CSV floats use a fixed format and nothing time-dependent is added, so the same results give
byte-identical files. Accuracies are in percent, differences in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fspbench.analysis import Analysis, compare_accuracy
from fspbench.config import RunConfig
from fspbench.io import atomic_write_bytes
from fspbench.report.summaries import budget_match

NA = "not available"  # a paper cell that could not be verified: never an invented number
FLOAT_FORMAT = "%.4f"
FSP_FIELDS = ("pairs", "pool", "distance", "weights", "adapter")

# ---------------------------------------------------------------- (a), (b): verdicts and tests


def verdict_panel(analysis: Analysis) -> pd.DataFrame:
    """One row per claim: verdict, the main test's estimate and CI, n, and the rule that decided it."""
    rows = []
    for c in analysis.claims:
        t = c.tests[0] if c.tests else None
        rows.append({"claim": c.key, "verdict": c.verdict, "metric": t.metric if t else "",
                     "estimate": t.estimate if t else math.nan, "ci_low": t.ci[0] if t else math.nan,
                     "ci_high": t.ci[1] if t else math.nan, "n": t.n if t else 0, "rule": c.rule})
    return pd.DataFrame(rows)


def all_tests(analysis: Analysis) -> pd.DataFrame:
    """Every test of every claim, with both budget views (main-task steps and total steps)."""
    rows = []
    for c in analysis.claims:
        for t in c.tests:
            bm = budget_match(t, analysis.runs)
            rows.append({"claim": c.key, "test": t.name, "metric": t.metric, "estimate": t.estimate,
                         "ci_low": t.ci[0], "ci_high": t.ci[1], "n": t.n, "p_value": t.p_value,
                         "p_improvement": t.p_improvement, "failures": t.failures, "budget_match": bm["label"],
                         "budget": t.budget})
    return pd.DataFrame(rows, columns=["claim", "test", "metric", "estimate", "ci_low", "ci_high", "n", "p_value",
                                       "p_improvement", "failures", "budget_match", "budget"])


# ---------------------------------------------------------------- (c): groups


def group_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy per group (summaries.group_summary): group, method, arch, budget, n, mean, std, failures."""
    cols = ["role", "group", "method", "arch", "task", "budget", "n", "mean", "std", "ci_low", "ci_high", "failures"]
    return summary[cols].copy() if not summary.empty else pd.DataFrame(columns=cols)


# ---------------------------------------------------------------- (d): paper vs this run

# (source, setting, quantity, paper value or None, this-run key). None = not verified: "not available".
# this-run keys: claim.side where side is treatment or control mean, "teacher" = the claim group's teacher.
PAPER_ROWS: list[tuple[str, str, str, float | None, str]] = [
    ("paper (verified)", "CIFAR-10, ResNet-26 teacher -> student", "FSP student, single (%)", 92.14,
     "fast_optimization.treatment"),
    ("paper (verified)", "CIFAR-10, ResNet-26 teacher -> student", "teacher, single (%)", 91.75,
     "fast_optimization.teacher"),
    ("paper (verified)", "CIFAR-100, ResNet-32 (4x channels)", "trained normally, 64k iterations (%)", 64.15,
     "fast_optimization.control"),
    ("paper (verified)", "CIFAR-100, ResNet-32 (4x channels)", "trained normally, 21k iterations (%)", 61.32,
     "fast_optimization.short"),
    ("paper (verified)", "CIFAR-100, ResNet-32 -> ResNet-14", "ResNet-14 from scratch (%)", 58.65,
     "better_accuracy.control"),
    ("paper, Tables 1/3/4/5 (unverified)", "CIFAR-10, ResNet-26 -> ResNet-8", "FSP student (%)", None,
     "better_accuracy.treatment"),
    ("paper, Tables 1/3/4/5 (unverified)", "CIFAR-10, ResNet-26 -> ResNet-8", "FitNet student (%)", None,
     "better_accuracy.fitnet"),
    ("paper, Tables 1/3/4/5 (unverified)", "CIFAR-100, ResNet-32 -> ResNet-14", "FSP student (%)", None,
     "better_accuracy.treatment"),
    ("paper, Tables 1/3/4/5 (unverified)", "CIFAR-100, ResNet-32 -> ResNet-14", "FitNet student (%)", None,
     "better_accuracy.fitnet"),
    ("paper, Tables 1/3/4/5 (unverified)", "CUB-200, ResNet-34 (ImageNet) -> ResNet-20", "FSP student (%)", None,
     "cross_task_transfer.treatment"),
    ("paper, Tables 1/3/4/5 (unverified)", "CUB-200, ResNet-34 (ImageNet) -> ResNet-20", "FitNet student (%)",
     None, "cross_task_transfer.fitnet"),
    ("paper, Tables 1/3/4/5 (unverified)", "CUB-200, ResNet-34 (ImageNet) -> ResNet-20", "from scratch (%)", None,
     "cross_task_transfer.control"),
]
REPRODUCTIONS: list[tuple[str, str, float, float]] = [
    ("RepDistiller (CIFAR-100)", "wrn-40-2 -> wrn-16-2", 73.26, 72.91),
    ("RepDistiller (CIFAR-100)", "resnet56 -> resnet20", 69.06, 69.95),
    ("RepDistiller (CIFAR-100)", "resnet110 -> resnet20", 69.06, 70.11),
    ("RepDistiller (CIFAR-100)", "resnet110 -> resnet32", 71.14, 71.89),
    ("RepDistiller (CIFAR-100)", "resnet32x4 -> resnet8x4", 72.50, 72.62),
    ("RepDistiller (CIFAR-100)", "vgg13 -> vgg8", 70.36, 70.23),
    ("KD-Zoo", "ResNet-20 -> ResNet-20, CIFAR-10", 92.37, 92.76),
    ("KD-Zoo", "ResNet-110 -> ResNet-20, CIFAR-10", 92.37, 92.78),
    ("KD-Zoo", "ResNet-20 -> ResNet-20, CIFAR-100", 68.92, 69.61),
    ("KD-Zoo", "ResNet-110 -> ResNet-20, CIFAR-100", 68.92, 69.78),
]


def this_run_values(analysis: Analysis, claims: Mapping[str, Mapping[str, Any]],
                    summary: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """The numbers of this run that PAPER_ROWS point at: key -> (value in percent, what it is)."""
    out: dict[str, tuple[float, str]] = {}
    runs = analysis.runs
    for c in analysis.claims:
        for t in c.tests:
            if t.metric != "final_acc_diff":
                continue
            for side, ids in (("treatment", t.treatment_runs), ("control", t.control_runs)):
                sel = runs[runs["run_id"].isin(ids)]
                if sel.empty:
                    continue
                what = (f"{sel['method'].iloc[0]} {sel['arch'].iloc[0]} on {sel['task'].iloc[0]}, "
                        f"{int(sel['budget'].iloc[0])} main steps, n={len(sel)}")
                mean = 100 * float(sel["final_acc"].mean())
                if t.name in ("fsp_vs_scratch", "fsp_short_vs_scratch_full"):
                    out.setdefault(f"{c.key}.{side}", (mean, what))
                elif t.name == "fsp_short_vs_scratch_short" and side == "control":
                    out[f"{c.key}.short"] = (mean, what)
                elif t.name == "fsp_vs_fitnet" and side == "control":
                    out[f"{c.key}.fitnet"] = (mean, what)
        cfg = claims.get(c.key) or {}
        teachers = runs[(runs["role"] == "student") & (runs["group"] == cfg.get("group"))]["teacher_run_id"]
        t_ids = sorted({t for t in teachers if t})
        t_sel = runs[runs["run_id"].isin(t_ids)]
        if not t_sel.empty:
            out[f"{c.key}.teacher"] = (100 * float(t_sel["final_acc"].mean()),
                                       f"teacher {t_sel['arch'].iloc[0]} on {t_sel['task'].iloc[0]}, "
                                       f"{int(t_sel['budget'].iloc[0])} steps, n={len(t_sel)}")
    return out


def paper_table(values: Mapping[str, tuple[float, str]]) -> pd.DataFrame:
    """Paper and independent reproductions next to this run's matching numbers; unverified cells say so."""
    rows = []

    def mine(key: str) -> tuple[str, str]:
        v = values.get(key)
        return (f"{v[0]:.4f}", v[1]) if v else ("not run", "")

    for source, setting, quantity, paper, key in PAPER_ROWS:
        value, what = mine(key)
        rows.append({"source": source, "setting": setting, "quantity": quantity,
                     "paper": f"{paper:.2f}" if paper is not None else NA, "claim": key.split(".")[0],
                     "this_run": value, "this_run_setting": what})
    for source, setting, scratch, fsp in REPRODUCTIONS:
        for quantity, paper, key in (("scratch (%)", scratch, "better_accuracy.control"),
                                     ("FSP (%)", fsp, "better_accuracy.treatment")):
            value, what = mine(key)
            rows.append({"source": source, "setting": setting, "quantity": quantity, "paper": f"{paper:.2f}",
                         "claim": "better_accuracy", "this_run": value, "this_run_setting": what})
        t, c = values.get("better_accuracy.treatment"), values.get("better_accuracy.control")
        rows.append({"source": source, "setting": setting, "quantity": "FSP - scratch (points)",
                     "paper": f"{fsp - scratch:+.2f}", "claim": "better_accuracy",
                     "this_run": f"{t[0] - c[0]:+.4f}" if t and c else "not run", "this_run_setting": ""})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- (e): FSP settings


def fsp_settings(configs: Mapping[str, RunConfig], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The FSP settings of the fsp students per group, and an ablation of final accuracy per setting
    when the grid varies them (None otherwise)."""
    fsp = runs[(runs["method"] == "fsp") & (runs["role"] == "student")].copy()
    if fsp.empty:
        return pd.DataFrame(columns=["group", *FSP_FIELDS, "init_steps", "runs"]), None
    for f in FSP_FIELDS:
        fsp[f] = [_fmt_setting(getattr(configs[r].fsp, f)) if r in configs else "" for r in fsp["run_id"]]
    fsp["init_steps"] = [configs[r].init_steps if r in configs else 0 for r in fsp["run_id"]]
    keys = ["group", *FSP_FIELDS, "init_steps"]
    settings = fsp.groupby(keys, sort=True).size().rename("runs").reset_index()
    if len(fsp.drop_duplicates(list(FSP_FIELDS))) < 2:
        return settings, None
    rows = []
    for key, sel in fsp.groupby(["group", "budget", *FSP_FIELDS], sort=True):
        acc = 100 * sel["final_acc"].to_numpy(float)
        rows.append({**dict(zip(["group", "budget", *FSP_FIELDS], key)), "n": len(acc), "mean": float(acc.mean()),
                     "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
                     "failures": int((sel["status"] != "ok").sum())})
    return settings, pd.DataFrame(rows)


def precision_effect(configs: Mapping[str, RunConfig], runs: pd.DataFrame, random_state: int = 0) -> pd.DataFrame:
    """bf16 autocast against fp32: every bf16 run set beside the fp32 runs with otherwise equal settings.

    Runs match when their configs agree in every key but seed, precision and the teacher's path
    (the teacher enters as its run id). One row per matched set: final accuracy of each precision,
    their difference in points with its 95% bootstrap CI, and the training-time speedup
    (mean fp32 seconds / mean bf16 seconds). Empty when the grid has no bf16 runs.
    """
    cols = ["group", "method", "arch", "budget", "n_fp32", "n_bf16", "fp32_mean", "bf16_mean", "diff", "ci_low",
            "ci_high", "speedup", "failures"]
    sel = runs[runs["run_id"].isin(list(configs))].copy()

    def key(row: Any) -> str:
        d = configs[row.run_id].to_dict()
        for k in ("seed", "precision", "teacher", "threads"):
            d.pop(k)
        return repr(sorted(d.items())) + row.teacher_run_id

    if sel.empty:
        return pd.DataFrame(columns=cols)
    sel["key"] = [key(r) for r in sel.itertuples()]
    sel["precision"] = [configs[r].precision for r in sel["run_id"]]
    rows = []
    for _, bf16 in sel[sel["precision"] == "bf16"].groupby("key", sort=True):
        fp32 = sel[(sel["key"] == bf16["key"].iloc[0]) & (sel["precision"] == "fp32")]
        if fp32.empty:
            continue
        test = compare_accuracy("bf16_vs_fp32", bf16, fp32, "", random_state)
        first = bf16.iloc[0]
        rows.append({"group": first["group"], "method": first["method"], "arch": first["arch"],
                     "budget": int(first["budget"]), "n_fp32": len(fp32), "n_bf16": len(bf16),
                     "fp32_mean": test.extra["control_mean"], "bf16_mean": test.extra["treatment_mean"],
                     "diff": test.estimate, "ci_low": test.ci[0], "ci_high": test.ci[1],
                     "speedup": float(fp32["wall_time_s"].mean() / bf16["wall_time_s"].mean()),
                     "failures": test.failures})
    return pd.DataFrame(rows, columns=cols)


def _fmt_setting(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "equal" if not v else "[" + ", ".join(f"{x:g}" for x in v) + "]"
    return str(v)


# ---------------------------------------------------------------- (f): environment and cost


def environment(grid: Mapping[str, Any], records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Hardware, versions, commit, dates, runs by status, CPU/GPU hours, wall time, harness efficiency.

    Time figures sum the grid's history (every ``fspbench run`` that trained something); a rerun that
    trained nothing adds nothing. Per-trial resources come from grid.json's trial_resources.
    """
    def uniq(key: str) -> str:
        vals = sorted({str((r.get("env") or {}).get(key)) for r in records if (r.get("env") or {}).get(key)
                       is not None})
        return ", ".join(vals) if vals else "not recorded"

    history = [h for h in grid.get("history", []) if h.get("trained_runs")]
    if not history and grid.get("trained_runs"):
        history = [grid]
    trial_s = sum(float(h.get("trial_time_s") or 0) for h in history)
    wall_s = sum(float(h.get("wall_time_s") or 0) for h in history)
    res = grid.get("trial_resources") or {}
    cpu, gpu = float(res.get("cpu", 1.0)), float(res.get("gpu", 0.0))
    eff = grid.get("harness_efficiency")
    if eff is None:
        effs = [h["harness_efficiency"] for h in history if h.get("harness_efficiency") is not None]
        eff = effs[-1] if effs else None
    cluster_cpus = max([float(h.get("cpus") or 0) for h in history] + [float(grid.get("cpus") or 0)])
    cluster_gpus = max([float(h.get("gpus") or 0) for h in history] + [float(grid.get("gpus") or 0)])
    n = grid.get("runs", {})
    starts = [h.get("started_at") for h in history if h.get("started_at")] or [grid.get("started_at")]
    ends = [h.get("finished_at") for h in history if h.get("finished_at")] or [grid.get("finished_at")]
    rows = [
        ("benchmark", grid.get("name", "")),
        ("processor", uniq("processor")),
        ("cpu_count (per node)", uniq("cpu_count")),
        ("gpu", uniq("gpu") if uniq("gpu") != "not recorded" else "none"),
        ("device", uniq("device")),
        ("platform", uniq("platform")),
        ("python", uniq("python")),
        ("torch", uniq("torch")),
        ("torchvision", uniq("torchvision")),
        ("fspbench", uniq("fspbench")),
        ("git commit", uniq("git_commit")),
        ("started", min(s for s in starts if s) if any(starts) else "not recorded"),
        ("finished", max(e for e in ends if e) if any(ends) else "not recorded"),
        ("cluster CPUs / GPUs", f"{cluster_cpus:g} / {cluster_gpus:g}"),
        ("resources per trial (cpu, gpu)", f"{cpu:g}, {gpu:g}"),
        ("runs: total", n.get("total", len(records))),
        ("runs: ok", n.get("ok", sum(r.get("status") == "ok" for r in records))),
        ("runs: diverged", n.get("diverged", sum(r.get("status") == "diverged" for r in records))),
        ("runs: failed", n.get("failed", sum(r.get("status") == "failed" for r in records))),
        ("summed trial time (s)", f"{trial_s:.1f}"),
        ("CPU hours (trial time x cpu per trial)", f"{trial_s * cpu / 3600:.4f}"),
        ("GPU hours (trial time x gpu per trial)", f"{trial_s * gpu / 3600:.4f}"),
        ("wall time (s)", f"{wall_s:.1f}"),
        ("harness efficiency", f"{eff:.4f}" if eff is not None else "not recorded"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": str})


# ---------------------------------------------------------------- files


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular; pandas' to_latex when jinja2 is there, else a small hand-written one."""
    try:
        return df.to_latex(index=False, float_format=lambda x: f"{x:.2f}", na_rep="--")
    except ImportError:
        pass

    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = "--" if math.isnan(v) else f"{v:.2f}"
        s = str(v)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                     ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
            s = s.replace(a, b) if a != "\\" else s.replace(a, "\0")
        return s.replace("\0", r"\textbackslash{}")

    lines = [r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
             " & ".join(cell(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_table(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """``name``.csv (fixed float format, byte-stable) and ``name``.tex, written atomically."""
    csv, tex = out_dir / f"{name}.csv", out_dir / f"{name}.tex"
    atomic_write_bytes(csv, df.to_csv(index=False, float_format=FLOAT_FORMAT, na_rep="",
                                      lineterminator="\n").encode())
    atomic_write_bytes(tex, to_latex(df).encode())
    return [csv, tex]
