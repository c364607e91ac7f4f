"""Live curves: TensorBoard event files of every run (read back with tbparse), the MLflow runs of a grid,
resume without duplicate points, and bad tracking settings exiting 2 with one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import check_curves, free_port, run_cli, scalars

from fspbench.grid import at_look, load_benchmark, with_mlflow
from fspbench.results import Paths, RunRecord, read_run_record
from fspbench.tensorboard_sink import TensorBoardSink
from fspbench.tracking import Tracker

ROOT = Path(__file__).resolve().parent.parent
TINY = str((Path(__file__).parent / "benchmarks" / "tiny.toml").resolve())


def _events(root: Path) -> set[Path]:
    return set(root.rglob("*tfevents*"))


def test_records_caught_up_once_on_the_main_task_axis(tmp_path: Path) -> None:
    """Committed records replayed twice: every point once, stage 1 and the main task each on its own axis."""
    bench = load_benchmark("default", ROOT / "results" / "default")
    fsp = [s for s in bench.students if s.config.method == "fsp"][:2]
    bench = replace(bench, teachers=[t for t in bench.teachers if t.run_id in {s.teacher_run_id for s in fsp}],
                    students=fsp)
    paths = Paths(ROOT / "results" / "default")
    records = [read_run_record(paths.record(r.run_id)) for r in bench.runs]
    assert all(records)
    Tracker(bench, paths, [TensorBoardSink(tmp_path)]).catch_up()
    files = _events(tmp_path)
    assert len(files) == len(bench.runs)
    Tracker(bench, paths, [TensorBoardSink(tmp_path)]).catch_up()  # a rerun: nothing new to write
    assert _events(tmp_path) == files
    check_curves(tmp_path, [r for r in records if r is not None])
    df = scalars(tmp_path)
    student = fsp[0]
    rec = read_run_record(paths.record(student.run_id))
    assert rec is not None
    init = [p for p in rec.curve if p.stage != "main"]
    loss = df[(df.dir_name == student.run_id) & (df.tag == "stage1/loss")]
    assert sorted(loss.step) == [p.stage_step for p in init] and init  # FSP's stage 1 against its own steps
    main = df[(df.dir_name == student.run_id) & (df.tag == "main/test_acc")]
    assert main.step.max() == student.config.steps  # main-task steps, not the run's total


def test_no_mlflow_unless_asked(tmp_path: Path) -> None:
    """A grid without --mlflow or [tracking]: TensorBoard files only; MLflow is not even imported."""
    bench = load_benchmark("default", ROOT / "results" / "default")
    for r in bench.teachers[:2]:
        shutil.copy2(ROOT / "results" / "default" / "runs" / f"{r.run_id}.json", tmp_path / f"{r.run_id}.json")
    code = (
        "import sys\nfrom dataclasses import replace\nfrom pathlib import Path\n"
        "from fspbench.grid import load_benchmark\nfrom fspbench.results import Paths\n"
        "from fspbench.tracking import tracker\n"
        f"bench = load_benchmark('default', {str(tmp_path / 'R')!r})\n"
        "bench = replace(bench, teachers=bench.teachers[:2], students=[])\n"
        f"paths = Paths(Path({str(tmp_path / 'R')!r}))\n"
        f"paths.runs.mkdir(parents=True)\n"
        f"for p in Path({str(tmp_path)!r}).glob('*.json'): p.rename(paths.runs / p.name)\n"
        "t = tracker(bench, paths)\nprint([s.name for s in t.sinks])\nt.catch_up()\n"
        "print('mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:2] == ["['TensorBoard']", "False"]
    assert len(_events(tmp_path / "R" / "tensorboard")) == 2
    assert not (tmp_path / "mlruns").exists()


def test_tracking_table_and_the_flag_that_overrides_it(tmp_path: Path) -> None:
    text = (ROOT / "tests" / "benchmarks" / "tiny.toml").read_text()
    bench_file = tmp_path / "tiny.toml"
    bench_file.write_text(text + '\n[tracking]\nmlflow = "http://127.0.0.1:5000"\n')
    bench = load_benchmark(str(bench_file), tmp_path / "R")
    assert bench.tracking.mlflow == "http://127.0.0.1:5000"
    assert with_mlflow(bench, "sqlite:///m.db").tracking.mlflow == "sqlite:///m.db"
    assert with_mlflow(bench, None).tracking.mlflow == "http://127.0.0.1:5000"
    smoke = load_benchmark("smoke", tmp_path / "S")
    assert smoke.tracking.mlflow is None  # not asked: no MLflow
    assert at_look(with_mlflow(smoke, "sqlite:///m.db"), {k: 4 for k in smoke.claims}).tracking.mlflow


BAD = [
    ('[tracking]\nmlfow = "http://127.0.0.1:5000"\n', [], "unknown key tracking.mlfow (did you mean mlflow?)"),
    ('[tracking]\nmlflow = 5000\n', [], "tracking.mlflow: expected a string"),
    ('[tracking]\nmlflow = "ftp://host/x"\n', [], "tracking.mlflow: expected an MLflow tracking URI"),
    ("", ["--mlflow", "localhost:5000"], "--mlflow: expected an MLflow tracking URI"),
    ("", ["--mlflow", "http://127.0.0.1:{port}"], "no MLflow server answers there"),
]


@pytest.mark.parametrize("table,args,expected", BAD, ids=[e for _, _, e in BAD])
def test_bad_tracking_exits_2_with_one_line(table: str, args: list[str], expected: str, tmp_path: Path) -> None:
    bench_file = tmp_path / "tiny.toml"
    bench_file.write_text((ROOT / "tests" / "benchmarks" / "tiny.toml").read_text() + "\n" + table)
    args = [a.format(port=free_port()) for a in args]
    res = run_cli("run", str(bench_file), "--results", str(tmp_path / "R"), *args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert not (tmp_path / "R").exists() and not (tmp_path / "mlruns").exists()


def test_submit_checks_the_mlflow_uri_before_the_cluster(tmp_path: Path) -> None:
    res = run_cli("submit", TINY, "--address", f"http://127.0.0.1:{free_port()}", "--mlflow", "mlruns",
                  cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--mlflow: expected an MLflow tracking URI" in res.stderr


@pytest.mark.slow
def test_smoke_grid_curves_in_tensorboard_written_live(smoke_results: Path) -> None:
    """The smoke grid's event files: every run's curve as its record has it, the teachers' written while they
    trained; no MLflow unless asked, and none of Tune's own logger files."""
    bench = load_benchmark("smoke", smoke_results)
    paths = Paths(smoke_results)
    records = [rec for r in bench.runs if (rec := read_run_record(paths.record(r.run_id))) is not None]
    runs = {p.name for p in (smoke_results / "tensorboard").iterdir()}
    assert {r.run_id for r in records} <= runs and len(records) >= 20
    check_curves(smoke_results / "tensorboard", records)
    for rec in records:
        if rec.role == "teacher":  # the first event file was opened at the first point, before the record
            first = min(int(re.search(r"tfevents\.(\d+)", f.name).group(1))  # type: ignore[union-attr]
                        for f in (smoke_results / "tensorboard" / rec.run_id).glob("*tfevents*"))
            from datetime import datetime

            assert first < datetime.fromisoformat(rec.finished_at).timestamp(), rec.run_id
    tune_logs = [p for p in (smoke_results / "ray").rglob("*")
                 if p.name in ("progress.csv", "result.json") or "tfevents" in p.name]
    assert tune_logs == []
    assert not list(smoke_results.rglob("mlruns")) and not (ROOT / "mlruns").exists()


@pytest.mark.slow
def test_mlflow_one_run_per_run_and_a_rerun_adds_nothing(ray_cluster, tmp_path: Path) -> None:
    """tests/benchmarks/tiny.toml with --mlflow (an sqlite store), then the same command again."""
    from mlflow.tracking import MlflowClient

    results, uri = tmp_path / "R", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = ["run", TINY, "--results", str(results), "--address", ray_cluster["address"], "--quiet", "--mlflow", uri]
    res = run_cli(*cmd, env=ray_cluster["env"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("fspbench/tiny")
    assert exp is not None

    def state() -> dict[str, tuple[str, float, list[int]]]:
        runs = client.search_runs([exp.experiment_id])
        return {r.data.tags["run_id"]: (r.info.status, r.data.metrics["final_test_acc"],
                                        [m.step for m in client.get_metric_history(r.info.run_id, "main/test_acc")])
                for r in runs}

    first = state()
    records = {p.stem: RunRecord.load(p) for p in (results / "runs").glob("*.json")}
    assert set(first) == set(records) and len(first) == 3  # one MLflow run per fspbench run
    for run_id, (status, final, steps) in first.items():
        rec = records[run_id]
        assert status == "FINISHED" and rec.final is not None and final == pytest.approx(rec.final.test_acc)
        assert steps == [p.stage_step for p in rec.curve if p.stage == "main"]
        mlflow_id = client.search_runs([exp.experiment_id], f"tags.run_id = '{run_id}'")[0].info.run_id
        (artifact,) = client.list_artifacts(mlflow_id)
        assert artifact.path == f"{run_id}.json"
        assert (tmp_path / "mlflow-artifacts").is_dir()  # beside the store, not ./mlruns
    events = _events(results / "tensorboard")
    again = run_cli(*cmd, env=ray_cluster["env"], cwd=tmp_path)
    assert again.returncode == 0 and "0 to train" in again.stdout, again.stderr[-3000:]
    assert state() == first  # no run, point or final added
    assert _events(results / "tensorboard") == events
    check_curves(results / "tensorboard", list(records.values()))
    assert json.loads((results / "tensorboard" / next(iter(records)) / "fspbench.json").read_text())["final"]
    assert not (tmp_path / "mlruns").exists()
