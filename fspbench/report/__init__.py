"""The report: results/<name>/ in, reports/<name>/ out (claims.json, tables, figures, report.md, report.html).

Modules, one job each:
  summaries.py  pure helpers: learning-curve bands, per-group summaries, steps to target, budget labels
  figures.py    matplotlib Figures from already computed data (never computes statistics)
  tables.py     the report's tables as DataFrames, and their CSV and LaTeX files
  render.py     report.md and a self-contained report.html from the same blocks (Jinja2 templates/)
  integrity.py  runs.parquet against the run records it is derived from, and the digest of those records
  build.py      build_report: the only module that reads and writes files
"""

from __future__ import annotations

from fspbench.report.build import build_report

__all__ = ["build_report"]
