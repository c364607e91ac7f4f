"""build_report: results/<name>/ -> reports/<name>/. The only module of the report that does I/O.

Reads runs.parquet, grid.json (the benchmark file's text is kept there, so the grid and its claims
are rebuilt exactly as they were run) and the run records; writes claims.json, tables/, figures/,
report.md and report.html. The same results give byte-identical claims.json and tables/*.csv.

runs.parquet is derived from the records: every record's checksum is checked, then every row of the table
against the rows the records give (report.integrity); a mismatch is refused (BadInput, exit 2) unless
``rebuild`` asks to rewrite the table from the records, so a report never changes silently. report.md names
the digest of the records it was built from.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from fspbench import analysis, comparisons, methods
from fspbench import claims as kinds
from fspbench.ablation import ablation_json, ablation_of
from fspbench.errors import BadInput, storage
from fspbench.grid import Benchmark, at_look, benchmark_from_text, group_seeding, run_labels
from fspbench.io import atomic_write_bytes
from fspbench.registration import report_line
from fspbench.report import figures, render, summaries, tables
from fspbench.report.integrity import data_digest, first_mismatch
from fspbench.results import (
    PARQUET_COLUMNS,
    GridLedger,
    RunRecord,
    load_intact_record,
    read_parquet,
    runs_table,
    write_parquet,
)
from fspbench.store import Location, location

TITLES = {key: kinds.get(key).title for key in kinds.keys()}  # each claim kind's section title


def load_results(results_dir: Location, rebuild: bool = False) -> tuple[pd.DataFrame, GridLedger, Benchmark]:
    """runs.parquet, grid.json and the benchmark rebuilt from grid.json; BadInput naming the file otherwise.

    With ``rebuild``, a missing or unreadable runs.parquet reads as an empty table (build_report rebuilds it
    from the records).
    """
    hint = "run `fspbench run BENCHMARK --results DIR` first"
    parquet, grid_path = results_dir / "runs.parquet", results_dir / "grid.json"
    for p in (parquet, grid_path):
        if not p.is_file() and not (rebuild and p is parquet):
            raise BadInput(f"{p}: no such file; not a finished results folder, {hint}")
    try:
        df = read_parquet(parquet)
    except Exception as err:  # pyarrow raises several types for a damaged file
        if not rebuild:
            raise BadInput(f"{parquet}: unreadable ({type(err).__name__}); {hint}, or rebuild it from the run "
                           f"records with `fspbench report {results_dir} --rebuild`") from None
        df = pd.DataFrame(columns=PARQUET_COLUMNS)
    missing = [c for c in ("run_id", "method", "stage", "step", "stage_step", "wall_time_s", "test_acc", "status")
               if c not in df.columns]
    if missing:
        raise BadInput(f"{parquet}: missing columns {', '.join(missing)}; {hint}")
    try:
        grid = GridLedger.load(grid_path)
    except BadInput as err:
        raise BadInput(f"{err}; {hint}") from None
    bench = benchmark_from_text(grid.benchmark_text, Path(grid.benchmark_file or "benchmark.toml"), results_dir)
    if bench.design is not None and grid.seeds is not None:  # the looks the results hold
        bench = at_look(bench, {k: v for k, v in grid.seeds.items() if k in bench.claims})
    return df, grid, bench


def build_report(results_dir: Location | str, out_dir: Path, rebuild: bool = False) -> dict[str, Any]:
    """Analyse a results folder and write the report; returns verdicts and the paths written.

    Nothing is written when the inputs are missing, unreadable or disagree (_inputs: BadInput, one line); with
    ``rebuild``, runs.parquet is rewritten from the records where it differs from them.
    """
    results, out_dir = location(results_dir, "RESULTS_DIR"), Path(out_dir)  # a folder or s3://bucket/prefix
    df, grid, bench, records, digest, rebuilt = _inputs(results, rebuild)
    df = comparisons.label_runs(df, run_labels(bench))  # results from before the parquet carried the labels
    a = analysis.analyze(df, bench.claims)
    with storage(out_dir):  # a storage fault, like every write of the report: one line, exit 1
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError) as err:  # the path itself is wrong: bad input
            raise BadInput(f"--out {out_dir}: cannot create the report folder ({err.strerror}); pass a folder "
                           "path") from None

    claims_path = out_dir / "claims.json"
    atomic_write_bytes(claims_path, (json.dumps(analysis.claims_json(a), indent=2, sort_keys=True) + "\n").encode())

    # ---- tables
    summary = summaries.group_summary(a.runs)
    configs = {r.run_id: r.config for r in bench.runs}
    settings, ablation = tables.fsp_settings(configs, a.runs)
    tbl: dict[str, pd.DataFrame] = {
        "verdicts": tables.verdict_panel(a),
        "tests": tables.all_tests(a),
        "looks": tables.look_table(summaries.look_rows(a)),
        "teacher_gains": tables.teacher_gain_table(summaries.gain_rows(a)),
        "stage1": summaries.stage1_table(df, a.runs),
        "groups": tables.group_table(summary),
        **{f"effects_{c.key}": tables.effect_table(a, c.key) for c in a.claims},
        "fsp_settings": settings,
        "environment": tables.environment(grid, records),
    }
    if ablation is not None:
        tbl["fsp_ablation"] = ablation
    paired = bool(bench.spec and bench.ablation and group_seeding(bench.spec).get(bench.ablation.reference))
    abl = ablation_of(df, bench.ablation, paired=paired, design=bench.design)
    if abl is not None:
        atomic_write_bytes(out_dir / "ablation.json",
                           (json.dumps(ablation_json(abl), indent=2, sort_keys=True) + "\n").encode())
        tbl["ablation"] = tables.ablation_table(abl, configs)
    precision = tables.precision_effect(configs, a.runs)
    if not precision.empty:
        tbl["precision"] = precision
    not_run = tables.precision_not_run(grid, Counter(r.group for r in bench.runs))
    if not not_run.empty:
        tbl["precision_not_run"] = not_run
    table_paths = [p for name, t in tbl.items() for p in tables.write_table(t, out_dir / "tables", name)]

    # ---- figures
    fig_dir = out_dir / "figures"
    fig_names = _figures(df, a, summary, fig_dir)
    if abl is not None and abl.arms:
        reg = abl.regime
        note = (f"{reg.epochs:.1f} epochs per run; doubling gain {reg.gain.estimate:+.2f} "
                f"[{reg.gain.ci[0]:+.2f}, {reg.gain.ci[1]:+.2f}]" if reg.gain else "regime not checked")
        figures.save_figure(figures.forest_plot(summaries.ablation_rows(abl), {"ref": [0.0], "control": [0.0]},
                                                {"ref": note, "control": ""},
                                                {"ref": f"Each arm minus the {abl.reference} group's FSP students",
                                                 "control": "Each arm minus scratch"}, show_roles=False),
                            fig_dir, "ablation")
        fig_names["ablation"] = "ablation"
    figure_paths = [fig_dir / f"{n}.{ext}" for n in fig_names.values() for ext in ("png", "svg")]

    # ---- report.md, report.html
    blocks = _blocks(bench, grid, a, tbl, fig_names)
    registered = report_line(grid, records, designed=bench.design is not None)  # one line, after the opening one
    blocks.insert(2, ("p", _data_line(len(records), digest)))  # where the report says what it was built from
    if registered:
        blocks.insert(2, ("p", registered))
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, render.markdown(blocks).encode())
    atomic_write_bytes(page, render.html_page(blocks, f"FSP reproduction report: {bench.name}", fig_dir).encode())
    return {"name": bench.name, "verdicts": {c.key: c.verdict for c in a.claims},
            "reasons": {c.key: c.reason for c in a.claims},
            "regimes": {c.key: _short_regime(c) for c in a.claims}, "report_md": md,
            "report_html": page, "claims_json": claims_path, "tables": table_paths, "figures": figure_paths,
            "digest": digest, "records": len(records), "rebuilt": rebuilt}


def _inputs(results: Location, rebuild: bool) -> tuple[pd.DataFrame, GridLedger, Benchmark, list[RunRecord], str,
                                                       str | None]:
    """runs.parquet, grid.json, the benchmark, its run records, their digest and why the table was rebuilt (None
    when it was not): BadInput for a record that does not match its checksum, and for runs.parquet that does not
    match the records unless ``rebuild`` asks to rewrite it from them."""
    df, grid, bench = load_results(results, rebuild)
    records, digest = _load_records(results, bench)
    df, rebuilt = _checked_table(results, df, records, grid, bench, rebuild)
    return df, grid, bench, records, digest, rebuilt


def _load_records(results: Location, bench: Benchmark) -> tuple[list[RunRecord], str]:
    """The grid's run records (in the grid's order) and the digest over their checksums; BadInput naming the
    first record that does not match its checksum: the report never uses an altered record."""
    checked = [load_intact_record(p) for r in bench.runs if (p := results / "runs" / f"{r.run_id}.json").is_file()]
    return [rec for rec, _ in checked], data_digest({rec.run_id: checksum for rec, checksum in checked})


def _checked_table(results: Location, df: pd.DataFrame, records: list[RunRecord], grid: GridLedger,
                   bench: Benchmark, rebuild: bool) -> tuple[pd.DataFrame, str | None]:
    """runs.parquet checked against the rows its records give, and the first mismatch (None when it matched).

    A mismatch is BadInput, one line naming it; with ``rebuild`` the table is rewritten from the records instead
    and the records' rows are used. The grid's skipped runs (no native bf16) have no rows, as when it was written.
    """
    skipped = set(grid.skipped.runs) if grid.skipped else set()
    expected = runs_table([rec for rec in records if rec.run_id not in skipped], run_labels(bench))
    mismatch = first_mismatch(df, expected)
    if mismatch is None:
        return df, None
    parquet = results / "runs.parquet"
    if not rebuild:
        raise BadInput(f"{parquet}: does not match the run records it is derived from ({mismatch}); the report is "
                       f"not built from it: rebuild it from the records with `fspbench report {results} --rebuild`, "
                       "or restore it")
    write_parquet(expected, parquet)  # atomic: a storage fault leaves the old table, one line, exit 1
    return expected, mismatch


def _data_line(n_records: int, digest: str) -> str:
    """The report's line on the data it was built from: the digest over its records' checksums."""
    return (f"Data: {n_records} run records, digest `{digest}` (sha256 over the records' checksums in run-id "
            "order; reports built from the same records show the same digest); each record was checked against its "
            "checksum, and every row of runs.parquet against the records.")


def _short_regime(c: analysis.Claim) -> str:
    """"13.4 epochs per run, doubling gains -0.26 (scratch) and +0.10 (FSP): converged; headroom +4.1 [+3.0, +5.2]"."""
    reg = c.regime
    if reg is None:
        return "no regime: the claim did not run"
    if reg.gain is None:
        return f"{reg.epochs:.1f} epochs per run, regime not checked"
    gains = " and ".join(f"{g.estimate:+.2f} [{g.ci[0]:+.2f}, {g.ci[1]:+.2f}] ({who})"
                         for who, g in ((kinds.CONTROL, reg.gain), ("FSP", reg.fsp_gain)) if g is not None)
    state = {True: "converged", False: "not converged", None: "not checked"}[reg.converged]
    text = f"{reg.epochs:.1f} epochs per run, doubling gains {gains}: {state}"
    h = reg.headroom
    if reg.headroom_threshold and h is not None:
        text += f"; teachers ahead by {h.estimate:+.2f} [{h.ci[0]:+.2f}, {h.ci[1]:+.2f}]"
    return text


def _where(c: analysis.Claim) -> str:
    """"look 2 of 3, 10 seeds per arm, paired" for a claim that ran."""
    if not c.looks:
        return ""
    lk = c.looks[-1]
    return f"look {lk.look} of {c.max_looks}, {lk.n} seeds per arm, {c.seeding}"


def _notes(c: analysis.Claim) -> str:
    """The line under a claim's forest-plot panel: its verdict, where it stopped, and its regime in short."""
    where = f" ({_where(c)})" if c.looks else ""
    return f"{c.verdict}{where}: {c.reason}\n{_short_regime(c)}"


def _boundaries(c: analysis.Claim) -> list[float]:
    s = c.spec
    if s is None:
        return [0.0]
    return kinds.get(c.key).boundaries(s)


def _figures(df: pd.DataFrame, a: analysis.Analysis, summary: pd.DataFrame, fig_dir: Path) -> dict[str, str]:
    """Draw and save every figure; returns figure key -> file stem."""
    names: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        figures.save_figure(fig, fig_dir, name)
        names[name] = name

    ran = [c for c in a.claims if c.tests]
    rows = summaries.forest_rows(a)
    if not rows.empty:
        bounds = {c.key: _boundaries(c) for c in ran}
        save(figures.forest_plot(rows, bounds, {c.key: _notes(c) for c in ran}, TITLES), "forest")
    looks = summaries.look_rows(a)
    if not looks.empty:
        save(figures.look_paths(looks, {c.key: _boundaries(c) for c in ran}, TITLES), "looks")
    gains = summaries.gain_rows(a)
    if not gains.empty:
        save(figures.teacher_gains(gains, TITLES), "teacher_gains")
    sweep = summaries.sweep_rows(a)
    if not sweep.empty and sweep["fraction"].nunique() > 1:
        save(figures.budget_sweep(sweep, TITLES), "budget_sweep")
    for c in ran:
        target = a.targets.get(c.key)
        sides = summaries.compared_runs(c, a.runs)
        if not sides:
            continue
        acc_parts = [summaries.accuracy_bands(df, ids, label) for label, ids in sides.items()]
        acc = {k: pd.concat([p[k] for p in acc_parts], ignore_index=True) for k in ("steps", "seconds")}
        stage1 = pd.concat([summaries.stage1_band(df, ids, label) for label, ids in sides.items()], ignore_index=True)
        save(figures.learning_curves(acc, stage1, TITLES[c.key],
                                     100 * target if target else None),
             f"curves_{c.key}")

    students = summary[summary["role"] == "student"].copy()
    if not students.empty:
        students = _arm_order(students, a)
        points = pd.DataFrame([{"label": lab, "acc": 100 * float(acc)}
                               for lab, ids in zip(students["label"], students["run_ids"])
                               for acc in a.runs.set_index("run_id").loc[list(ids), "final_acc"]])
        save(figures.final_accuracy(students, points, "Final test accuracy per arm"), "final_accuracy")

    with_target = [c for c in a.claims if c.key in a.targets]
    to_target = next((t for c in with_target for t in c.tests if t.role == "to_target"), None)
    target = a.targets[with_target[0].key] if with_target else None
    if to_target is not None and target is not None:
        by_id = a.runs.set_index("run_id")
        parts = []
        for ids in (to_target.treatment_runs, to_target.control_runs):
            per = summaries.per_run_to_target(df, ids, target)
            per["label"] = analysis.steps_label(by_id.loc[list(ids)].reset_index())
            parts.append(per)
        save(figures.steps_to_target(pd.concat(parts, ignore_index=True), 100 * target,
                                     "Fast optimization: FSP vs scratch, both at the full budget"), "steps_to_target")
    return names


def _arm_order(students: pd.DataFrame, a: analysis.Analysis) -> pd.DataFrame:
    """Student arms grouped by task (one panel each), compared arms side by side (by budget, then method)."""
    order = {name: i for i, name in enumerate(methods.names())}  # the methods' report order
    task_of = a.runs.groupby("group")["task"].first()
    images = a.runs.groupby("group")["train_images"].max()
    students["panel"] = [f"{task_of.get(g, '')}, group {g} ({images.get(g, 0):,} training images)"
                         for g in students["group"]]
    students["label"] = [f"{g}: {analysis.arm_label(m, int(i), int(b), unit='')}"
                         for g, m, i, b in zip(students["group"], students["method"], students["init_steps"],
                                               students["budget"])]
    students["_m"] = students["method"].map(order).fillna(9)
    return students.sort_values(["panel", "budget", "_m"], kind="stable").drop(columns="_m").reset_index(drop=True)


def _test_rows(claim: analysis.Claim) -> pd.DataFrame:
    rows = []
    for t in claim.tests:
        if t.role == "to_target":  # censoring-aware: their own table (_to_target_blocks)
            continue
        unit = " (FSP / scratch)" if t.metric.endswith("_ratio") else " (points)"
        kind = "repeated" if t.role == "decides" else (t.interval.split()[0] if t.interval else "95%")
        how = "log Welch" if t.metric.endswith("_ratio") else ("paired" if t.seeding == "paired" else "Welch")
        rows.append({"test": t.name, "role": t.role, "metric": t.metric + unit, "estimate": t.estimate,
                     "interval": f"{kind}, {how}", "CI": f"[{render.cell_text(t.ci[0])}, {render.cell_text(t.ci[1])}]",
                     "n": t.n_per_side if not t.metric.endswith("_ratio") else t.n, "p": t.p_value,
                     "failures": t.failures, "sides and compute": t.budget})
    return pd.DataFrame(rows)


MEASURES = {"to_target_main_step": "main-task steps", "to_target_step": "all steps (stage 1 included)",
            "to_target_wall_time_s": "training seconds"}


def _amount(v: float | None, seconds: bool) -> str:
    """A time to target: inf (never reached by half the runs) as "not reached", NaN or None as a dash."""
    if v is None or v != v:
        return "–"
    if v == float("inf"):
        return "not reached"
    return f"{v:,.2f}" if seconds else f"{v:,.0f}"


def _to_target_row(t: comparisons.Test) -> dict[str, str]:
    """One measure's censoring-aware comparison: KM medians, log-rank p, RMST difference, ratio where defined."""
    sec = t.name.endswith("wall_time_s")

    def km(side: str) -> str:
        med, lo, hi = (getattr(t, f"{side}_km_{k}") for k in ("median", "low", "high"))
        return f"{_amount(med, sec)} [{_amount(lo, sec)}, {_amount(hi, sec)}]"

    def diff(v: float | None) -> str:
        return "–" if v is None or v != v else (f"{v:+,.2f}" if sec else f"{v:+,.0f}")

    ratio = (f"{t.estimate:.3f} [{t.ci[0]:.3f}, {t.ci[1]:.3f}]" if t.estimate == t.estimate
             else "– (censored runs)")
    return {"measure": MEASURES.get(t.name, t.name),
            "FSP: KM median [95% CI]": km("treatment"),
            "FSP reached / censored": f"{t.treatment_reached} / {t.treatment_censored}",
            "scratch: KM median [95% CI]": km("control"),
            "scratch reached / censored": f"{t.control_reached} / {t.control_censored}",
            "log-rank p": render.cell_text(t.p_value) if t.p_value is None or t.p_value >= 0.01
            else f"{t.p_value:.2g}",
            "RMST horizon": _amount(t.rmst_horizon, sec),
            "RMST FSP - scratch [95% CI]": f"{diff(t.rmst_diff)} [{diff(t.rmst_low)}, {diff(t.rmst_high)}]",
            "ratio of geometric means FSP / scratch [95% CI]": ratio}


def _to_target_blocks(tests: list[comparisons.Test]) -> list[render.Block]:
    """The time-to-target tests of a claim, censored runs kept (fspbench.survival), as a paragraph and a table."""
    if not tests:
        return []
    t = tests[0]
    text = (f"Steps to the target {100 * (t.target_acc or 0.0):.2f}% (on the curve points' test images, the same "
            f"images as the target), the first look's seeds: reached by {t.treatment_reached} of "
            f"{len(t.treatment_runs)} FSP runs and {t.control_reached} of {len(t.control_runs)} scratch runs, the "
            "step where each curve crosses the target interpolated linearly between its two curve points. A run "
            "that never reaches the target is right-censored at its budget (its last curve point), never dropped. "
            "Medians are Kaplan-Meier (lifelines; 95% interval from the exponential Greenwood bands; not reached: "
            "fewer than half the runs reached the target), the log-rank p is two-sided, and RMST is the restricted "
            "mean time to target up to the common horizon (the smaller of the two arms' largest budgets), the "
            f"difference FSP - scratch with its 95% interval ({t.rmst_interval or 'bootstrap'}; negative: FSP "
            "reaches the target sooner). The ratio of geometric means (FSP / scratch, Welch's interval on the "
            "logarithms) only where every run reached the target.")
    return [("p", text), ("table", pd.DataFrame([_to_target_row(x) for x in tests]))]


def _look_table(c: analysis.Claim) -> pd.DataFrame:
    return pd.DataFrame([{"look": f"{lk.look} of {c.max_looks}", "seeds per arm": lk.n,
                          "estimate": lk.estimate, "repeated CI": f"[{lk.low:+.2f}, {lk.high:+.2f}]",
                          "z boundary": f"{lk.z:.3f}", "t critical": f"{lk.critical:.3f}",
                          "critical (low, high side)": f"{lk.critical_low:.3f}, {lk.critical_high:.3f}",
                          "error spent (per side)": f"{lk.error_spent:.5f}",
                          "decision": lk.decision + (f" ({lk.gate})" if lk.gate else "")} for lk in c.looks])


def _family_text(c: analysis.Claim) -> str:
    """The claim's family, its correction, the calibration, the training subsets and the plain-t sensitivity."""
    s = c.spec
    if s is None:
        return ""
    fam = (f"One of a family of {len(s.family)} claims ({', '.join(s.family)}), Bonferroni: one-sided "
           f"{s.claim_alpha:.4g} per side for this claim, {s.alpha:g} across the family. "
           if s.correction == "bonferroni" and len(s.family) > 1 else f"One-sided {s.claim_alpha:g} per side. ")
    cal = ("Critical values: the wider of the t one and the bootstrap-t of the look's data, side by side "
           f"({analysis.CALIBRATION.describe()}). " if s.calibrate == "bootstrap_t" else "")
    data = ("Student seed i of each arm trains on its own training subset (its teacher on the same one), so the "
            "interval covers which training images were drawn. ")
    sens = ""
    if c.plain_t is not None:
        v, look, low, high = c.plain_t
        holds = "it holds" if v == c.verdict else "it does not hold"
        sens = (f"Sensitivity: with the t critical values alone (same looks and gates) the verdict is {v} "
                f"(look {look}, [{low:+.2f}, {high:+.2f}]): {holds}.")
    return fam + cal + data + sens


def _claim_blocks(c: analysis.Claim, figs: dict[str, str], tbl: dict[str, pd.DataFrame]) -> list[render.Block]:
    b: list[render.Block] = [("h", 2, TITLES[c.key])]
    has_target = any(t.role == "to_target" for t in c.tests)
    if not c.looks:
        return [*b, ("p", f"**Verdict: {c.verdict}** ({c.reason}).")]
    b += [
        ("p", f"**Verdict: {c.verdict}**, {_where(c)}: {c.reason}. Rule: {c.rule}."),
        ("p", f"**Design:** {c.design}. The interval: {comparisons.INTERVALS[c.seeding]}, repeated (its coverage "
              "holds over all looks at once). " + _family_text(c)),
        ("p", f"**Regime:** {summaries.regime_text(c)}."),
        ("p", c.summary + "."),
        ("table", _look_table(c)),
    ]
    seeds = f"{c.power_n} seeds per arm" if c.power_n is not None else "more than 2,000 seeds per arm"
    b.append(("p", f"Power: a fixed design would need **{seeds} for {analysis.POWER:.0%} power** at a true distance "
                   f"of {c.power_effect:g} points from the decision boundary (noncentral t, one-sided "
                   f"{c.spec.claim_alpha if c.spec else 0.025:.4g}, at the observed spread of the last look)."))
    if c.by_margin:
        b.append(("p", "The same repeated interval read at other margins (descriptive: only the declared margin "
                       "decides):"))
        b.append(("table", pd.DataFrame([{"margin (points)": f"{m:g}", "reading of the interval": v}
                                         for m, v in c.by_margin.items()])))
    if c.tests:
        b.append(("table", _test_rows(c)))
        b += _to_target_blocks([t for t in c.tests if t.role == "to_target"])
    effects = tbl.get(f"effects_{c.key}")
    if effects is not None and not effects.empty:
        b += [("p", "The effect beside published ones (differences in points; levels from other data sets are "
                    "not compared):"), ("table", effects)]
    if f"curves_{c.key}" in figs:
        b.append(("figure", figs[f"curves_{c.key}"],
                  f"{TITLES[c.key]}: stage-1 loss (left), test accuracy against main-task steps (middle) and "
                  "against training seconds with stage 1 included (right); mean and 95% t band over seeds"
                  + ("; dashed: the target accuracy" if has_target else "")))
    if has_target and "steps_to_target" in figs:
        b.append(("figure", figs["steps_to_target"],
                  "Steps to the target accuracy per run, with and without stage 1, and in seconds"))
    return b


def _ablation_blocks(bench: Benchmark, table: pd.DataFrame, figs: dict[str, str],
                     seeding: str) -> list[render.Block]:
    spec = bench.ablation
    ref, eq = (spec.reference, spec.equivalence) if spec else ("", 0.5)
    how = "paired" if seeding == "paired" else "Welch"
    shared = ("The arms share their seeds and teachers with the reference (a paired design: pairs of one seed "
              "index)." if seeding == "paired" else
              "Caution: where the arms' tables list the same seeds and teachers, arm and reference share initial "
              "weights, batch order and teachers, so Welch's interval, which assumes independent arms, is only "
              "approximate here; a [design] grid pairs them on purpose.")
    moved = table[table["changes final accuracy"] == "yes"]["arm"].tolist()
    same = table[table["changes final accuracy"] == "no"]["arm"].tolist()
    b: list[render.Block] = [
        ("h", 2, "Ablation: do FSP implementation choices matter?"),
        ("p", f"Each arm changes the FSP loss of the `{ref}` group's students (everything else equal: teacher, "
              f"seeds, stage lengths, learning rates) and is set against them and against scratch. Changes final "
              f"accuracy: **yes** when the 95% {how} interval of arm minus {ref} excludes 0, **no** when it lies "
              f"within +-{eq:g} points, else **inconclusive**. Moved final accuracy beyond noise: "
              f"{', '.join(moved) or 'none'}; shown not to move it by {eq:g} points or more: "
              f"{', '.join(same) or 'none'}. "
              "stage1_loss_*: the stage-1 loss at its first and last evaluation point, mean over seeds (FSP values "
              "grow with activation scale, so the distances differ by orders of magnitude at the same learning "
              f"rate). {shared}"),
        ("table", table),
    ]
    if "ablation" in figs:
        b.append(("figure", figs["ablation"], "Ablation: each arm minus the reference style (top) and minus scratch "
                                              f"(bottom), final test accuracy in points, 95% {how} intervals"))
    return b


def _description(grid: GridLedger) -> str:
    try:
        value = tomllib.loads(grid.benchmark_text).get("description", "")
    except tomllib.TOMLDecodeError:
        return ""
    return value if isinstance(value, str) else ""


def _blocks(bench: Benchmark, grid: GridLedger, a: analysis.Analysis, tbl: dict[str, pd.DataFrame],
            figs: dict[str, str]) -> list[render.Block]:
    description = _description(grid)
    n_runs = a.runs["run_id"].nunique()
    b: list[render.Block] = [
        ("h", 1, f"FSP reproduction report: {bench.name}"),
        ("p", f"Benchmark `{grid.benchmark_file}`" + (f": {description}" if description else "")
         + f". {n_runs} runs ({(a.runs['role'] == 'teacher').sum()} teachers). Paper: Yim et al., "
         "\"A Gift from Knowledge Distillation\", CVPR 2017. Accuracies are in percent, differences in "
         "percentage points; final accuracy is the last evaluation of a run, on the full test set. Each interval "
         "is as its comparison's seeding demands: Welch's t for arms that draw their own seeds, the paired t for "
         "arms that share seed i on purpose; a claim's deciding interval is the repeated (group-sequential) one of "
         "the look where it stopped (tests/test_sequential.py simulates its error and coverage)."),
        ("h", 2, "Verdicts"),
        ("table", tbl["verdicts"].drop(columns=["rule"])),
        ("list", [f"**{c.key}: {c.verdict}**" + (f", {_where(c)}" if c.looks else "") + f" ({c.reason})."
                  + (f" Regime: {summaries.regime_text(c)}. {c.summary}. Rule: {c.rule}." if c.looks else "")
                  for c in a.claims]),
    ]
    if "looks" in figs:
        b.append(("figure", figs["looks"], "Each claim's estimate and repeated interval at every look, by seeds "
                                           "per arm; the claim stopped at the last look drawn"))
    if "forest" in figs:
        b.append(("figure", figs["forest"],
                  "Every test with its 95% interval (each label says paired or Welch), per claim: black diamond, the "
                  "deciding test (its repeated interval at the look where the claim stopped); grey square, the "
                  "regime checks (scratch and FSP at 2x minus 1x the full budget, paired; the teachers' headroom); "
                  "blue, compute-matched and baseline controls; green, the budget sweep. Solid line: 0; dashed red: "
                  "the smallest effect of interest, or -margin of the non-inferiority test"))
    if "budget_sweep" in figs:
        b.append(("figure", figs["budget_sweep"],
                  "Where on the budget axis the effect lives: FSP minus scratch at matched main-task budgets"))
    bad = a.runs[a.runs["status"] != "ok"].sort_values("run_id")
    b += [("h", 2, "Diverged and failed runs"),
          ("p", f"{(bad['status'] == 'diverged').sum()} diverged, {(bad['status'] == 'failed').sum()} failed "
                f"of {n_runs} runs. They stay in every test: a run keeps its last accuracy, or 0 when it never "
                "reached an evaluation."),
          ("list", [f"`{r.run_id}`: {r.status}" for r in bad.itertuples()])]
    for c in a.claims:
        b += _claim_blocks(c, figs, tbl)
    return b + _other_blocks(bench, grid, tbl, figs)


def _other_blocks(bench: Benchmark, grid: GridLedger, tbl: dict[str, pd.DataFrame],
                  figs: dict[str, str]) -> list[render.Block]:
    """What follows the claims: teachers, stage 1, arms, ablation, FSP settings, precision, environment, files."""
    b: list[render.Block] = [("h", 2, "Teachers"),
                             ("p", "Every FSP student of a deciding test has its own teacher (one teacher per "
                                   "student seed), so the spread between teachers is inside the spread the "
                                   "interval sees. Each student's gain over scratch against its teacher's final "
                                   "accuracy:"), ("table", tbl["teacher_gains"])]
    if "teacher_gains" in figs:
        b.append(("figure", figs["teacher_gains"], "Each FSP student's gain over scratch against its own teacher's "
                                                   "final accuracy"))
    b += [
          ("h", 2, "Stage 1 of the two-stage methods"),
          ("p", "Stage-1 loss (FSP or FitNet's hint) at the first and last evaluation point, mean over seeds; a stage "
                "1 that converges ends flat (small change over its last third). The curves are in each claim's "
                "figure."), ("table", tbl["stage1"]),
          ("h", 2, "Final accuracy per arm"), ("table", tbl["groups"])]
    if "final_accuracy" in figs:
        b.append(("figure", figs["final_accuracy"], "Final test accuracy: every seed, and the mean with its 95% t "
                                                    "interval; one panel per task, compared arms side by side"))
    if "ablation" in tbl:
        seeding = "paired" if bench.spec and bench.ablation and group_seeding(bench.spec).get(
            bench.ablation.reference) else "independent"
        b += _ablation_blocks(bench, tbl["ablation"], figs, seeding)
    b += [("h", 2, "FSP settings"), ("table", tbl["fsp_settings"])]
    if "fsp_ablation" in tbl:
        b += [("p", "The grid varies the FSP settings: final accuracy per setting."), ("table", tbl["fsp_ablation"])]
    if "precision" in tbl or "precision_not_run" in tbl:
        b += [("h", 2, "Precision: bf16 autocast against fp32")]
    if "precision" in tbl:
        b += [("p", "Runs trained under bf16 autocast (precision = \"bf16\", opt-in) beside the fp32 runs of the "
                    "same settings and seeds. diff: bf16 minus fp32 mean final accuracy in points, with its 95% "
                    "interval (paired when the twins share their seeds, else Welch); speedup: fp32 training "
                    "seconds over bf16."),
              ("table", tbl["precision"])]
    if "precision_not_run" in tbl:
        reason = grid.skipped.reason if grid.skipped else ""
        b += [("p", f"Skipped groups: their hardware has no native bf16 ({reason}), where bf16 autocast is "
                    "emulated and trains about 12x slower than fp32. force_bf16 = true in a group runs it anyway."),
              ("table", tbl["precision_not_run"])]
    b += [("h", 2, "Environment and cost"), ("table", tbl["environment"]),
          ("p", "Reproducibility: on the CPU, the same benchmark file gives bitwise identical runs (every "
                "column of runs.parquet but wall_time_s) when the torch CPU capability (the instruction set its "
                "kernels use, in the table above), the thread count and the library versions match. Across "
                "instruction sets they agree only statistically: 20 runs of the default preset trained on an AVX2 "
                "CPU differed from the same runs on an AVX-512 CPU by -0.93 to +1.45 points of final accuracy "
                "(mean +0.02). "
                "GPU runs are not bitwise reproducible. See docs/RELIABILITY.md."),
          ("h", 2, "Files"),
          ("list", ["`claims.json`: verdicts, reasons, regimes and tests, with the run ids to recompute every test "
                    "from runs.parquet",
                    *(f"`tables/{name}.csv`, `tables/{name}.tex`" for name in tbl)])]
    return b
