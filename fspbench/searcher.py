"""The Ray Tune searchers of a grid: its runs handed to Tune in the schedule's order (fspbench.schedule),
as many at once as the live nodes hold.

``TeacherFirst`` is a Ray Tune ``Searcher`` that hands out run ids instead of sampled
hyperparameters: each student once its own teacher has ended ok, the ready run with the longest
remaining chain first (``schedule.ReadyRuns``, the policy the time estimate simulates). A student whose
teacher did not end ok is never started: it is handed to ``on_blocked``, which records it as failed.

``FollowCluster`` caps the live trials at the slots of the nodes alive now (fspbench.cluster),
so Tune asks for a run only when a slot is free and a run id is bound to a trial as late as
possible: a student that became ready a moment ago still overtakes a lower-priority run. A
node that joins raises the cap while the grid runs; a node that is lost lowers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from fspbench.grid import GridRun
from fspbench.schedule import ReadyRuns, chain_priority

__all__ = ["FollowCluster", "TeacherFirst"]


class TeacherFirst(Searcher):
    """Hands out the runs of a grid to Ray Tune, each student once its teacher has ended ok.

    ``runs``: the runs to train now; ``cost(run)``: its estimated seconds, for the chain priorities. A
    student whose teacher is not among them had its teacher trained before; ``teacher_status(run_id)``
    says how that teacher ended ("ok", "diverged", "failed" or "missing"), both for those and for
    teachers that end now. ``on_blocked(run, status)`` is called once for each student that will not be
    started.
    """

    def __init__(self, runs: list[GridRun], cost: Callable[[GridRun], float],
                 teacher_status: Callable[[str], str], on_blocked: Callable[[GridRun, str], None]) -> None:
        super().__init__()
        self._runs = ReadyRuns(runs, chain_priority(runs, cost), teacher_status=teacher_status,
                               on_blocked=on_blocked)
        self._trial_run: dict[str, str] = {}  # Tune trial id -> run id

    @property
    def blocked(self) -> list[str]:
        """Run ids of the students that will not be started."""
        return self._runs.blocked

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The ready run that starts next (schedule.next_run); None while only students of running
        teachers are left; FINISHED when every run has been handed out or blocked."""
        run = self._runs.pop()
        if run is not None:
            self._trial_run[trial_id] = run.run_id
            return {"run_id": run.run_id}
        return None if self._runs.waiting else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """A trial ended (after its retries): release or block the students of its run."""
        run_id = self._trial_run.pop(trial_id, None)
        if run_id:
            self._runs.ended(run_id)

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
