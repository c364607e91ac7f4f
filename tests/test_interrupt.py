"""Interrupting ``fspbench run``: Ctrl-C (SIGINT to the command's whole process group, as a terminal sends
it) or SIGTERM stops the grid; the runs in flight are not run, never failed, and the same command resumes.

The grid (tests/benchmarks/interrupt.toml) trains on the real local Ray: a long run beside a short one
on two slots, a second short one waiting. It is interrupted once the first short run has finished, while
the long one is still training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import md_rows, run_cli, tiny, wait_for

from fspbench.grid import load_benchmark
from fspbench.trials import Interrupted, Interrupts, TrialStopped

BENCH = str((Path(__file__).parent / "benchmarks" / "interrupt.toml").resolve())


def _start(results: Path) -> subprocess.Popen:
    """``fspbench run`` in a session of its own, so that a signal can go to its whole process group."""
    return subprocess.Popen([sys.executable, "-m", "fspbench.cli", "run", BENCH, "--results", str(results), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _statuses(results: Path) -> dict[str, str]:
    """Run id -> status of every run record (a record is written atomically: whole or absent)."""
    return {p.stem: json.loads(p.read_text())["status"] for p in (results / "runs").glob("*.json")}


def _long_run(results: Path) -> str:
    """The run id of the grid's long run (group "long")."""
    (run,) = [r for r in load_benchmark(BENCH, results).runs if r.group == "long"]
    return run.run_id


def _interrupt_after_a_finished_run(results: Path) -> subprocess.CompletedProcess:
    """Start the grid, send SIGINT to its process group once a run has ended ok, and wait for it to exit."""
    proc = _start(results)
    try:
        wait_for(lambda: "ok" in _statuses(results).values() or proc.poll() is not None, 300, "a finished run")
        assert proc.poll() is None, f"the grid ended before it could be interrupted:\n{proc.communicate()[0]}"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed assertion above: leave no grid behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@pytest.mark.slow
def test_ctrl_c_stops_the_grid_with_130_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    """SIGINT mid-grid: exit 130 with the resume line; the run in flight has no record, its state kept, and
    nothing says failed (records, grid.json, the report); the same command then finishes every run ok."""
    results = tmp_path / "R"
    first = _interrupt_after_a_finished_run(results)
    assert first.returncode == 130, first.stdout
    assert f"run the same command again to resume (fspbench run {BENCH} --results {results} --quiet)" in first.stdout
    assert "Traceback" not in first.stdout and "SystemExit" not in first.stdout, first.stdout

    statuses = _statuses(results)
    assert set(statuses.values()) == {"ok"}, statuses  # no run failed; the one in flight left no record
    grid = json.loads((results / "grid.json").read_text())
    runs = grid["runs"]
    assert runs["failed"] == 0 and runs["not_run"] >= 1 and runs["ok"] == len(statuses), runs
    assert runs["ok"] + runs["not_run"] == runs["total"] == 3, runs
    long_run = _long_run(results)  # in flight when the grid was stopped: resumable, not run
    state = results / "checkpoints" / f"{long_run}.state.pt"
    assert long_run not in statuses and state.is_file()
    kept = [(r["step"], r["wall_time_s"]) for r in torch.load(state, weights_only=True)["progress"]["rows"]]
    assert kept and kept[-1][0] < 150  # stopped part-way, after at least one evaluation
    assert f"{runs['ok']} ok, 0 diverged, 0 failed, {runs['not_run']} not run of 3 runs" in first.stdout

    report = run_cli("report", str(results), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"0 diverged, 0 failed of {runs['ok']} runs" in md
    assert ["runs: failed", "0"] in md_rows(md)

    rerun = run_cli("run", BENCH, "--results", str(results), "--quiet")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Traceback" not in rerun.stdout + rerun.stderr, rerun.stdout + rerun.stderr
    assert f"{runs['ok']} already finished" in rerun.stdout  # those are not trained again
    final = _statuses(results)
    assert len(final) == 3 and set(final.values()) == {"ok"}, final
    curve = [(p["step"], p["wall_time_s"]) for p in json.loads((results / "runs" / f"{long_run}.json").read_text())[
        "curve"]]
    assert [step for step, _ in curve] == list(range(10, 151, 10)), curve  # every evaluation point once
    assert curve[:len(kept)] == kept  # resumed from the state it kept: its points (and timings) as they were
    assert json.loads((results / "grid.json").read_text())["runs"] == {
        "total": 3, "ok": 3, "diverged": 0, "failed": 0, "not_run": 0, "skipped": 0}


@pytest.mark.slow
def test_a_run_stopped_by_tune_leaves_no_record_and_keeps_its_state(tmp_path: Path) -> None:
    """What a trial does when Tune stops it (tune._trial turns the report's SystemExit into TrialStopped):
    train_run writes no record, failed or other, and the resumable state of its last evaluation stays."""
    from fspbench.train import train_run

    def stop_at_step_20(row: dict, state_path: Path | None) -> None:
        if row["step"] == 20:
            raise TrialStopped

    with pytest.raises(TrialStopped):
        train_run(tiny(steps=40, eval_every=10), tmp_path, on_eval=stop_at_step_20)
    assert list(tmp_path.glob("*.json")) == []
    (state,) = (tmp_path / "checkpoints").glob("*.state.pt")
    assert torch.load(state, weights_only=True)["progress"]["step"] == 20


def test_a_first_signal_while_tune_runs_asks_the_grid_to_stop_and_a_second_stops_it_at_once() -> None:
    """The handlers themselves, with real signals to this process: while Tune runs the first SIGTERM only
    asks the grid to stop; a second raises Interrupted, whose exit code is 143; outside it one raises at once."""
    before = signal.getsignal(signal.SIGTERM)
    interrupts = Interrupts()
    with interrupts.installed():
        with interrupts.graceful():
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune's own handler would end silently
            os.kill(os.getpid(), signal.SIGTERM)
            assert interrupts.signum == signal.SIGTERM  # asked to stop; nothing raised
            with pytest.raises(Interrupted) as second:
                os.kill(os.getpid(), signal.SIGINT)
        assert second.value.exit_code == 143  # the first signal names the exit
        with pytest.raises(Interrupted) as raised:
            interrupts.raise_if_received(grid="written")
        assert raised.value.grid == "written" and isinstance(raised.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers before are back
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ

    outside = Interrupts()
    with outside.installed(), pytest.raises(Interrupted) as at_once:
        os.kill(os.getpid(), signal.SIGINT)
    assert at_once.value.exit_code == 130
