"""build_report: results/<name>/ -> reports/<name>/. The only module of the report that does I/O.

Reads runs.parquet, grid.json (the benchmark file's text is kept there, so the grid and its claims
are rebuilt exactly as they were run) and the run records; writes claims.json, tables/, figures/,
report.md and report.html. The same results give byte-identical claims.json and tables/*.csv.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from fspbench import analysis, stats
from fspbench.errors import BadInput
from fspbench.grid import Benchmark, benchmark_from_text, run_labels
from fspbench.io import atomic_write_bytes
from fspbench.report import figures, render, summaries, tables
from fspbench.results import read_record

TITLES = {"fast_optimization": "Claim 1: fast optimization", "better_accuracy": "Claim 2: better accuracy",
          "cross_task_transfer": "Claim 3: cross-task transfer"}


def load_results(results_dir: Path) -> tuple[pd.DataFrame, dict[str, Any], Benchmark]:
    """runs.parquet, grid.json and the benchmark rebuilt from grid.json; BadInput naming the file otherwise."""
    hint = "run `fspbench run BENCHMARK --results DIR` first"
    parquet, grid_path = results_dir / "runs.parquet", results_dir / "grid.json"
    for p in (parquet, grid_path):
        if not p.is_file():
            raise BadInput(f"{p}: no such file; not a finished results folder, {hint}")
    try:
        df = pd.read_parquet(parquet)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise BadInput(f"{parquet}: unreadable ({type(err).__name__}); {hint}") from None
    missing = [c for c in ("run_id", "method", "stage", "step", "stage_step", "wall_time_s", "test_acc", "status")
               if c not in df.columns]
    if missing:
        raise BadInput(f"{parquet}: missing columns {', '.join(missing)}; {hint}")
    grid = read_record(grid_path)
    if not isinstance(grid, dict) or not isinstance(grid.get("benchmark_text"), str):
        raise BadInput(f"{grid_path}: unreadable or without benchmark_text; {hint}")
    bench = benchmark_from_text(grid["benchmark_text"], Path(grid.get("benchmark_file") or "benchmark.toml"),
                                results_dir)
    return df, grid, bench


def build_report(results_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse a results folder and write the report; returns verdicts and the paths written.

    Nothing is written when the inputs are missing or unreadable (BadInput, one line).
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    df, grid, bench = load_results(results_dir)
    df = analysis.label_runs(df, run_labels(bench))  # results from before the parquet carried the labels
    a = analysis.analyze(df, bench.claims)
    records = [rec for r in bench.runs if (rec := read_record(results_dir / "runs" / f"{r.run_id}.json"))]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(f"--out {out_dir}: cannot create the report folder ({err.strerror or err}); "
                       "pass a folder you can write to") from None

    claims_path = out_dir / "claims.json"
    atomic_write_bytes(claims_path, (json.dumps(analysis.claims_json(a), indent=2, sort_keys=True) + "\n").encode())

    # ---- tables
    summary = summaries.group_summary(a.runs)
    configs = {r.run_id: r.config for r in bench.runs}
    settings, ablation = tables.fsp_settings(configs, a.runs)
    tbl: dict[str, pd.DataFrame] = {
        "verdicts": tables.verdict_panel(a),
        "tests": tables.all_tests(a),
        "teachers": tables.teacher_table(a),
        "stage1": summaries.stage1_table(df, a.runs),
        "groups": tables.group_table(summary),
        **{f"effects_{c.key}": tables.effect_table(a, c.key) for c in a.claims},
        "fsp_settings": settings,
        "environment": tables.environment(grid, records),
    }
    if ablation is not None:
        tbl["fsp_ablation"] = ablation
    abl = analysis.ablation(df, bench.ablation)
    if abl is not None:
        atomic_write_bytes(out_dir / "ablation.json",
                           (json.dumps(analysis.ablation_json(abl), indent=2, sort_keys=True) + "\n").encode())
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
        figures.save_figure(figures.forest_plot(summaries.ablation_rows(abl), {"ref": [0.0], "scratch": [0.0]},
                                                {"ref": note, "scratch": ""},
                                                {"ref": f"Each arm minus the {abl.reference} group's FSP students",
                                                 "scratch": "Each arm minus scratch"}, show_roles=False),
                            fig_dir, "ablation")
        fig_names["ablation"] = "ablation"
    figure_paths = [fig_dir / f"{n}.{ext}" for n in fig_names.values() for ext in ("png", "svg")]

    # ---- report.md, report.html
    blocks = _blocks(bench, grid, a, tbl, fig_names)
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, render.markdown(blocks).encode())
    atomic_write_bytes(page, render.html_page(blocks, f"FSP reproduction report: {bench.name}", fig_dir).encode())
    return {"name": bench.name, "verdicts": {c.key: c.verdict for c in a.claims},
            "reasons": {c.key: c.reason for c in a.claims},
            "regimes": {c.key: _short_regime(c) for c in a.claims}, "report_md": md,
            "report_html": page, "claims_json": claims_path, "tables": table_paths, "figures": figure_paths}


def _short_regime(c: analysis.Claim) -> str:
    """"26.9 epochs per run, doubling gain -0.26 [-0.77, +0.24]: converged" for the command's output."""
    reg = c.regime
    if reg is None:
        return "no regime: the claim did not run"
    if reg.gain is None:
        return f"{reg.epochs:.1f} epochs per run, regime not checked"
    g = reg.gain
    state = "converged" if reg.converged else "not converged"
    return f"{reg.epochs:.1f} epochs per run, doubling gain {g.estimate:+.2f} [{g.ci[0]:+.2f}, {g.ci[1]:+.2f}]: {state}"


def _notes(c: analysis.Claim) -> str:
    """The line under a claim's forest-plot panel: its verdict, why, and its regime in short."""
    reg = c.regime
    head = f"{c.verdict}: {c.reason}"
    if reg is None or reg.gain is None:
        return head
    return (f"{head}\n{reg.epochs:.1f} epochs per full-budget run; doubling gain {reg.gain.estimate:+.2f} "
            f"[{reg.gain.ci[0]:+.2f}, {reg.gain.ci[1]:+.2f}]")


def _figures(df: pd.DataFrame, a: analysis.Analysis, summary: pd.DataFrame, fig_dir: Path) -> dict[str, str]:
    """Draw and save every figure; returns figure key -> file stem."""
    names: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        figures.save_figure(fig, fig_dir, name)
        names[name] = name

    ran = [c for c in a.claims if c.tests]
    rows = summaries.forest_rows(a)
    if not rows.empty:
        bounds = {c.key: [0.0] + ([-c.tests[0].extra.get("margin", 0.5)] if c.key == "fast_optimization" else [])
                  for c in ran}
        save(figures.forest_plot(rows, bounds, {c.key: _notes(c) for c in ran}, TITLES), "forest")
    sweep = summaries.sweep_rows(a)
    if not sweep.empty and sweep["fraction"].nunique() > 1:
        save(figures.budget_sweep(sweep, TITLES), "budget_sweep")
    target = a.targets.get("fast_optimization")
    for c in ran:
        sides = summaries.compared_runs(c, a.runs)
        if not sides:
            continue
        acc_parts = [summaries.accuracy_bands(df, ids, label) for label, ids in sides.items()]
        acc = {k: pd.concat([p[k] for p in acc_parts], ignore_index=True) for k in ("steps", "seconds")}
        stage1 = pd.concat([summaries.stage1_band(df, ids, label) for label, ids in sides.items()], ignore_index=True)
        save(figures.learning_curves(acc, stage1, TITLES[c.key],
                                     100 * target if c.key == "fast_optimization" and target else None),
             f"curves_{c.key}")

    students = summary[summary["role"] == "student"].copy()
    if not students.empty:
        students = _arm_order(students, a)
        points = pd.DataFrame([{"label": lab, "acc": 100 * float(acc)}
                               for lab, ids in zip(students["label"], students["run_ids"])
                               for acc in a.runs.set_index("run_id").loc[list(ids), "final_acc"]])
        save(figures.final_accuracy(students, points, "Final test accuracy per arm"), "final_accuracy")

    fast = next(c for c in a.claims if c.key == "fast_optimization")
    to_target = next((t for t in fast.tests if t.role == "to_target"), None)
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
    order = {"fsp": 0, "scratch": 1, "kd": 2, "fitnet": 3}
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
        unit = " (FSP / scratch)" if t.metric.endswith("_ratio") else " (points)"
        rows.append({"test": t.name, "role": t.role, "metric": t.metric + unit, "estimate": t.estimate,
                     "95% CI": f"[{render.cell_text(t.ci[0])}, {render.cell_text(t.ci[1])}]", "n": t.n,
                     "p": t.p_value, "failures": t.failures, "sides and compute": t.budget})
    return pd.DataFrame(rows)


def _claim_blocks(c: analysis.Claim, figs: dict[str, str], tbl: dict[str, pd.DataFrame]) -> list[render.Block]:
    b: list[render.Block] = [
        ("h", 2, TITLES[c.key]),
        ("p", f"**Verdict: {c.verdict}** ({c.reason}). Rule: {c.rule}. Interval: {stats.METHOD}, 95%."),
        ("p", f"**Regime:** {summaries.regime_text(c)}."),
        ("p", c.summary + "."),
    ]
    if c.verdict == "inconclusive" or c.test_verdict == "inconclusive":
        if c.seeds_needed is not None:
            b.append(("p", f"Power: at the observed spread, about **{c.seeds_needed} seeds per arm** would make the "
                           "interval's half-width smaller than the distance from the estimate to the decision "
                           "boundary."))
        elif c.test_verdict == "inconclusive":
            b.append(("p", "Power: the estimate sits on the decision boundary (or its spread is unknown); no number "
                           "of seeds would settle it at this effect size."))
    if c.test_verdict and c.test_verdict != c.verdict:
        b.append(("p", f"The interval alone would read **{c.test_verdict}**; the regime check overrides it."))
    if c.by_margin:
        b.append(("table", pd.DataFrame([{"margin (points)": f"{m:g}", "verdict of the interval": v}
                                         for m, v in c.by_margin.items()])))
    if c.tests:
        b.append(("table", _test_rows(c)))
        ratios = [t for t in c.tests if t.metric.endswith("_ratio")]
        if ratios:
            t = ratios[0]
            b.append(("p", f"Steps to the target {100 * t.extra['target_acc']:.2f}% (on the curve points' test images, "
                           f"the same images as the target): reached by {t.extra['treatment_reached']} of "
                           f"{len(t.treatment_runs)} FSP runs and {t.extra['control_reached']} of "
                           f"{len(t.control_runs)} scratch runs. Ratios are of geometric means, FSP / scratch, "
                           "with Welch's interval on the logarithms."))
    effects = tbl.get(f"effects_{c.key}")
    if effects is not None and not effects.empty:
        b += [("p", "The effect beside published ones (differences in points; levels from other data sets are "
                    "not compared):"), ("table", effects)]
    if f"curves_{c.key}" in figs:
        b.append(("figure", figs[f"curves_{c.key}"],
                  f"{TITLES[c.key]}: stage-1 loss (left), test accuracy against main-task steps (middle) and "
                  "against training seconds with stage 1 included (right); mean and 95% t band over seeds"
                  + ("; dashed: the target accuracy" if c.key == "fast_optimization" else "")))
    if c.key == "fast_optimization" and "steps_to_target" in figs:
        b.append(("figure", figs["steps_to_target"],
                  "Steps to the target accuracy per run, with and without stage 1, and in seconds"))
    return b


def _ablation_blocks(bench: Benchmark, table: pd.DataFrame, figs: dict[str, str]) -> list[render.Block]:
    spec = bench.ablation
    ref, eq = (spec.reference, spec.equivalence) if spec else ("", 0.5)
    moved = table[table["changes final accuracy"] == "yes"]["arm"].tolist()
    same = table[table["changes final accuracy"] == "no"]["arm"].tolist()
    b: list[render.Block] = [
        ("h", 2, "Ablation: do FSP implementation choices matter?"),
        ("p", f"Each arm changes the FSP loss of the `{ref}` group's students (everything else equal: teacher, "
              f"seeds, stage lengths, learning rates) and is set against them and against scratch. Changes final "
              f"accuracy: **yes** when the 95% Welch interval of arm minus {ref} excludes 0, **no** when it lies "
              f"within +-{eq:g} points, else **inconclusive**. Moved final accuracy beyond noise: "
              f"{', '.join(moved) or 'none'}; shown not to move it by {eq:g} points or more: "
              f"{', '.join(same) or 'none'}. "
              "stage1_loss_*: the stage-1 loss at its first and last evaluation point, mean over seeds (FSP values "
              "grow with activation scale, so the distances differ by orders of magnitude at the same learning "
              "rate)."),
        ("table", table),
    ]
    if "ablation" in figs:
        b.append(("figure", figs["ablation"], "Ablation: each arm minus the reference style (top) and minus scratch "
                                              "(bottom), final test accuracy in points, 95% Welch intervals"))
    return b


def _description(grid: dict[str, Any]) -> str:
    try:
        value = tomllib.loads(grid.get("benchmark_text", "")).get("description", "")
    except tomllib.TOMLDecodeError:
        return ""
    return value if isinstance(value, str) else ""


def _blocks(bench: Benchmark, grid: dict[str, Any], a: analysis.Analysis, tbl: dict[str, pd.DataFrame],
            figs: dict[str, str]) -> list[render.Block]:
    description = _description(grid)
    n_runs = a.runs["run_id"].nunique()
    b: list[render.Block] = [
        ("h", 1, f"FSP reproduction report: {bench.name}"),
        ("p", f"Benchmark `{grid.get('benchmark_file', '')}`" + (f": {description}" if description else "")
         + f". {n_runs} runs ({(a.runs['role'] == 'teacher').sum()} teachers). Paper: Yim et al., "
         "\"A Gift from Knowledge Distillation\", CVPR 2017. Accuracies are in percent, differences in "
         "percentage points; final accuracy is the last evaluation of a run, on the full test set. Every interval "
         f"is {stats.METHOD} at 95%, which holds its coverage at five seeds per arm (tests/test_stats.py)."),
        ("h", 2, "Verdicts"),
        ("table", tbl["verdicts"].drop(columns=["rule"])),
        ("list", [f"**{c.key}: {c.verdict}** ({c.reason}). Regime: {summaries.regime_text(c)}. {c.summary}. "
                  f"Rule: {c.rule}." for c in a.claims]),
    ]
    if "forest" in figs:
        b.append(("figure", figs["forest"],
                  "Every test with its 95% Welch interval, per claim: black diamond, the deciding test; grey square, "
                  "the regime check (scratch at 2x minus scratch at 1x the full budget); blue, compute-matched and "
                  "baseline controls; orange, each teacher's students; green, the budget sweep. Solid line: 0; "
                  "dashed red: -margin of the non-inferiority test"))
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
    b += [("h", 2, "Teachers"),
          ("p", "Each teacher's final accuracy and its own FSP students against all scratch students of the claim: "
                "the spread between teachers."), ("table", tbl["teachers"]),
          ("h", 2, "Stage 1 of the two-stage methods"),
          ("p", "Stage-1 loss (FSP or FitNet's hint) at the first and last evaluation point, mean over seeds; a stage "
                "1 that converges ends flat (small change over its last third). The curves are in each claim's "
                "figure."), ("table", tbl["stage1"]),
          ("h", 2, "Final accuracy per arm"), ("table", tbl["groups"])]
    if "final_accuracy" in figs:
        b.append(("figure", figs["final_accuracy"], "Final test accuracy: every seed, and the mean with its 95% t "
                                                    "interval; one panel per task, compared arms side by side"))
    if "ablation" in tbl:
        b += _ablation_blocks(bench, tbl["ablation"], figs)
    b += [("h", 2, "FSP settings"), ("table", tbl["fsp_settings"])]
    if "fsp_ablation" in tbl:
        b += [("p", "The grid varies the FSP settings: final accuracy per setting."), ("table", tbl["fsp_ablation"])]
    if "precision" in tbl or "precision_not_run" in tbl:
        b += [("h", 2, "Precision: bf16 autocast against fp32")]
    if "precision" in tbl:
        b += [("p", "Runs trained under bf16 autocast (precision = \"bf16\", opt-in) beside the fp32 runs of the "
                    "same settings and seeds. diff: bf16 minus fp32 mean final accuracy in points, with its 95% "
                    "Welch interval; speedup: fp32 training seconds over bf16."),
              ("table", tbl["precision"])]
    if "precision_not_run" in tbl:
        reason = (grid.get("skipped") or {}).get("reason", "")
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
