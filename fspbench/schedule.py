"""The order in which a grid's runs start: a student as soon as its own teacher has finished.

``TeacherFirst`` is a Ray Tune ``Searcher`` that hands out run ids instead of sampled
hyperparameters. A run is *ready* when it needs no teacher or its teacher's run ended ok;
among the ready runs the one with the longest remaining chain goes first (list scheduling
by critical path: a teacher's chain is its own cost plus its costliest student's), so the
grid neither waits at a barrier between teachers and students nor ends with one slot busy
and the others idle. A student whose teacher did not end ok is never started: it is
handed to ``on_blocked``, which records it as failed.

``FollowCluster`` caps the live trials at the slots of the nodes alive now (fspbench.cluster),
so Tune asks for a run only when a slot is free and a run id is bound to a trial as late as
possible: a student that became ready a moment ago still overtakes a lower-priority run. A
node that joins raises the cap while the grid runs; a node that is lost lowers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from fspbench.estimate import chain_priority
from fspbench.grid import GridRun

__all__ = ["FollowCluster", "TeacherFirst", "chain_priority"]


class TeacherFirst(Searcher):
    """Hands out the runs of a grid to Ray Tune, each student once its teacher has ended ok.

    ``runs``: the runs to train now. A student whose teacher is not among them had its
    teacher trained before; ``teacher_status(run_id)`` says how that teacher ended ("ok",
    "diverged", "failed" or "missing"), both for those and for teachers that end now.
    ``on_blocked(run, status)`` is called once for each student that will not be started.
    """

    def __init__(self, runs: list[GridRun], cost: Callable[[GridRun], float],
                 teacher_status: Callable[[str], str], on_blocked: Callable[[GridRun, str], None]) -> None:
        super().__init__()
        self._priority = chain_priority(runs, cost)
        self._teacher_status = teacher_status
        self._on_blocked = on_blocked
        pending = {r.run_id for r in runs}
        self._ready: list[GridRun] = []
        self._waiting: dict[str, list[GridRun]] = {}  # teacher run id -> its students
        self._trial_run: dict[str, str] = {}  # Tune trial id -> run id
        self.blocked: list[str] = []  # run ids of the students that will not be started
        for r in runs:
            if r.teacher_run_id in pending:
                self._waiting.setdefault(r.teacher_run_id, []).append(r)
            elif r.teacher_run_id:
                self._release([r], self._teacher_status(r.teacher_run_id))
            else:
                self._ready.append(r)

    def _release(self, students: list[GridRun], status: str) -> None:
        if status == "ok":
            self._ready += students
            return
        for s in students:
            self.blocked.append(s.run_id)
            self._on_blocked(s, status)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The ready run with the highest priority; None while only students of running
        teachers are left; FINISHED when every run has been handed out or blocked."""
        if self._ready:
            best = max(self._ready, key=lambda r: self._priority[r.run_id])
            self._ready.remove(best)
            self._trial_run[trial_id] = best.run_id
            return {"run_id": best.run_id}
        return None if self._waiting else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """A trial ended (after its retries): release or block the students of its run."""
        run_id = self._trial_run.pop(trial_id, None)
        students = self._waiting.pop(run_id, []) if run_id else []
        if students:
            self._release(students, self._teacher_status(run_id))

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a rerun resumes from the run records, never from Tune's own state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore (see ``save``)."""


class FollowCluster(ConcurrencyLimiter):
    """Ray Tune's ConcurrencyLimiter with a limit that follows the cluster while the grid runs.

    ``slots()`` is the number of trials the live nodes hold now (cluster.ClusterSlots). At least
    one trial is let through even when no node holds one yet, so that an autoscaling cluster
    sees a waiting trial and adds a node for it. Tune reads the limit once at the start to size
    its queue of pending trials; every ``suggest`` reads it again.
    """

    def __init__(self, searcher: Searcher, slots: Callable[[], int]) -> None:
        self._slots = slots
        super().__init__(searcher, max_concurrent=self.max_concurrent)

    @property  # type: ignore[override]  # an attribute in ConcurrencyLimiter, computed here
    def max_concurrent(self) -> int:
        return max(1, self._slots())

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        """Ignored: the limit is the cluster's (Tune sets it only from max_concurrent_trials, unused here)."""
