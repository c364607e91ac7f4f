"""Layering the code relies on: statistics and reports without torch or Ray, imports in one direction,
short functions."""

from __future__ import annotations

import ast
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


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside functions (not for type checking)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules  # from a package import its modules
            out |= subs if len(subs) == len(node.names) else subs | {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out & modules


def test_no_module_imports_one_that_imports_it_back() -> None:
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "fspbench").rglob("*.py")}
    graph = {m: _imports(p, set(files)) - {m, "fspbench"} for m, p in files.items()}
    cycles, done = [], set()

    def visit(m: str, path: list[str]) -> None:
        for d in sorted(graph[m]):
            if d in path:
                cycles.append(" -> ".join([*path[path.index(d):], d]))
            elif d not in done:
                visit(d, [*path, d])
        done.add(m)

    for m in sorted(graph):
        visit(m, [m])
    assert cycles == []
    assert graph["fspbench.estimate"] >= {"fspbench.schedule", "fspbench.step"}  # the check sees imports at all


def test_claim_and_method_names_live_in_their_own_modules() -> None:
    """A claim's key and a method's name (quoted, as code names it) appear only in its own module; the two
    methods every claim compares are named once more where the claims package says so (claims.TREATMENT and
    claims.CONTROL), and "fsp" also names RunConfig's table of FSP settings, read in config and the schema."""
    from fspbench import claims, methods

    code = {p: p.read_text() for p in (ROOT / "fspbench").rglob("*.py")}
    for key in claims.keys():
        outside = [str(p.relative_to(ROOT)) for p, text in code.items() if key in text and p.name != f"{key}.py"]
        assert outside == [], (key, outside)
    claims_init = ROOT / "fspbench" / "claims" / "__init__.py"
    table_readers = {ROOT / "fspbench" / "config.py", ROOT / "fspbench" / "schema.py"}
    for name in methods.names():
        allowed = {claims_init} if name in (claims.TREATMENT, claims.CONTROL) else set()
        if name == "fsp":
            allowed |= table_readers
        quoted = [str(p.relative_to(ROOT)) for p, text in code.items()
                  if f'"{name}"' in text and p.name != f"{name}.py" and p not in allowed]
        assert quoted == [], (name, quoted)
    assert '"fsp"' in code[claims_init] and '"scratch"' in code[claims_init]  # the check sees names at all


def test_no_class_in_the_package_is_longer_than_250_lines() -> None:
    sizes = {f"{p.relative_to(ROOT)}:{n.name}": n.end_lineno - n.lineno + 1 for p in (ROOT / "fspbench").rglob("*.py")
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef) and n.end_lineno}
    assert {k: v for k, v in sizes.items() if v > 250} == {}
    assert max(sizes.values()) > 50  # the check sees classes at all
