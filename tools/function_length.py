"""Lint: no function or method in the package longer than a limit (default 80 lines).

Usage: python tools/function_length.py [--max N] PATH...   (exit 1 and one line per offender)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(paths: list[Path], limit: int) -> list[str]:
    """'file:line name (n lines)' for every function longer than ``limit`` lines, decorators excluded."""
    out = []
    for root in paths:
        for f in sorted(root.rglob("*.py") if root.is_dir() else [root]):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > limit:
                        out.append(f"{f}:{node.lineno} {node.name} ({n} lines > {limit})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max", type=int, default=80)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    found = long_functions(args.paths, args.max)
    print("\n".join(found) or f"no function longer than {args.max} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
