"""Which run of a grid starts next: a student as soon as its own teacher has ended ok, and among the
runs ready to start the one with the longest remaining chain.

One policy, two users: the grid's Tune searcher (``searcher.TeacherFirst``) hands runs to Ray Tune in
this order, and the time estimate (``estimate.simulate``) simulates the grid in the same order. No
Ray and no torch here, so the estimate can simulate a schedule without either.

A run is *ready* when it needs no teacher among the runs to train, or once its teacher has ended ok;
the students of a teacher that did not end ok are *blocked* and never start. Among the ready runs,
``next_run`` picks, in this order: a run that is running already (its trial started before this
schedule was drawn up: it keeps its slot), then the highest chain priority (list scheduling by
critical path: a teacher's chain is its own cost plus its costliest student's, so the grid neither
waits at a barrier between teachers and students nor ends with one slot busy and the others idle),
then the run that became ready first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no import at run time: the policy needs the runs' ids and teachers only
    from fspbench.grid import GridRun

__all__ = ["ReadyRuns", "chain_priority", "next_run"]


def chain_priority(runs: Iterable[GridRun], cost: Callable[[GridRun], float]) -> dict[str, float]:
    """run id -> its cost plus the costliest chain of runs that wait for it (its students).

    Students have no students of their own, so a teacher's priority is its cost plus the
    largest cost among its students in ``runs``.
    """
    runs = list(runs)
    own = {r.run_id: cost(r) for r in runs}
    priority = dict(own)
    for r in runs:
        if r.teacher_run_id in own:
            priority[r.teacher_run_id] = max(priority[r.teacher_run_id], own[r.teacher_run_id] + own[r.run_id])
    return priority


def next_run(ready: Sequence[GridRun], priority: Mapping[str, float],
             running: Collection[str] = ()) -> GridRun | None:
    """The run of ``ready`` (in the order they became ready) that starts next, or None when none is ready:
    one in ``running`` (already running) first, then the highest ``priority``, then the first ready."""
    return min(ready, key=lambda r: (r.run_id not in running, -priority[r.run_id]), default=None)


def _always_ok(run_id: str) -> str:
    return "ok"


class ReadyRuns:
    """The runs of a grid that are still to start: ``pop()`` takes out the one that starts next (``next_run``).

    ``priority``: run id -> its chain priority (``chain_priority``); ``running``: run ids whose trials
    started before (they go first). ``teacher_status(run_id)`` says how a teacher ended ("ok" or not):
    asked at the start for the teachers of students whose teacher is not among ``runs`` (trained
    before), and in ``ended`` for those that end now; the estimate's simulation takes every teacher to
    end ok (the default). ``on_blocked(student, status)`` is called once for each blocked student.
    """

    def __init__(self, runs: Iterable[GridRun], priority: Mapping[str, float], *,
                 teacher_status: Callable[[str], str] = _always_ok,
                 on_blocked: Callable[[GridRun, str], None] | None = None, running: Collection[str] = ()) -> None:
        runs = list(runs)
        self._priority, self._running = priority, set(running)
        self._status, self._on_blocked = teacher_status, on_blocked
        # the ready runs as a heap on next_run's order, with the order they became ready last: a pop costs
        # log(n), so a grid of thousands of runs is scheduled (and simulated) in n log n
        self._heap: list[tuple[bool, float, int, GridRun]] = []
        self._count = 0
        self.waiting: dict[str, list[GridRun]] = {}  # teacher run id -> its students, while it has not ended
        self.blocked: list[str] = []  # run ids of the students that will never start
        pending = {r.run_id for r in runs}
        for r in runs:
            if r.teacher_run_id in pending:
                self.waiting.setdefault(r.teacher_run_id, []).append(r)
            elif r.teacher_run_id:
                self._release([r], self._status(r.teacher_run_id))
            else:
                self._push(r)

    @property
    def ready(self) -> list[GridRun]:
        """The runs ready to start, in the order they became ready."""
        return [entry[3] for entry in sorted(self._heap, key=lambda e: e[2])]

    def _push(self, run: GridRun) -> None:
        heapq.heappush(self._heap, (run.run_id not in self._running, -self._priority[run.run_id], self._count, run))
        self._count += 1

    def _release(self, students: list[GridRun], status: str) -> None:
        if status == "ok":
            for s in students:
                self._push(s)
            return
        for s in students:
            self.blocked.append(s.run_id)
            if self._on_blocked is not None:
                self._on_blocked(s, status)

    def pop(self) -> GridRun | None:
        """The ready run that starts next (``next_run``'s choice), taken out; None when none is ready."""
        return heapq.heappop(self._heap)[3] if self._heap else None

    def ended(self, run_id: str) -> None:
        """Run ``run_id`` has ended: its students become ready, or blocked if it did not end ok."""
        students = self.waiting.pop(run_id, [])
        if students:
            self._release(students, self._status(run_id))
