"""Layering the code relies on: statistics and reports without torch or Ray, short functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_report_analysis_and_results_import_neither_torch_nor_ray() -> None:
    modules = ["fspbench.report", "fspbench.analysis", "fspbench.results", "fspbench.grid", "fspbench.config",
               "fspbench.registry", "fspbench.spec", "fspbench.estimate",
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


def _module_imports(path: Path, package: Path) -> set[str]:
    """fspbench modules that ``path`` imports at module level (not under TYPE_CHECKING, not inside functions)."""
    import ast

    tree = ast.parse(path.read_text())
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fspbench"):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names
                           if (package.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                           or (package.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir())
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("fspbench"))

    visit(tree.body)
    return out


def test_no_import_cycle_in_the_package() -> None:
    package = ROOT / "fspbench"
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        # a module importing its own package (``from fspbench.report import figures`` in report/build.py) only
        # reaches its siblings: not a cycle
        graph[name] = {m for m in _module_imports(path, package) if not name.startswith(m + ".")}
    assert "fspbench.config" in graph["fspbench.objectives"]  # the graph sees imports at all
    done: set[str] = set()

    def walk(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        if node in done or node not in graph:
            return
        for nxt in sorted(graph[node]):
            walk(nxt, [*stack, node])
        done.add(node)

    for mod in sorted(graph):
        walk(mod, [])


def test_claim_and_method_names_live_in_their_own_modules() -> None:
    from fspbench import claims, methods

    code = {p: p.read_text() for p in (ROOT / "fspbench").rglob("*.py")}
    for key in claims.keys():
        outside = [str(p.relative_to(ROOT)) for p, text in code.items() if key in text and p.name != f"{key}.py"]
        assert outside == [], (key, outside)
    for name in set(methods.names()) - {claims.TREATMENT, claims.CONTROL}:  # the two every claim compares
        quoted = [str(p.relative_to(ROOT)) for p, text in code.items()
                  if f'"{name}"' in text and p.name != f"{name}.py"]
        assert quoted == [], (name, quoted)
