"""Execution of a benchmark grid on Ray Tune: order, resources, storage, resume, failures, progress.

All unfinished runs go into one Tune run; searcher.TeacherFirst starts a student as soon as
its own teacher has ended ok, so there is no barrier between teachers and students. Each run
is one Tune trial of a function trainable; it reports at every evaluation point with its
resumable state as the Tune checkpoint, so ``FailureConfig`` retries a crashed trial from
there. A run whose record in results/<name>/runs/ is finished (ok or diverged) is never
trained again, so a second ``fspbench run`` after an interruption resumes the grid. The folder's
layout and its records are fspbench.results'.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fspbench import tracking
from fspbench.cluster import ClusterSlots, Node, check_request, live_nodes, slots, this_machine
from fspbench.errors import BadInput, StorageError, storage
from fspbench.estimate import (
    Estimate,
    cache_path,
    cached,
    estimate_from,
    estimate_grid,
    fmt_duration,
    teacher_configs,
)
from fspbench.grid import Benchmark, GridRun, at_look, look_of, portable_path, run_labels
from fspbench.hardware import Hardware, detect
from fspbench.lock import results_lock
from fspbench.measured import learn
from fspbench.registration import check_unchanged, register
from fspbench.results import (
    FINISHED,
    GridLedger,
    HistoryEntry,
    Paths,
    Retry,
    RunCounts,
    RunRecord,
    Skipped,
    is_finished,
    mark_blocked,
    now,
    read_ledger,
    read_registration,
    read_run_record,
    runs_table,
    teacher_usable,
    write_parquet,
)
from fspbench.store import AWS_ENV, ObjectPath, check_bucket, location, tune_storage
from fspbench.tracking import Tracker
from fspbench.trials import Interrupts

# ---------------------------------------------------------------- the trial (runs in a Ray worker)


def _trial(config: dict[str, Any], runs: dict[str, dict[str, Any]], root: str) -> None:
    """One run as a Tune function trainable: resume from Tune's checkpoint, report at evaluations."""
    import ray
    import torch
    from ray import tune

    from fspbench.config import config_from_dict
    from fspbench.train import train_run
    from fspbench.trials import STORAGE_FAULT, TrialStopped

    # one line per stored checkpoint would drown the progress lines
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    remote = Paths(location(root))
    run_id = config["run_id"]
    cfg = config_from_dict(runs[run_id], source=run_id)
    paths = remote
    if isinstance(remote.root, ObjectPath):  # results in a bucket: train into this node's staging folder
        from fspbench.staging import fetch_teacher, stage_paths, upload_run

        paths = stage_paths(remote.root)
        Path(paths.record(run_id)).unlink(missing_ok=True)  # an earlier attempt's record is not this one's
        cfg = fetch_teacher(cfg, remote, paths)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))  # as many threads as CPUs granted, no oversubscription
    node_id = ray.get_runtime_context().get_node_id()

    def on_eval(row: dict[str, Any], state_path: Path | None) -> None:
        # the node goes with every report, so the driver can say where a lost attempt ran (trials.TrialLog)
        metrics = {**{k: v for k, v in row.items() if isinstance(v, (int, float))}, "node_id": node_id,
                   "stage": row["stage"]}  # the stage tells the driver's curves which axis a point is on
        try:
            if state_path is None or not state_path.exists():
                tune.report(metrics)
                return
            with tempfile.TemporaryDirectory() as d:
                shutil.copy2(state_path, Path(d) / state_path.name)
                with storage(paths.ray):  # Tune persists the checkpoint under the results folder
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        except SystemExit:  # Tune stops this trial (the grid was interrupted): not the run's failure
            raise TrialStopped from None

    record: RunRecord | None = None
    try:
        _drop_unfinished_record(remote, run_id)
        _restore(tune.get_checkpoint(), paths)
        record = RunRecord.from_json(train_run(cfg, paths.runs, ckpt_dir=paths.checkpoints, on_eval=on_eval), run_id)
    except TrialStopped:  # train_run wrote no record; its state file stays for the rerun
        pass
    except StorageError as err:
        # a full disk or a refused write stays so on a retry: the trial ends without Tune's retries (its record
        # says failed with the cause where it could be written) and tells the driver, which stops the grid
        tune.report({STORAGE_FAULT: [err.path, err.cause, err.action, err.errno]})
        return
    finally:  # a finished run's weights and record, or a failed run's record, go to the bucket
        if paths is not remote:
            upload_run(run_id, paths, remote)
    if record is None:  # stopped by Tune: no record, the resumable state kept (not run; a rerun resumes)
        return
    if record.run_id != run_id:
        raise RuntimeError(f"run id changed from {run_id} to {record.run_id}: the teacher differs from the grid's")


def _drop_unfinished_record(paths: Paths, run_id: str) -> None:
    """The record of an earlier attempt that did not finish (failed, or a student blocked then) is this
    attempt's no longer: removed as the run trains again, so that a run interrupted now is not run, not
    failed. This attempt writes its own when it ends; a finished record (a teacher whose weights are
    trained again) stays."""
    path = paths.record(run_id)
    with storage(str(path)):  # a local path or an s3:// URI
        if not path.exists():
            return
        try:
            status = RunRecord.load(path).status
        except BadInput:  # unreadable: the driver has said so; this attempt's record replaces it
            return
        if status not in FINISHED:
            path.unlink(missing_ok=True)


def _restore(checkpoint: Any, paths: Paths) -> None:
    """A retry: put the state of Tune's last checkpoint (if any) where train_run looks for it."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as d:
        for f in Path(d).glob("*.state.pt"):
            with storage(paths.checkpoints / f.name):
                paths.checkpoints.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, paths.checkpoints / f.name)


# ---------------------------------------------------------------- connecting to Ray


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast (BadInput) when nothing listens at a host:port Ray address."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--address: expected HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise BadInput(
            f"--address {address}: no Ray cluster answers there ({err.strerror or err}); start one with "
            "`ray start --head` on that host or drop --address to run locally"
        ) from None


# the S3 endpoint and credentials too: trials on other nodes read and write results in a bucket
FORWARDED_ENV = ("FSPBENCH_FAULT", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", *AWS_ENV)


def connect(address: str | None) -> None:
    """Join the cluster at ``address``, or start a local Ray with every core of this machine."""
    import ray

    if ray.is_initialized():
        return
    # settings of this process that must reach the trials, which run in Ray's worker processes: a test's
    # fault switch, the S3 endpoint and credentials, and caps on the kernels' instruction set (torch's and
    # oneDNN's), so that a grid run with them trains, and is checked for native bf16, as this process would
    passed = {k: v for k in FORWARDED_ENV if (v := os.environ.get(k))}
    runtime_env = {"env_vars": passed} if passed else None
    with _own_sigterm():
        _init(address, runtime_env)


@contextmanager
def _own_sigterm() -> Iterator[None]:
    """ray.init sets a SIGTERM handler that exits with status 15 at once; a handler of this process's own
    (trials.Interrupts: stop the grid, exit 143) is put back after it. Without one, Ray's stays."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(before) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)


def _init(address: str | None, runtime_env: dict[str, Any] | None) -> None:
    import ray

    if address:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=True, runtime_env=runtime_env)
        except (ConnectionError, ray.exceptions.AuthenticationError) as err:
            first = str(err).splitlines()[0]
            raise BadInput(f"--address {address}: {first} (token clusters need RAY_AUTH_MODE=token and "
                           "RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
    else:
        # "local": a Ray of this command's own, even where a `ray start` cluster runs on this machine (a bare
        # ray.init() would join the latest one, and fail on its token or share its workers)
        ray.init(address="local", include_dashboard=False, logging_level="ERROR", runtime_env=runtime_env)


# ---------------------------------------------------------------- the Tune run


@dataclass
class Outcome:
    """What one Tune run of a grid did besides the records its trials wrote."""

    blocked: set[str]  # students never started: their teacher did not end ok
    retries: list[Retry]  # retried attempts (trials.TrialLog)
    peak_slots: int  # the most trials the live nodes could hold at once while it ran
    peak_running: int  # the most trials that ran at once
    storage: StorageError | None = None  # the storage fault that stopped it (trials.storage_stop)


def _tune_runs(runs: list[GridRun], bench: Benchmark, paths: Paths, est: Estimate, verbose: int,
               curves: Tracker, interrupts: Interrupts) -> Outcome:
    """Train ``runs`` in one Tune run; each student starts once its own teacher has ended ok.

    At most as many trials run at once as the nodes alive at that moment hold (searcher.FollowCluster,
    capped by [resources] max_concurrent): a node that joins gets trials, a lost node's trial is
    retried from its last checkpoint on the nodes left. Tune asks the order for a run only when a
    slot frees up, so the choice is made as late as possible. SIGINT or SIGTERM (``interrupts``) stops
    it as a storage fault does: the runs in flight stop without a record, the others are not started.
    """
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from fspbench.searcher import FollowCluster, TeacherFirst  # imports Ray Tune: only when a grid runs
    from fspbench.tracking import disable_tune_loggers, tune_callback
    from fspbench.trials import progress_callback, ray_storage_faults, signal_stop, storage_stop, trial_log

    def cost(run: GridRun) -> float:  # the calibrated seconds: the order the estimate simulated
        return est.run_s[run.run_id]

    log, stop = trial_log(), storage_stop()

    def blocked(run: GridRun, status: str) -> None:
        if stop.fault is not None or interrupts.signum is not None:
            return  # the grid ends on a storage fault or a signal: the student is not run (a rerun resumes)
        try:
            mark_blocked(paths, run, status)
        except StorageError as err:  # inside Tune's loop: end the grid as a trial's storage fault does
            stop.record(err)
            return
        print(f"[fspbench] {run.run_id}: not started, its teacher ended with status {status}", flush=True)

    order = TeacherFirst(runs, cost, lambda run_id: _status(paths, run_id), blocked)
    cluster = ClusterSlots(_request(bench), bench.max_concurrent)
    trainable = tune.with_parameters(
        _trial, runs={r.run_id: r.config.to_dict() for r in runs}, root=str(paths.root.resolve()))
    trainable = tune.with_resources(trainable, _request(bench))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    disable_tune_loggers()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=FollowCluster(order, cluster),
            num_samples=len(runs),
            trial_name_creator=lambda t: t.config["run_id"],
            trial_dirname_creator=lambda t: t.config["run_id"],
            reuse_actors=True,  # keeps the imported torch and the cached data set between trials
        ),
        run_config=tune.RunConfig(
            name=f"grid-{stamp}",
            **tune_storage(paths.ray),  # a folder, or the results' bucket through pyarrow's S3FileSystem
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),  # retried from the last checkpoint
            # a storage fault (a trial reports STORAGE_FAULT) ends the grid: the next runs would fail too; so
            # does SIGINT or SIGTERM
            stop=CombinedStopper(stop, signal_stop(interrupts)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress_callback(runs, order, est, cluster), log, tune_callback(curves)],
            verbose=verbose,
        ),
    )
    print(f"[fspbench] {len(runs)} runs to train; students start as soon as their teacher has finished",
          flush=True)
    with ray_storage_faults(stop, paths.ray), interrupts.graceful():
        tuner.fit()  # trial errors are recorded by the trials; the grid goes on, unless the storage fails
    return Outcome(set(order.blocked), log.retries, cluster.peak, log.peak_running, stop.fault)


# a trial is retried this many times (from its last checkpoint) before it counts as failed
MAX_FAILURES = 2


def _request(bench: Benchmark) -> dict[str, float]:
    """One trial's resources, as Tune and fspbench.cluster spell them."""
    return {"cpu": bench.resources["cpu"], "gpu": bench.resources["gpu"]}


# ---------------------------------------------------------------- the grid


def run_grid(bench: Benchmark, results: str | os.PathLike[str], address: str | None = None,
             verbose: int = 1, dry_run: bool = False, autoscaling: bool = False) -> GridLedger | None:
    """Train every unfinished run of ``bench`` and write runs.parquet and grid.json; returns grid.json.

    ``dry_run``: print the time estimate and the runs it would train, write nothing, return None.
    ``autoscaling``: the cluster adds nodes on demand, so a trial no node holds yet waits for one
    instead of being refused (fspbench.cluster.check_request).
    SIGINT (Ctrl-C) or SIGTERM stops the grid (trials.Interrupts): the runs in flight stop without a
    record, keeping their resumable state; once runs.parquet and grid.json are written (those runs not
    run, none failed) it raises trials.Interrupted, with grid.json, and the same command resumes.
    """
    paths = Paths(location(results))
    if isinstance(paths.root, ObjectPath):  # endpoint, bucket and credentials, before anything trains
        check_bucket(paths.root)
    check_unchanged(bench, paths)  # a design other than the one registered: refused before anything is written
    if dry_run:
        _dry_run(bench, paths, address, autoscaling)
        return None
    if not isinstance(paths.root, ObjectPath):
        check_writable(paths.root)
    tracking.check(bench)  # a bad MLflow URI exits 2 before anything is written
    interrupts = Interrupts()
    with interrupts.installed(), results_lock(paths.root) as lock:
        lock.acquire_if_exists()  # a second runner on this folder is refused before any slow work

        def train(b: Benchmark) -> GridLedger:
            return _run_locked(b, paths, lock, address, verbose, autoscaling, interrupts)

        if bench.design is None:
            grid = train(bench)
        else:
            from fspbench.looks import run_looks  # the analysis: only for grids with claims

            if paths.ledger.exists():  # results from before registrations (or a registration): registered now
                lock.acquire()
                register(bench, paths)
            _print_looks(bench, paths, address, autoscaling)
            grid = run_looks(bench, train, paths, lambda b: _look_estimate(b, paths, address, autoscaling),
                             stopped=lambda: interrupts.signum is not None)
    interrupts.raise_if_received(grid)
    return grid


def check_writable(root: Path) -> None:
    """BadInput unless ``root`` exists as a writable folder or could be made inside one."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise BadInput(f"--results {root}: cannot write there ({existing} is not a writable folder); "
                       "pass a folder you can write to")


@dataclass
class Plan:
    """What one ``fspbench run`` will do: the runs left to train on the hardware the trials get."""

    pending: list[GridRun]  # to train now (finished runs and skipped ones left out)
    skipped: list[GridRun]  # bf16 runs this hardware cannot run natively (hardware.check_precision)
    hardware: Hardware
    nodes: list[Node]  # the live nodes when the grid started
    estimate: Estimate | None  # None when nothing is left to train

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    @property
    def skip_reason(self) -> str:
        return f"no native bf16 on this machine ({self.hardware.bf16_source})" if self.skipped else ""


def _status(paths: Paths, run_id: str) -> str:
    rec = read_run_record(paths.record(run_id))
    return rec.status if rec else "missing"


def _pending(bench: Benchmark, paths: Paths) -> list[GridRun]:
    """The runs to train now: unfinished ones, and teachers whose weights are gone.

    A student of a teacher that diverged is not pending: the teacher is finished (never trained
    again) and left no weights, so the student stays failed with that reason.
    """
    pending = [r for r in bench.runs if not is_finished(paths, r)]
    left = {r.run_id for r in pending}
    diverged = {t.run_id for t in bench.teachers if t.run_id not in left and _status(paths, t.run_id) == "diverged"}
    pending = [r for r in pending if r.teacher_run_id not in diverged]
    left = {r.run_id for r in pending}  # by id: a run's config compared field by field would cost n x n
    # students still to train need their teacher's weights: a teacher whose file is gone or altered
    # is trained again (the CPU path is deterministic, so it comes back the same)
    needed = {r.teacher_run_id for r in pending if r.teacher_run_id}
    redo = {t.run_id for t in bench.teachers if t.run_id in needed and t.run_id not in left
            and not teacher_usable(paths, t.run_id)}
    return [r for r in bench.runs if r.run_id in redo or r.run_id in left] if redo else pending


def _plan(bench: Benchmark, pending: list[GridRun], address: str | None, connected: bool,
          autoscaling: bool = False, notices: bool = True, first: bool | None = None) -> Plan:
    """Pending runs, the trials' hardware, bf16 groups it cannot run, and the calibrated estimate.

    ``connected``: Ray is up (a real run); the live nodes then give the slots, and on a cluster
    (``address``) the hardware and calibration are measured in a task with a trial's resources.
    Without Ray (a run or dry run on this machine) the slots are this machine's cores (and GPUs).
    A trial that no node can hold is BadInput, unless the cluster adds nodes (``autoscaling``).
    ``first``: the estimate counts the invocation's and Ray's start (None: unless Ray is up already).
    """
    nodes = live_nodes() if connected else this_machine()
    where = f"the cluster at {address}" if connected else "this machine (the local Ray)"
    notice = check_request(nodes, _request(bench), where, autoscaling)
    if notice and notices:  # an autoscaling cluster: said once; the calibration task and the trials wait for the node
        print(notice, flush=True)
    device = _trial_device(bench)
    threads = max(1, int(bench.resources["cpu"]))
    hw = _remote(bench, lambda: detect(device)) if connected and address else detect(device)
    skipped = [r for r in pending if r.config.precision == "bf16" and not r.config.force_bf16 and not hw.native_bf16]
    pending = [r for r in pending if r not in skipped]
    for group in dict.fromkeys(r.group for r in skipped if notices):
        n = sum(r.group == group for r in skipped)
        print(f"[fspbench] group {group!r} skipped ({n} runs): bf16 asked for, but {hw.describe()} has no native "
              f"bf16 ({hw.bf16_source}); add force_bf16 = true to the group to run it anyway", flush=True)
    est = None
    if pending:
        n_slots = slots(nodes, _request(bench), bench.max_concurrent) or 1
        est = (_remote(bench, lambda: estimate_grid(bench, pending, n_slots, threads, first)) if connected and address
               else estimate_grid(bench, pending, n_slots, threads, first))
    return Plan(pending, skipped, hw, nodes, est)


def _trial_device(bench: Benchmark) -> str:
    import torch

    wants_gpu = bench.resources["gpu"] > 0
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def _remote(bench: Benchmark, fn: Any) -> Any:
    """``fn()`` run in a Ray task with a trial's resources, so on a node of the kind the trials get."""
    import ray

    task = ray.remote(fn).options(num_cpus=bench.resources["cpu"], num_gpus=bench.resources["gpu"])
    return ray.get(task.remote())


def _print_estimate(bench: Benchmark, plan: Plan) -> None:
    est = plan.estimate
    if est is None:
        return
    cal = est.calibration
    how = (f"calibrated in {cal.measured_s:.1f} s ({cal.measured} step kinds measured, {cal.cached} cached)"
           if cal.measured else f"calibration of {cal.cached} step kinds read from {cache_path()}")
    print(f"[fspbench] estimate: {fmt_duration(est.wall_s)} for {len(plan.pending)} runs on {est.slots} slots of "
          f"{plan.hardware.describe()}, {est.threads} thread(s) per trial; {how}", flush=True)


def _dry_run(bench: Benchmark, paths: Paths, address: str | None, autoscaling: bool) -> None:
    if address:
        connect(address)
    plan = _plan(bench, _pending(bench, paths), address, connected=bool(address), autoscaling=autoscaling)
    print(f"[fspbench] {bench.name}: {len(bench.runs)} runs, {len(plan.pending)} to train, {len(plan.skipped)} "
          f"skipped; results would go to {paths.root} (dry run: nothing is trained or written)", flush=True)
    est = plan.estimate
    if est is not None:
        width = max(len(r.run_id) for r in plan.pending)
        for r in plan.pending:
            print(f"  {r.run_id:<{width}}  {r.group:<14} {est.run_s[r.run_id]:8.1f} s", flush=True)
    _print_estimate(bench, plan)
    if bench.design:
        _print_looks(bench, paths, address, autoscaling)


def _look_estimate(bench: Benchmark, paths: Paths, address: str | None, autoscaling: bool,
                   exclude: set[str] | None = None, first: bool | None = None) -> tuple[int, float | None]:
    """(runs left to train, estimated seconds) of a look's expansion, leaving out the runs in ``exclude``;
    ``first``: count the invocation's and Ray's start (None: unless Ray is up already)."""
    import ray

    pending = [r for r in _pending(bench, paths) if r.run_id not in (exclude or set())]
    if not pending:
        return 0, None
    plan = _plan(bench, pending, address, connected=ray.is_initialized(), autoscaling=autoscaling, notices=False,
                 first=first)
    return len(plan.pending), plan.estimate.wall_s if plan.estimate else None


def _print_looks(bench: Benchmark, paths: Paths, address: str | None, autoscaling: bool) -> list[dict[str, Any]]:
    """The time to the first look and the worst case (every claim open to its last look), look by look.

    The grid is expanded once, at its last look, and calibrated once for all its kinds; each run is counted
    at the look that adds it (grid.look_of), each look estimated as its own Tune run (the first with the
    invocation's start): the time this takes grows with the runs, not with runs x looks."""
    import ray

    design = bench.design
    assert design is not None and bench.spec is not None
    last = at_look(bench, {k: design.max_seeds for k in bench.spec.claims})
    pending = _pending(last, paths)
    plan = _plan(last, pending, address, connected=ray.is_initialized(), autoscaling=autoscaling, notices=False,
                 first=True) if pending else None
    by_look: dict[int, list[GridRun]] = {}
    for r in plan.pending if plan else []:
        by_look.setdefault(look_of(r, design.look_every), []).append(r)
    rows: list[dict[str, Any]] = []
    for look in range(1, design.looks + 1):
        runs, secs = len(by_look.get(look, [])), 0.0
        if runs and plan is not None and plan.estimate is not None:
            e, cal = plan.estimate, plan.estimate.calibration
            secs = estimate_from(by_look[look], teacher_configs(last), cal, e.slots, e.threads,
                                 include_ray_start=look == 1, spent_s=cal.measured_s if look == 1 else 0.0,
                                 on_cpu=cal.machine.startswith("cpu|")).wall_s
        rows.append({"look": look, "seeds_per_arm": look * design.look_every, "runs": runs,
                     "estimated_s": round(secs, 1)})
    total = sum(r["estimated_s"] for r in rows)
    per = "; ".join(f"look {r['look']}: {r['runs']} runs, {fmt_duration(r['estimated_s'])}" for r in rows)
    print(f"[fspbench] time to the first look: {fmt_duration(rows[0]['estimated_s'])}; worst case, every claim open "
          f"to its last look ({design.looks} looks, {design.max_seeds} seeds per arm): {fmt_duration(total)} "
          f"({per})", flush=True)
    return rows


def _run_locked(bench: Benchmark, paths: Paths, lock: Any, address: str | None,
                verbose: int, autoscaling: bool, interrupts: Interrupts) -> GridLedger:
    started, t0 = now(), time.monotonic()
    pending = _pending(bench, paths)
    plan = Plan([], [], detect(_trial_device(bench)), [], None)
    outcome = Outcome(set(), [], 0, 0)
    if pending:
        if address:
            connect(address)  # before anything is written: a bad address leaves no trace
        plan = _plan(bench, pending, address, connected=bool(address), autoscaling=autoscaling)
    print(f"[fspbench] {bench.name}: {len(bench.runs)} runs, {len(bench.runs) - len(pending)} already finished, "
          f"{len(plan.skipped)} skipped, {len(plan.pending)} to train; results in {paths.root}", flush=True)
    if plan.pending and plan.estimate is not None:
        _print_estimate(bench, plan)
        lock.acquire()
        if bench.design is not None:  # the design on record before any trial trains (once: kept from then on)
            register(bench, paths)
        connect(address)  # a local Ray starts only when something is to be trained
        paths.runs.mkdir(parents=True, exist_ok=True)
        curves = tracking.tracker(bench, paths)
        try:
            outcome = _tune_runs(plan.pending, bench, paths, plan.estimate, verbose, curves, interrupts)
        finally:
            curves.close()
    if interrupts.signum is not None:  # no trial of this grid may write a record after runs.parquet and grid.json
        _stop_ray()
    lock.acquire()
    paths.runs.mkdir(parents=True, exist_ok=True)
    try:
        grid = _write_outputs(bench, paths, started, time.monotonic() - t0, plan, outcome)
    except StorageError:
        if outcome.storage is None:
            raise
        _stop_ray()
        raise outcome.storage from None  # the same disk: the first fault is the one the user reads
    if outcome.storage is not None:  # recorded (the run's record, runs.parquet, grid.json): now the one line
        _stop_ray()
        raise outcome.storage
    # every record's curve, so runs of earlier invocations, and points a failing sink missed, are there too
    tracking.tracker(bench, paths).catch_up()
    if plan.estimate is not None:
        _learn_timings(bench, paths, plan, outcome, grid.wall_time_s)
    return grid


def _learn_timings(bench: Benchmark, paths: Paths, plan: Plan, outcome: Outcome, wall_s: float) -> None:
    """Fold what the runs just trained measured into this machine's calibration cache (fspbench.measured),
    so that the next estimate here starts from the machine's speed in a grid. Only records of the hardware
    and thread count the estimate was calibrated for count (a cluster's other kinds of node do not)."""
    assert plan.estimate is not None
    records = {r.run_id: rec for r in plan.pending if (rec := read_run_record(paths.record(r.run_id))) is not None}
    # the wall time measures the estimate's fixed costs only where the grid ran as estimated: every run
    # trained now, ok, in one attempt
    as_estimated = not outcome.retries and not outcome.blocked and all(
        (rec := records.get(r.run_id)) is not None and rec.status == "ok" for r in plan.pending)
    learn(plan.pending, teacher_configs(bench), records, plan.estimate, cached(plan.estimate.calibration.machine),
          wall_s if as_estimated else None)


def _stop_ray() -> None:
    """Disconnect from Ray now, so that what its stopped workers print on their way out comes before the
    grid's last line, not after it."""
    import ray

    ray.shutdown()


def _write_outputs(bench: Benchmark, paths: Paths, started: str, wall: float, plan: Plan,
                   outcome: Outcome) -> GridLedger:
    records, not_run = [], []
    skipped = {r.run_id for r in plan.skipped}
    for r in bench.runs:
        if r.run_id in skipped:  # not run on this hardware: counted in grid.json, not as a failure
            continue
        rec = read_run_record(paths.record(r.run_id))
        if rec is None and r.teacher_run_id and _status(paths, r.teacher_run_id) == "diverged":
            mark_blocked(paths, r, "diverged")
            rec = read_run_record(paths.record(r.run_id))
        if rec is None:  # never started (the grid was stopped first): not run, and not failed
            not_run.append(r.run_id)
        else:
            records.append(rec)
    write_parquet(runs_table(records, run_labels(bench)), paths.root / "runs.parquet")
    # trained now: a run of this invocation that has a record from it (an interrupted grid trains fewer)
    written_now = {rec.run_id for rec in records if rec.finished_at >= started}
    trained_ids = {r.run_id for r in plan.pending if r.run_id not in outcome.blocked} & written_now
    trial_time = sum((rec.train_time_s or 0.0) for rec in records if rec.run_id in trained_ids)
    eval_time = sum((rec.eval_time_s or 0.0) for rec in records if rec.run_id in trained_ids)
    retried_time = sum(r.lost_s for r in outcome.retries)
    cpus, gpus = plan.cpus, plan.gpus
    start_slots = slots(plan.nodes, _request(bench), bench.max_concurrent)
    peak = max(start_slots, outcome.peak_slots)  # the capacity a growing cluster reached
    share = trained_ids and peak and wall  # the shares of the slots' time below need all three
    status = Counter(rec.status for rec in records)
    runs = RunCounts(len(records) + len(not_run), status["ok"], status["diverged"], status["failed"],
                     not_run=len(not_run), skipped=len(skipped))
    skip = Skipped(tuple(sorted(skipped)), tuple(sorted({r.group for r in plan.skipped})), plan.skip_reason)
    finished = now()
    grid = GridLedger(
        name=bench.name, benchmark_file=portable_path(bench.path), benchmark_text=bench.text, started_at=started,
        finished_at=finished, wall_time_s=round(wall, 2), cpus=cpus, gpus=gpus, trial_resources=bench.resources,
        max_concurrent=bench.max_concurrent, nodes=len(plan.nodes), concurrent_slots=start_slots, peak_slots=peak,
        peak_running=outcome.peak_running, trained_runs=len(trained_ids), trial_time_s=round(trial_time, 2),
        # attempts that failed and were retried from a checkpoint (a lost node, a crash): where they
        # ran and the seconds the runs' records do not count (trials.TrialLog)
        retries=tuple(outcome.retries), retried_time_s=round(retried_time, 2),
        # summed training time of the trials / (wall time x the most slots that could run at once)
        harness_efficiency=round(trial_time / (wall * peak), 4) if share else None,
        # the trials' evaluations (curve points and final test set), which harness_efficiency counts as overhead
        eval_time_s=round(eval_time, 2), eval_share=round(eval_time / (wall * peak), 4) if share else None,
        runs=runs,
        # the trials' hardware (fspbench.hardware) and the estimate made before they started (estimate.py)
        hardware=plan.hardware.to_dict(), estimate=plan.estimate.summary() if plan.estimate else None,
        skipped=skip, history=())
    previous = read_ledger(paths.ledger)
    if not trained_ids and previous:  # nothing trained now: keep the figures of the run that trained
        grid = replace(previous, runs=runs, benchmark_text=bench.text, skipped=skip)
    # the fault that stopped this invocation, if any: the cause of its failed or not-run runs
    grid = replace(grid, storage_fault=str(outcome.storage) if outcome.storage else None,
                   registration=read_registration(paths.ledger))  # as registered: never rewritten
    grid = replace(grid, history=(*(previous.history if previous else ()), HistoryEntry(
        started, now(), round(wall, 2), len(trained_ids), round(trial_time, 2), cpus, gpus,
        retried_time_s=round(retried_time, 2), retried_attempts=len(outcome.retries))))
    grid.write(paths.ledger)
    return grid
