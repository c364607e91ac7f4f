"""build_report: results/<name>/ -> reports/<name>/. The only module of the report that does I/O.

Reads runs.parquet, grid.json (the benchmark file's text is kept there, so the grid and its claims
are rebuilt exactly as they were run) and the run records; writes claims.json, tables/, figures/,
report.md and report.html. The same results give byte-identical claims.json and tables/*.csv.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from fspbench import analysis
from fspbench.config import RunConfig
from fspbench.errors import BadInput
from fspbench.grid import Benchmark, benchmark_from_text
from fspbench.io import atomic_write_bytes
from fspbench.methods import METHODS
from fspbench.report import figures, render, summaries, tables
from fspbench.tune import read_record

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


def _init_steps(cfg: RunConfig) -> int:
    """Stage-1 steps of a run from its settings (0 for one-stage methods)."""
    stages = METHODS[cfg.method].stages(cfg)
    return stages[0].steps if len(stages) > 1 else 0


def build_report(results_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse a results folder and write the report; returns verdicts and the paths written.

    Nothing is written when the inputs are missing or unreadable (BadInput, one line).
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    df, grid, bench = load_results(results_dir)
    groups = {r.run_id: r.group for r in bench.runs}
    df = analysis.label_runs(df, groups, {r.run_id: r.config.steps for r in bench.runs},
                             {r.run_id: _init_steps(r.config) for r in bench.runs})
    a = analysis.analyze(df, bench.claims, random_state=0)
    records = [rec for r in bench.runs if (rec := read_record(results_dir / "runs" / f"{r.run_id}.json"))]

    claims_path = out_dir / "claims.json"
    atomic_write_bytes(claims_path, (json.dumps(analysis.claims_json(a), indent=2, sort_keys=True) + "\n").encode())

    # ---- tables
    summary = summaries.group_summary(a.runs, random_state=0)
    configs = {r.run_id: r.config for r in bench.runs}
    settings, ablation = tables.fsp_settings(configs, a.runs)
    tbl: dict[str, pd.DataFrame] = {
        "verdicts": tables.verdict_panel(a),
        "tests": tables.all_tests(a),
        "groups": tables.group_table(summary),
        "paper": tables.paper_table(tables.this_run_values(a, bench.claims, summary)),
        "fsp_settings": settings,
        "environment": tables.environment(grid, records),
    }
    if ablation is not None:
        tbl["fsp_ablation"] = ablation
    precision = tables.precision_effect(configs, a.runs)
    if not precision.empty:
        tbl["precision"] = precision
    table_paths = [p for name, t in tbl.items() for p in tables.write_table(t, out_dir / "tables", name)]

    # ---- figures
    fig_dir = out_dir / "figures"
    fig_names = _figures(df, a, summary, fig_dir)
    figure_paths = [fig_dir / f"{n}.{ext}" for n in fig_names.values() for ext in ("png", "svg")]

    # ---- report.md, report.html
    blocks = _blocks(bench, grid, a, tbl, fig_names)
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, render.markdown(blocks).encode())
    atomic_write_bytes(page, render.html_page(blocks, f"FSP reproduction report: {bench.name}", fig_dir).encode())
    return {"name": bench.name, "verdicts": {c.key: c.verdict for c in a.claims}, "report_md": md,
            "report_html": page, "claims_json": claims_path, "tables": table_paths, "figures": figure_paths}


def _figures(df: pd.DataFrame, a: analysis.Analysis, summary: pd.DataFrame, fig_dir: Path) -> dict[str, str]:
    """Draw and save every figure; returns figure key -> file stem (curves_<claim>, final_accuracy, ...)."""
    names: dict[str, str] = {}
    target = a.targets.get("fast_optimization")
    for claim, sides in summaries.compared_runs(a).items():
        bands = pd.concat([summaries.curve_band(df, ids, label) for label, ids in sides.items()], ignore_index=True)
        fsp_ids = next((ids for label, ids in sides.items() if label.startswith("fsp")), ())
        init = int(a.runs.loc[a.runs["run_id"].isin(fsp_ids), "init_steps"].max()) if fsp_ids else 0
        fig = figures.learning_curves(bands, TITLES[claim], summaries.init_end(df, fsp_ids, init),
                                      100 * target if claim == "fast_optimization" and target else None)
        names[f"curves_{claim}"] = f"curves_{claim}"
        figures.save_figure(fig, fig_dir, f"curves_{claim}")

    students = summary[summary["role"] == "student"].copy()
    if not students.empty:
        students["label"] = [f"{g}: {m} {i}+{b}" if i and m != "scratch" else f"{g}: {m} {b}"
                             for g, m, i, b in zip(students["group"], students["method"], students["init_steps"],
                                                   students["budget"])]
        points = pd.DataFrame([{"label": lab, "acc": 100 * float(acc)}
                               for lab, ids in zip(students["label"], students["run_ids"])
                               for acc in a.runs.set_index("run_id").loc[list(ids), "final_acc"]])
        fig = figures.final_accuracy(students, points, "Final test accuracy per student group and method")
        names["final_accuracy"] = "final_accuracy"
        figures.save_figure(fig, fig_dir, "final_accuracy")

    fast = next(c for c in a.claims if c.key == "fast_optimization")
    if fast.tests and target is not None:
        main = fast.tests[0]
        runs = a.runs.set_index("run_id")
        parts = []
        for ids in (main.treatment_runs, main.control_runs):
            per = summaries.per_run_to_target(df, ids, target)
            per["label"] = summaries.side_label(runs.loc[list(ids)])
            parts.append(per)
        fig = figures.steps_to_target(pd.concat(parts, ignore_index=True), 100 * target,
                                      "Fast optimization: FSP (short) vs scratch (full)")
        names["steps_to_target"] = "steps_to_target"
        figures.save_figure(fig, fig_dir, "steps_to_target")
    return names


def _test_rows(claim: analysis.Claim, runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for t in claim.tests:
        unit = " (points)" if t.metric == "final_acc_diff" else " (FSP / scratch)"
        rows.append({"test": t.name, "metric": t.metric + unit, "estimate": t.estimate,
                     "95% CI": f"[{render.cell_text(t.ci[0])}, {render.cell_text(t.ci[1])}]", "n": t.n,
                     "Welch p": t.p_value, "P(improvement)": t.p_improvement, "failures": t.failures,
                     "budget matching": summaries.budget_match(t, runs)["label"]})
    return pd.DataFrame(rows)


def _blocks(bench: Benchmark, grid: dict[str, Any], a: analysis.Analysis, tbl: dict[str, pd.DataFrame],
            figs: dict[str, str]) -> list[render.Block]:
    raw_description = grid.get("benchmark_text", "")
    description = next((ln.split("=", 1)[1].strip().strip('"') for ln in raw_description.splitlines()
                        if ln.startswith("description")), "")
    n_runs = a.runs["run_id"].nunique()
    b: list[render.Block] = [
        ("h", 1, f"FSP reproduction report: {bench.name}"),
        ("p", f"Benchmark `{grid.get('benchmark_file', '')}`" + (f": {description}" if description else "")
         + f". {n_runs} runs ({(a.runs['role'] == 'teacher').sum()} teachers). Paper: Yim et al., "
         "\"A Gift from Knowledge Distillation\", CVPR 2017. Accuracies are in percent, differences in "
         "percentage points; final accuracy is the last evaluation of a run, on the full test set."),
        ("h", 2, "Verdicts"),
        ("table", tbl["verdicts"].drop(columns=["rule"])),
        ("list", [f"**{c.key}: {c.verdict}**. {c.summary}. Rule: {c.rule}." for c in a.claims]),
    ]
    bad = a.runs[a.runs["status"] != "ok"].sort_values("run_id")
    b += [("h", 2, "Diverged and failed runs"),
          ("p", f"{(bad['status'] == 'diverged').sum()} diverged, {(bad['status'] == 'failed').sum()} failed "
                f"of {n_runs} runs. They stay in every test: a run keeps its last accuracy, or 0 when it never "
                "reached an evaluation."),
          ("list", [f"`{r.run_id}`: {r.status}" for r in bad.itertuples()])]
    for c in a.claims:
        b += [("h", 2, TITLES[c.key]), ("p", f"**Verdict: {c.verdict}.** Rule: {c.rule}."), ("p", c.summary + ".")]
        if c.tests:
            b += [("table", _test_rows(c, a.runs)),
                  ("p", "Budgets as each test states them (main-task steps, as the paper counts, and total steps "
                        "with stage 1):"),
                  ("list", [f"`{t.name}`: {t.budget}" for t in c.tests])]
            ratios = [t for t in c.tests if t.metric.endswith("_ratio")]
            if ratios:
                b.append(("list", [f"`{t.name}`: target {100 * t.extra.get('target_acc', float('nan')):.2f}%; "
                                   f"reached by {t.extra.get('treatment_reached')} of "
                                   f"{len(t.treatment_runs)} FSP runs and {t.extra.get('control_reached')} of "
                                   f"{len(t.control_runs)} scratch runs (when a run never reaches it, its steps are "
                                   "unknown and the ratio is left undetermined: -)" for t in ratios]))
        if f"curves_{c.key}" in figs:
            b.append(("figure", figs[f"curves_{c.key}"],
                      f"{TITLES[c.key]}: test accuracy, mean and 95% band (mean ± 1.96 sem over seeds), in steps "
                      "and in seconds; grey: stage 1" + ("; dashed line: the target accuracy"
                                                         if c.key == "fast_optimization" else "")))
        if c.key == "fast_optimization" and "steps_to_target" in figs:
            b.append(("figure", figs["steps_to_target"],
                      "Steps to the target accuracy per run, with and without stage 1, and in seconds"))
    b += [("h", 2, "Final accuracy per group"), ("table", tbl["groups"])]
    if "final_accuracy" in figs:
        b.append(("figure", figs["final_accuracy"], "Final test accuracy: every seed, and the mean with its 95% "
                                                    "bootstrap CI"))
    b += [("h", 2, "Paper and independent reproductions beside this run"),
          ("p", "Cells the paper's text does not let us verify read \"not available\"; this run's numbers come "
                "from its own data set and networks (see this_run_setting), so compare directions and gaps, not "
                "levels."),
          ("table", tbl["paper"]),
          ("h", 2, "FSP settings"), ("table", tbl["fsp_settings"])]
    if "fsp_ablation" in tbl:
        b += [("p", "The grid varies the FSP settings: final accuracy per setting."), ("table", tbl["fsp_ablation"])]
    if "precision" in tbl:
        b += [("h", 2, "Precision: bf16 autocast against fp32"),
              ("p", "Runs trained under bf16 autocast (precision = \"bf16\", opt-in) beside the fp32 runs of the "
                    "same settings and seeds. diff: bf16 minus fp32 mean final accuracy in points, with its 95% "
                    "bootstrap CI; speedup: fp32 training seconds over bf16. Each claim is decided on the groups "
                    "its [claims] table names."),
              ("table", tbl["precision"])]
    b += [("h", 2, "Environment and cost"), ("table", tbl["environment"]),
          ("p", "Reproducibility: on the CPU, the same benchmark file gives bitwise identical runs (every "
                "column of runs.parquet but wall_time_s) at the same thread count and library versions; "
                "on GPUs, cuDNN and atomics-based kernels are not deterministic by default, so GPU runs "
                "agree only statistically. See docs/RELIABILITY.md."),
          ("h", 2, "Files"),
          ("list", ["`claims.json`: verdicts and tests, with the run ids to recompute them from runs.parquet",
                    *(f"`tables/{name}.csv`, `tables/{name}.tex`" for name in tbl)])]
    return b
