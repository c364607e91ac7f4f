"""What the driver sees of a grid's trials while Tune runs them: a progress line per ended run,
every attempt that failed and was retried (where it ran, and the time it lost), and the storage fault
that stops the grid, and SIGINT (Ctrl-C) or SIGTERM, which stop it too.

The callbacks and the stoppers are built by functions, so that Ray is imported only when a grid runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from fspbench.cluster import ClusterSlots
from fspbench.errors import STORAGE_ERRNOS, StorageError, storage_error
from fspbench.estimate import Estimate, fmt_duration, simulate
from fspbench.grid import GridRun
from fspbench.results import Retry


def progress_callback(runs: list[GridRun], order: Any, est: Estimate, cluster: ClusterSlots) -> Any:
    """A GridProgress for ``runs``: ``order`` is the grid's TeacherFirst (its blocked students count as
    failed), ``est`` the estimate made before the grid, ``cluster`` the slots of the live nodes."""
    from ray.tune import Callback

    total = len(runs)

    class GridProgress(Callback):
        """One line per ended run: done / running / pending / failed, elapsed, remaining.

        Failed counts the trials that errored and the students ``order`` never started because
        their teacher did not end ok. Remaining is the estimate's simulated schedule of the runs
        not yet ended on the slots the cluster has now, scaled by measured / estimated seconds of
        the runs that have (estimate.py).
        """

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.done = self.errored = 0
            self.began: dict[str, float] = {}  # run id -> when its trial started
            self.ended: set[str] = set()
            self.measured = self.estimated = 0.0

        def remaining(self, now: float) -> float:
            scale = self.measured / self.estimated if self.estimated else 1.0
            left = [r for r in runs if r.run_id not in self.ended and r.run_id not in order.blocked]
            secs = {r.run_id: max(0.0, est.run_s[r.run_id] * scale - (now - self.began.get(r.run_id, now)))
                    for r in left}
            return simulate(left, secs, cluster() or est.slots, first=[i for i in self.began if i not in self.ended])

        def _line(self, trials: list[Any], ended: Any) -> None:
            failed = self.errored + len(order.blocked)
            running = sum(t.status == "RUNNING" and t is not ended for t in trials)
            pending = total - self.done - failed - running
            now = time.monotonic()
            print(f"[fspbench] grid: {self.done} done, {running} running, {pending} pending, "
                  f"{failed} failed; elapsed {fmt_duration(now - self.start)}, "
                  f"remaining ~{fmt_duration(self.remaining(now))}",
                  flush=True)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.began.setdefault(trial.config["run_id"], time.monotonic())

        def _end(self, trial: Any) -> None:
            run_id = trial.config["run_id"]
            self.ended.add(run_id)
            if run_id in self.began and run_id in est.run_s:
                self.measured += time.monotonic() - self.began[run_id]
                self.estimated += est.run_s[run_id]

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.done += 1
            self._end(trial)
            self._line(trials, trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.errored += 1
            self._end(trial)
            self._line(trials, trial)

    return GridProgress()


def trial_log() -> Any:
    """A TrialLog: after the grid, its ``retries`` and ``peak_running`` go to grid.json (tune.py)."""
    from ray.tune import Callback

    class TrialLog(Callback):
        """What the trials did besides their records: the retried attempts and the most at once.

        A trial whose process dies (its node lost, a crash) is retried from its last checkpoint
        (FailureConfig). The retry keeps the training seconds that attempt reported into
        checkpoints (the curve rows' wall_time_s); the rest of the attempt (training after the
        checkpoint, start-up, evaluations) is lost: lost_s = attempt_s - kept_s. The run's record
        counts only what was kept, so grid.json's retries, and the report's cost table, add the rest.
        ``peak_running`` is the most trials that ran at once, which follows the cluster as nodes join.
        """

        def __init__(self) -> None:
            self.retries: list[Retry] = []
            self.peak_running = 0
            self._live: set[str] = set()
            self._began: dict[str, tuple[float, float]] = {}  # run id -> (attempt start, seconds resumed from)
            self._wall: dict[str, float] = {}  # run id -> training seconds of its last report
            self._node: dict[str, str] = {}  # run id -> node of its last report

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            run_id = trial.config["run_id"]
            self._began[run_id] = (time.monotonic(), self._wall.get(run_id, 0.0))
            self._live.add(run_id)
            self.peak_running = max(self.peak_running, len(self._live))

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            run_id = trial.config["run_id"]
            self._wall[run_id] = float(result.get("wall_time_s") or 0.0)
            self._node[run_id] = str(result.get("node_id") or "")

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            run_id = trial.config["run_id"]
            self._live.discard(run_id)
            began, resumed = self._began.get(run_id, (time.monotonic(), 0.0))
            attempt = time.monotonic() - began
            kept = max(0.0, self._wall.get(run_id, 0.0) - resumed)
            node = self._node.get(run_id) or "unknown"
            self.retries.append(Retry(run_id, node, round(attempt, 2), round(kept, 2),
                                      round(max(0.0, attempt - kept), 2), _last_error(trial)))
            print(f"[fspbench] {run_id}: its attempt on node {node[:12]} failed after {attempt:.0f} s; retried "
                  f"from its last checkpoint ({kept:.0f} s of training kept)", flush=True)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._live.discard(trial.config["run_id"])

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._live.discard(trial.config["run_id"])

    return TrialLog()


# the key of the result a trial reports instead of failing when a write hit a storage fault (tune._trial):
# [path, cause, action, errno] of its errors.StorageError
STORAGE_FAULT = "storage_fault"


def storage_stop() -> Any:
    """A Tune Stopper that ends the grid at the first trial reporting STORAGE_FAULT; its ``fault`` is that
    StorageError (None while there was none). A full disk or a refused write fails every run after it, so
    neither Tune's retries nor the runs left are tried: they are not run, and a later run resumes them."""
    from ray.tune import Stopper

    class StorageStop(Stopper):
        def __init__(self) -> None:
            self.fault: StorageError | None = None

        def record(self, fault: StorageError) -> None:
            """Stop the grid on ``fault`` (the first one is the one the user reads)."""
            if self.fault is None:
                self.fault = fault

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            if STORAGE_FAULT not in result:
                return False
            self.record(StorageError(*result[STORAGE_FAULT]))
            return True

        def stop_all(self) -> bool:
            return self.fault is not None

    return StorageStop()


class Interrupted(KeyboardInterrupt):
    """``fspbench run`` stopped by SIGINT (Ctrl-C) or SIGTERM. A KeyboardInterrupt, so that whatever
    catches one (``fspbench.train``: no record for a run cut short) treats both signals alike; the
    command exits with 128 + the signal's number, as a shell reports a process that signal ended.
    ``grid``: grid.json as written after the runs in flight stopped (None when it was not written)."""

    def __init__(self, signum: int, grid: Any = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.grid = signum, grid

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class TrialStopped(KeyboardInterrupt):
    """Raised in a trial when Tune stops it (the grid was interrupted or stopped): Tune's report ends the
    training thread with ``SystemExit(0)``, which ``train_run`` would record as the run's failure. As a
    KeyboardInterrupt it leaves no record and keeps the resumable state, so the run is not run, not failed."""


# Tune's own SIGINT handler ends its run without saying so to the caller; fspbench's (Interrupts) does both
_TUNE_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"


class Interrupts:
    """SIGINT and SIGTERM while ``fspbench run`` runs a grid (``installed()`` around it).

    While Tune trains (``graceful()``), the first signal stops the grid as a storage fault does (the
    stopper from ``signal_stop``): Tune stops the runs in flight, which leave no record and keep their
    resumable state, and the grid's outputs are written; a second signal gives up waiting and raises
    Interrupted at once. Outside Tune's run a signal raises Interrupted at once (nothing is training).
    ``signum``: the first signal received (None while there was none).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._graceful = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # no printing here: a handler runs between two bytecodes of the main thread, maybe inside a print
        first = self.signum is None
        if first:
            self.signum = signum
        if not (first and self._graceful):
            raise Interrupted(self.signum or signum)

    def raise_if_received(self, grid: Any = None) -> None:
        """Interrupted, with ``grid`` (grid.json as written), when a signal came during Tune's run."""
        if self.signum is not None:
            raise Interrupted(self.signum, grid)

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """The handlers for SIGINT and SIGTERM, the ones before them restored on the way out. Only the main
        thread may set handlers: elsewhere (a grid run from a thread) the signals keep theirs."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        before = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    @contextmanager
    def graceful(self) -> Iterator[None]:
        """While Tune runs: the first signal stops the grid through ``signal_stop`` rather than at once."""
        before = os.environ.get(_TUNE_SIGINT)
        os.environ[_TUNE_SIGINT] = "1"
        self._graceful = True
        try:
            yield
        finally:
            self._graceful = False
            if before is None:
                os.environ.pop(_TUNE_SIGINT, None)
            else:
                os.environ[_TUNE_SIGINT] = before


def signal_stop(interrupts: Interrupts) -> Any:
    """A Tune Stopper that ends the grid once ``interrupts`` has received a signal: Tune stops the runs in
    flight, and its loop ends. Tune asks it at every step of that loop (a tenth of a second at most)."""
    from ray.tune import Stopper

    class SignalStop(Stopper):
        def __init__(self) -> None:
            self.said = False

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            if interrupts.signum is None:
                return False
            if not self.said:  # said here, in Tune's loop, not in the signal handler
                self.said = True
                print(f"[fspbench] {signal.Signals(interrupts.signum).name}: stopping the runs in flight (they "
                      "keep their last evaluation point and resume from it); again to stop at once", flush=True)
            return True

    return SignalStop()


# Ray logs a failed upload of its experiment state to the results folder as an ERROR with a traceback, and goes on
_RAY_STATE_LOGGER = "ray.tune.execution.experiment_state"


@contextmanager
def ray_storage_faults(stop: Any, where: Path) -> Iterator[None]:
    """While Tune runs: a storage fault that Ray meets writing its own files under ``where`` stops the grid
    through ``stop`` (a storage_stop()), instead of a traceback on stderr while the runs go on to fail too."""

    class _Fault(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            err = record.exc_info[1] if record.exc_info else None
            if not isinstance(err, OSError):
                return True
            fault = storage_error(where, err)
            if fault.errno not in STORAGE_ERRNOS:
                return True
            stop.record(fault)
            return False  # said once, as the grid's last line

    logger, fault = logging.getLogger(_RAY_STATE_LOGGER), _Fault()
    logger.addFilter(fault)
    try:
        yield
    finally:
        logger.removeFilter(fault)


def _last_error(trial: Any) -> str:
    """The last line of the trial's last error in Tune's error file (e.g. "... its node has died ...")."""
    try:
        text = (Path(trial.local_path) / str(trial.run_metadata.error_filename)).read_text()
    except (OSError, AttributeError, TypeError):
        return ""
    last = text.rsplit("Failure # ", 1)[-1]
    lines = [line.strip() for line in last.splitlines()[1:] if line.strip()]
    return lines[-1][:300] if lines else ""
