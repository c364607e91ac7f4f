"""Layering the code relies on: statistics and reports without torch or Ray, short functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_report_analysis_and_results_import_neither_torch_nor_ray() -> None:
    modules = ["fspbench.report", "fspbench.analysis", "fspbench.results", "fspbench.grid", "fspbench.config",
               "fspbench.registry", "fspbench.spec", "fspbench.estimate", "fspbench.schedule",
               "fspbench.cluster"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_no_function_in_the_package_is_longer_than_80_lines() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from function_length import long_functions

    assert long_functions([ROOT / "fspbench"], 80) == []
    assert long_functions([ROOT / "fspbench"], 20)  # the check sees functions at all
