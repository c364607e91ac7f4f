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

from fspbench import claims as kinds
from fspbench.ablation import Ablation
from fspbench.analysis import Analysis
from fspbench.comparisons import INTERVALS, compare_accuracy
from fspbench.config import RunConfig
from fspbench.io import atomic_write_bytes
from fspbench.results import GridLedger, HistoryEntry, RunRecord

NA = "not available"  # a paper cell that could not be verified: never an invented number
FLOAT_FORMAT = "%.4f"
FSP_FIELDS = ("style", "pairs", "pool", "distance", "weights", "adapter")

# ---------------------------------------------------------------- (a), (b): verdicts and tests


def _yes(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "not checked"}[v]


def verdict_panel(analysis: Analysis) -> pd.DataFrame:
    """One row per claim: verdict and why, where it stopped, its repeated interval, seeding and regime."""
    rows = []
    for c in analysis.claims:
        t = next((t for t in c.tests if t.role == "decides"), None)
        reg = c.regime
        g, f, h = (reg.gain, reg.fsp_gain, reg.headroom) if reg else (None, None, None)
        lk = c.looks[-1] if c.looks else None
        rows.append({"claim": c.key, "verdict": c.verdict, "reason": c.reason,
                     "look": f"{lk.look} of {c.max_looks}" if lk else "", "n_per_arm": lk.n if lk else 0,
                     "estimate": t.estimate if t else math.nan, "ci_low": t.ci[0] if t else math.nan,
                     "ci_high": t.ci[1] if t else math.nan, "critical_value": lk.critical if lk else math.nan,
                     "seeding": c.seeding,
                     "interval": (f"repeated, one-sided {c.spec.claim_alpha:.4g} per side, {INTERVALS[c.seeding]}"
                                  if c.seeding and c.spec else ""),
                     "epochs_per_run": reg.epochs if reg else math.nan,
                     "doubling_gain_scratch": g.estimate if g else math.nan,
                     "doubling_ci_high_scratch": g.ci[1] if g else math.nan,
                     "doubling_gain_fsp": f.estimate if f else math.nan,
                     "doubling_ci_high_fsp": f.ci[1] if f else math.nan,
                     "converged": _yes(reg.converged) if reg else "",
                     "headroom": h.estimate if h else math.nan, "headroom_ci_low": h.ci[0] if h else math.nan,
                     "has_headroom": _yes(reg.has_headroom) if reg and reg.headroom_threshold else "",
                     "seeds_per_arm_for_80pct_power": c.power_n if c.power_n is not None else "",
                     "power_at_effect": c.power_effect, "rule": c.rule})
    return pd.DataFrame(rows)


def all_tests(analysis: Analysis) -> pd.DataFrame:
    """Every test of every claim, with its seeding and how its two sides' compute is matched."""
    rows = []
    for c in analysis.claims:
        for t in c.tests:
            rows.append({"claim": c.key, "test": t.name, "role": t.role, "metric": t.metric, "estimate": t.estimate,
                         "ci_low": t.ci[0], "ci_high": t.ci[1], "n": t.n, "seeding": t.seeding,
                         "p_value": t.p_value, "failures": t.failures, "budget": t.budget})
    return pd.DataFrame(rows, columns=["claim", "test", "role", "metric", "estimate", "ci_low", "ci_high", "n",
                                       "seeding", "p_value", "failures", "budget"])


def look_table(looks: pd.DataFrame) -> pd.DataFrame:
    """Every look of every claim (summaries.look_rows)."""
    return looks.copy()


def teacher_gain_table(gains: pd.DataFrame) -> pd.DataFrame:
    """Every FSP student of a deciding test with its own teacher's accuracy (summaries.gain_rows)."""
    return gains.copy()


def group_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy per arm (summaries.group_summary): group, method, arch, budget, n, mean, std, 95% t CI."""
    cols = ["role", "group", "method", "arch", "task", "budget", "init_steps", "n", "mean", "std", "ci_low",
            "ci_high", "failures"]
    return summary[cols].copy() if not summary.empty else pd.DataFrame(columns=cols)


# ---------------------------------------------------------------- (d): effect sizes beside published ones

def effect_table(analysis: Analysis, claim: str) -> pd.DataFrame:
    """One claim's effect: the paper's (where verified), converged reproductions', and this run's, with regimes."""
    rows = [{"source": src, "setting": setting, "regime": regime, "effect": f"{eff:+.2f}" if eff is not None else NA,
             "ci": ""} for src, setting, regime, eff in kinds.get(claim).published]
    c = next((c for c in analysis.claims if c.key == claim), None)
    t = next((t for t in c.tests if t.role == "decides"), None) if c else None
    if c is not None and t is not None:
        rows.append({"source": f"this run ({c.verdict})", "setting": t.budget.split(":", 1)[0],
                     "regime": c.regime.describe() if c.regime else "", "effect": f"{t.estimate:+.2f}",
                     "ci": f"[{t.ci[0]:+.2f}, {t.ci[1]:+.2f}]"})
    return pd.DataFrame(rows, columns=["source", "setting", "regime", "effect", "ci"])


# ---------------------------------------------------------------- (e): FSP settings


def fsp_settings(configs: Mapping[str, RunConfig], runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The FSP settings of the fsp students per group, and an ablation of final accuracy per setting
    when the grid varies them (None otherwise)."""
    fsp = runs[(runs["method"] == kinds.TREATMENT) & (runs["role"] == "student")].copy()
    if fsp.empty:
        return pd.DataFrame(columns=["group", *FSP_FIELDS, "init_steps", "runs"]), None
    def setting(run_id: str, f: str) -> str:
        if run_id not in configs:
            return ""
        s = configs[run_id].fsp.resolved()  # a style's values, with the explicit keys over them
        return _fmt_setting(s.weights if s.weights is not None else f"{s.style}'s rule") if f == "weights" \
            else _fmt_setting(getattr(s, f))

    for f in FSP_FIELDS:
        fsp[f] = [setting(r, f) for r in fsp["run_id"]]
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


def fsp_choice(cfg: RunConfig) -> str:
    """An FSP setting in words: "style paper: pairs paper, pool max, distance paper, weights 1 each"."""
    r = cfg.fsp.resolved()
    ident = r.identity()
    w = ident["weights"]
    weights = "1/n each" if w == "1/n" else ("1 each" if not w else "[" + ", ".join(f"{x:.3g}" for x in w) + "]")
    return f"style {r.style}: pairs {r.pairs}, pool {r.pool}, distance {r.distance}, weights {weights}"


def ablation_table(abl: Ablation, configs: Mapping[str, RunConfig]) -> pd.DataFrame:
    """Per arm: what it changes, its difference from the reference style and from scratch, the answer, and
    the scale of its stage-1 loss (FSP values grow with activation scale; a loss far larger diverges)."""
    rows = []
    for a in abl.arms:
        cfg = configs.get(a.vs_reference.treatment_runs[0]) if a.vs_reference.treatment_runs else None
        t, s = a.vs_reference, a.vs_scratch
        rows.append({"arm": a.group, "settings": fsp_choice(cfg) if cfg else "", "n": t.n_treatment,
                     "mean": t.treatment_mean, f"minus {abl.reference}": t.estimate,
                     "ci_low": t.ci[0], "ci_high": t.ci[1], "changes final accuracy": a.changes_accuracy,
                     "minus scratch": s.estimate, "scratch_ci_low": s.ci[0], "scratch_ci_high": s.ci[1],
                     "stage1_loss_first": a.stage1_first, "stage1_loss_last": a.stage1_last, "diverged": a.diverged})
    return pd.DataFrame(rows)


def precision_effect(configs: Mapping[str, RunConfig], runs: pd.DataFrame) -> pd.DataFrame:
    """bf16 autocast against fp32: every bf16 run set beside the fp32 runs with otherwise equal settings.

    Runs match when their configs agree in every key but seed (and the subset drawn per seed), precision and the
    teacher's path
    (the teacher enters as its group). One row per matched set: final accuracy of each precision,
    their difference in points with its 95% interval (paired when the twins share their seeds, else Welch),
    and the training-time speedup
    (mean fp32 seconds / mean bf16 seconds). Empty when the grid has no bf16 runs.
    """
    cols = ["group", "method", "arch", "budget", "n_fp32", "n_bf16", "fp32_mean", "bf16_mean", "diff", "ci_low",
            "ci_high", "speedup", "failures"]
    sel = runs[runs["run_id"].isin(list(configs))].copy()

    teacher_group = runs.set_index("run_id")["group"].to_dict()

    def key(row: Any) -> str:
        # the teacher enters by its group, not its run id: with teacher_seeds the students of one arm
        # learn from several teacher seeds, split by student seed alike in both precisions
        d = configs[row.run_id].to_dict()
        for k in ("seed", "subset_seed", "precision", "teacher", "threads", "force_bf16"):  # subset: drawn per seed
            d.pop(k)
        return repr(sorted(d.items())) + teacher_group.get(row.teacher_run_id, "")

    if sel.empty:
        return pd.DataFrame(columns=cols)
    sel["key"] = [key(r) for r in sel.itertuples()]
    sel["precision"] = [configs[r].precision for r in sel["run_id"]]
    rows = []
    for _, bf16 in sel[sel["precision"] == "bf16"].groupby("key", sort=True):
        fp32 = sel[(sel["key"] == bf16["key"].iloc[0]) & (sel["precision"] == "fp32")]
        if fp32.empty:
            continue
        # twins that share their seeds (a paired [design] grid) are compared pair by pair, on the bf16 runs'
        # seeds: later looks may have added fp32 seeds that have no bf16 twin
        paired = bool((bf16["seed_index"] >= 0).all() and set(bf16["seed"]) <= set(fp32["seed"]))
        if paired:
            fp32 = fp32[fp32["seed"].isin(set(bf16["seed"]))]
        test = compare_accuracy("bf16_vs_fp32", bf16.sort_values("seed_index"), fp32.sort_values("seed_index"), "",
                                paired=paired)
        first = bf16.iloc[0]
        rows.append({"group": first["group"], "method": first["method"], "arch": first["arch"],
                     "budget": int(first["budget"]), "n_fp32": test.n_control,
                     "n_bf16": test.n_treatment, "fp32_mean": test.control_mean, "bf16_mean": test.treatment_mean,
                     "diff": test.estimate, "ci_low": test.ci[0], "ci_high": test.ci[1],
                     "speedup": float(fp32["wall_time_s"].mean() / bf16["wall_time_s"].mean()),
                     "failures": test.failures})
    return pd.DataFrame(rows, columns=cols)


def _fmt_setting(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "equal" if not v else "[" + ", ".join(f"{x:g}" for x in v) + "]"
    return str(v)


# ---------------------------------------------------------------- (f): environment and cost


def environment(grid: GridLedger, records: list[RunRecord]) -> pd.DataFrame:
    """Hardware, versions, commit, dates, runs by status, CPU/GPU hours, wall time, harness efficiency.

    Time figures sum the grid's history (every ``fspbench run`` that trained something); a rerun that
    trained nothing adds nothing. Per-trial resources come from grid.json's trial_resources.
    """
    def uniq(key: str, within: str = "") -> str:
        envs = [(r.env or {}) for r in records]
        envs = [(e.get(within) or {}) for e in envs] if within else envs
        vals = sorted({str(e.get(key)) for e in envs if e.get(key) is not None})
        return ", ".join(vals) if vals else "not recorded"

    history = [h for h in grid.history if h.trained_runs]
    if not history and grid.trained_runs:  # the grid's own figures stand for the run that trained
        history = [HistoryEntry(grid.started_at, grid.finished_at, grid.wall_time_s, grid.trained_runs,
                                grid.trial_time_s, grid.cpus, grid.gpus, retried_time_s=grid.retried_time_s)]
    trial_s = sum(float(h.trial_time_s or 0) for h in history)
    # attempts that failed and were retried (a lost node, a crash): time the runs' records do not count
    retried_s = sum(float(h.retried_time_s or 0) for h in history)
    wall_s = sum(float(h.wall_time_s or 0) for h in history)
    res = grid.trial_resources
    cpu, gpu = float(res.get("cpu", 1.0)), float(res.get("gpu", 0.0))
    eff = grid.harness_efficiency
    cluster_cpus = max([float(h.cpus or 0) for h in history] + [float(grid.cpus or 0)])
    cluster_gpus = max([float(h.gpus or 0) for h in history] + [float(grid.gpus or 0)])
    n = grid.runs
    starts = [h.started_at for h in history if h.started_at] or [grid.started_at]
    ends = [h.finished_at for h in history if h.finished_at] or [grid.finished_at]
    rows = [
        ("benchmark", grid.name),
        ("processor", uniq("processor")),
        # what bitwise-identical CPU runs need to share, beside threads and versions (fspbench.hardware)
        ("torch CPU capability", uniq("cpu_capability", "hardware")),
        ("native bf16", uniq("native_bf16", "hardware")),
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
        ("runs: total", n.total),
        ("runs: ok", n.ok),
        ("runs: diverged", n.diverged),
        ("runs: failed", n.failed),
        ("summed trial time (s)", f"{trial_s:.1f}"),
        ("retried trial time (s)", f"{retried_s:.1f} ({_retries(history)})"),
        ("CPU hours ((trial + retried time) x cpu per trial)", f"{(trial_s + retried_s) * cpu / 3600:.4f}"),
        ("GPU hours ((trial + retried time) x gpu per trial)", f"{(trial_s + retried_s) * gpu / 3600:.4f}"),
        ("wall time (s)", f"{wall_s:.1f}"),
        ("last run: estimated / measured wall time (s)", _estimate_vs_wall(grid)),
        ("harness efficiency", f"{eff:.4f}" if eff is not None else "not recorded"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": str})


def _retries(history: list[HistoryEntry]) -> str:
    """How many attempts the grid runs that trained retried (grid.json's history)."""
    if all(h.retried_attempts is None for h in history):
        return "not recorded"
    n = sum(h.retried_attempts or 0 for h in history)
    return f"{n} attempt{'s' if n > 1 else ''} retried" if n else "no attempt retried"


def _estimate_vs_wall(grid: GridLedger) -> str:
    est = grid.estimate or {}
    if not est.get("wall_time_s") or not grid.wall_time_s:
        return "not recorded"
    ratio = float(grid.wall_time_s) / float(est["wall_time_s"])
    return f"{float(est['wall_time_s']):.0f} / {float(grid.wall_time_s):.0f} (measured / estimated {ratio:.2f})"


def precision_not_run(grid: GridLedger, bench_groups: Mapping[str, int]) -> pd.DataFrame:
    """The bf16 groups a grid skipped because its hardware has no native bf16 (grid.json "skipped")."""
    rows = [{"group": g, "runs": bench_groups.get(g, 0), "status": "not run: no native bf16 on this machine"}
            for g in (grid.skipped.groups if grid.skipped else ())]
    return pd.DataFrame(rows, columns=["group", "runs", "status"])


# ---------------------------------------------------------------- files


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular (pandas' to_latex, through jinja2)."""
    return df.to_latex(index=False, float_format=lambda x: f"{x:.2f}", na_rep="--")


def write_table(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """``name``.csv (fixed float format, byte-stable) and ``name``.tex, written atomically."""
    csv, tex = out_dir / f"{name}.csv", out_dir / f"{name}.tex"
    atomic_write_bytes(csv, df.to_csv(index=False, float_format=FLOAT_FORMAT, na_rep="",
                                      lineterminator="\n").encode())
    atomic_write_bytes(tex, to_latex(df).encode())
    return [csv, tex]
