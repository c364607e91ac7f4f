"""Pre-registration: the design of a [design] grid, recorded in grid.json before its first run trains.

grid.json's ``registration`` (results.Registration) holds the benchmark file's text, its sha256, the time
(UTC) and ``design``: every key of the file that decides what the grid tests, flattened to key paths
(``design.max_seeds``, ``claims.<claim>.budget``, ``students.<group>.budgets``). ``description``,
[resources] and [tracking] are left out: they change how the grid runs, not what it tests. tune.py writes it
once, under the results lock, just before the first trial of the grid trains; every later write of grid.json
keeps it as it is, so a rerun keeps the first registration and its time.

A run into a folder whose registered design keys differ from the file's is refused before anything is read
from Ray or written (BadInput: exit 2, one line naming each changed key, old -> new); a comment, the
description, [resources] or [tracking] may change. A folder of results made before registrations existed
(grid.json without one) is registered by the next run into it, flagged ``after_results``. The report says
whether the registration precedes the grid's first run (``report_line``); claims.json does not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fspbench.errors import BadInput
from fspbench.results import GridLedger, Paths, Registration, RunRecord, read_registration, write_registration

if TYPE_CHECKING:
    from fspbench.grid import Benchmark

NOT_DESIGN = ("description", "resources", "tracking")  # top-level keys and tables that change how it runs
MAX_SHOWN = 12  # changed keys named in the refusal line; the rest are counted


def design_keys(text: str) -> dict[str, Any]:
    """Key path -> value of every design key of a benchmark file's text, as JSON holds them (dates as text)."""
    raw = tomllib.loads(text)
    out: dict[str, Any] = {}
    _flatten({k: v for k, v in raw.items() if k not in NOT_DESIGN}, "", out)
    plain: dict[str, Any] = json.loads(json.dumps(out, default=str))
    return plain


def _flatten(table: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, dict) and value:
            _flatten(value, f"{prefix}{key}.", out)
        else:  # a value, a list, or an empty table (kept, so that removing it is a change)
            out[f"{prefix}{key}"] = value


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def design_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every design key that changed, was added (``(none) -> new``) or removed
    (``old -> (none)``): the new file's keys in its order, then the removed ones."""
    keys = [*new, *(k for k in old if k not in new)]
    shown = {k: (_shown(old[k]) if k in old else "(none)", _shown(new[k]) if k in new else "(none)") for k in keys}
    return [f"{k} {was} -> {now}" for k, (was, now) in shown.items() if was != now]


def registered_now() -> str:
    """The time of day as a registration records it: UTC, ISO 8601 to the second, with a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_registration(text: str, file: str, after_results: bool) -> Registration:
    """The registration of a benchmark file's ``text`` (read from ``file``), made now."""
    return Registration(file, hashlib.sha256(text.encode("utf-8")).hexdigest(), text, registered_now(),
                        design_keys(text), after_results)


def _display(path: Path) -> str:
    """The benchmark file as the user named it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_unchanged(bench: Benchmark, paths: Paths) -> Registration | None:
    """The folder's registration (None when it has none); BadInput, one line naming every changed design key
    with its old and new value, when ``bench``'s file no longer has the registered design."""
    reg = read_registration(paths.ledger)
    if reg is None:
        return None
    changes = design_changes(reg.design, design_keys(bench.text))
    if changes:
        more = len(changes) - MAX_SHOWN
        listed = ", ".join(changes[:MAX_SHOWN]) + (f" and {more} more" if more > 0 else "")
        raise BadInput(f"{_display(bench.path)}: the design registered in {paths.ledger} at {reg.registered_at} "
                       f"no longer matches: {listed}; run it into a new --results folder")
    return reg


def register(bench: Benchmark, paths: Paths) -> Registration:
    """The folder's registration: the one in grid.json (checked against ``bench``), else ``bench``'s design
    written into grid.json now, flagged ``after_results`` when the folder already holds results."""
    reg = check_unchanged(bench, paths)
    if reg is not None:
        return reg
    from fspbench.grid import portable_path

    after = paths.ledger.exists() or any(paths.record(r.run_id).exists() for r in bench.runs)
    reg = new_registration(bench.text, portable_path(bench.path), after)
    write_registration(paths.ledger, reg)
    print(f"[fspbench] design registered in {paths.ledger} at {reg.registered_at} (sha256 {reg.sha256[:12]})"
          + (", after results existed" if after else ", before any run trains"), flush=True)
    return reg


# ---------------------------------------------------------------- the report's line


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)  # Python 3.11 reads both "Z" and "+00:00"


def first_start(grid: GridLedger, records: list[RunRecord]) -> str | None:
    """When the grid's first run started: the earliest start (else write time) of its run records; without
    records, the start of the first invocation that trained; None when nothing trained."""
    stamps = [r.started_at or r.finished_at for r in records]
    if stamps:
        return min(stamps, key=_when)
    trained = [h.started_at for h in grid.history if h.trained_runs]
    return trained[0] if trained else None


def report_line(grid: GridLedger, records: list[RunRecord], designed: bool) -> str | None:
    """The report's one line on the registration: its hash, its time and whether it precedes the first run;
    None for a grid without a [design] table and without a registration."""
    reg = grid.registration
    if reg is None:
        return ("Pre-registration: none; these results were made before fspbench registered a grid's design in "
                "grid.json." if designed else None)
    first = first_start(grid, records)
    head = (f"Pre-registration: the design (benchmark file sha256 `{reg.sha256[:12]}`) was registered in grid.json "
            f"at {reg.registered_at}")
    if reg.after_results:
        return (f"{head}, after results existed (the first run started {first}): a rerun registered it into a "
                "folder made before registrations, so it does not pre-register these results.")
    if first is None:
        return f"{head}; no run has trained yet."
    if _when(reg.registered_at) <= _when(first):
        return f"{head}, before the first run started ({first})."
    return f"{head}, after the first run started ({first}): it does not pre-register these results."
