"""Sessions: tests, lint, benchmark, smoke, report, submit. ``nox -s NAME -- ARGS`` passes ARGS on."""

from __future__ import annotations

from pathlib import Path

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
# the versions pyproject.toml allows, up to the one torch is installed for here
PYTHON = nox.project.python_versions(PYPROJECT, max_version="3.11")

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"  # torch is large: install it once per session venv


def _install(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".[{extras}]" if extras else ".")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite on real Fashion-MNIST and a real local Ray (posargs go to pytest)."""
    _install(session, "dev")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and this file; mypy (strict where pyproject.toml says); no function
    in the package longer than 80 lines."""
    _install(session, "dev")  # mypy reads torch's, numpy's and pandas' types
    session.run("ruff", "check", "fspbench", "tests", "tools", "noxfile.py", *session.posargs)
    session.run("mypy")
    session.run("python", "tools/function_length.py", "--max", "80", "fspbench")


def _results_dir(args: list[str]) -> str:
    """Where `fspbench run ARGS` writes: --results DIR, else results/<benchmark file stem>."""
    if "--results" in args:
        return args[args.index("--results") + 1]
    return f"results/{Path(args[0]).stem}"


def _run_and_report(session: nox.Session, args: list[str]) -> None:
    session.run("fspbench", "run", *args)
    results = _results_dir(args)
    session.run("fspbench", "report", results, "--out", f"reports/{Path(results).name}")


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """A grid on a local Ray, then its report (default preset; `nox -s benchmark -- smoke`, or `fspbench run` args).

    Without arguments it trains the default preset into results/default-local (git-ignored), so the
    committed reference results in results/default are neither reused nor overwritten.
    """
    _install(session)
    _run_and_report(session, session.posargs or ["default", "--results", "results/default-local"])


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """The smoke preset: the whole pipeline in a few minutes (results/smoke, reports/smoke)."""
    _install(session)
    _run_and_report(session, ["smoke", *session.posargs])


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Rebuild a report from stored results alone: `nox -s report -- results/default` (the default)."""
    _install(session)
    results = session.posargs[0] if session.posargs else "results/default"
    session.run("fspbench", "report", results, "--out", f"reports/{Path(results).name}", *session.posargs[1:])


@nox.session(python=PYTHON)
def submit(session: nox.Session) -> None:
    """Submit a grid as a Ray job: `nox -s submit -- default --address http://HEAD:8265`."""
    _install(session)
    if not session.posargs:
        session.error("usage: nox -s submit -- BENCHMARK --address http://HEAD:8265 [--results SHARED_DIR]")
    session.run("fspbench", "submit", *session.posargs)
