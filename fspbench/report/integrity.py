"""runs.parquet against the run records it is derived from, and the digest of the records a report is built from.

runs.parquet is derived data: fspbench.results.runs_table of the run records and the grid's labels. The report
reads its rows, so a row edited by hand, or a table left stale when a record changed, would change verdicts
without a word. build.py therefore checks every row against the table the records give (the records' own
checksums are checked as they are loaded: results.load_intact_record) and refuses on the first mismatch, unless
asked to rebuild the table from the records. Pure functions: build.py does the reading and writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

DIGEST_CHARS = 12  # the short form, as the report shows the registration's sha256


def data_digest(checksums: Mapping[str, str]) -> str:
    """sha256 over one ``<run_id> <record checksum>`` line per record in run-id order, short form: two reports
    built from the same records show the same digest, and any change to a record changes it."""
    text = "".join(f"{run_id} {checksums[run_id]}\n" for run_id in sorted(checksums))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def first_mismatch(table: pd.DataFrame, expected: pd.DataFrame) -> str | None:
    """The first difference between runs.parquet's rows (``table``) and the rows the records give (``expected``,
    results.runs_table: sorted by run and step), in words; None when they agree.

    Runs first (one with rows on one side only, or a different number of rows), then cells in run, step and
    column order. Only the columns both hold are compared: a table written before a column existed lacks it,
    and the report adds it from the grid's labels (comparisons.label_runs). Equal means equal, NaN with NaN.
    """
    return _run_mismatch(table, expected) or _cell_mismatch(table, expected)


def _run_mismatch(table: pd.DataFrame, expected: pd.DataFrame) -> str | None:
    """The first run (in run-id order) with rows on one side only, or with a different number of rows."""
    have, want = table.groupby("run_id").size(), expected.groupby("run_id").size()
    for run_id in sorted(set(have.index) | set(want.index), key=str):
        n, m = int(have.get(run_id, 0)), int(want.get(run_id, 0))
        if m == 0:
            return f"run {run_id}: {n} rows in runs.parquet, but no run record of the grid (runs/{run_id}.json)"
        if n != m:
            return f"run {run_id}: {n} rows in runs.parquet, {m} from its record runs/{run_id}.json"
    return None


def _cell_mismatch(table: pd.DataFrame, expected: pd.DataFrame) -> str | None:
    """The first cell that differs, with both rows in run and step order (the runs hold as many rows each)."""
    got = table.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    first: tuple[int, int, str] | None = None  # (row, column's position, column)
    for k, col in enumerate(c for c in expected.columns if c in got.columns):
        bad = np.flatnonzero(~_same(got[col].to_numpy(), expected[col].to_numpy()))
        if len(bad) and (first is None or (int(bad[0]), k) < first[:2]):
            first = (int(bad[0]), k, col)
    if first is None:
        return None
    row, _, col = first
    run_id, step = str(expected.at[row, "run_id"]), _shown(expected.at[row, "step"])
    return (f"run {run_id}, step {step}, column {col}: {_shown(got.at[row, col])} in runs.parquet, "
            f"{_shown(expected.at[row, col])} in its record runs/{run_id}.json")


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Elementwise equality where two missing values (None or NaN) are equal too."""
    return np.asarray((a == b) | (pd.isna(a) & pd.isna(b)), dtype=bool)


def _shown(value: Any) -> str:
    """A cell as the message shows it: numpy scalars as the Python value they hold (0.8611, not np.float64(...))."""
    return repr(value.item() if isinstance(value, np.generic) else value)
