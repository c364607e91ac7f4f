"""The ``fspbench`` command.

Exit codes: 0 success: every run finished, ok or diverged (a diverged run is a recorded result, in
``train`` as in ``run``); 1 a run failed or was not run, a storage fault (a full disk or quota, a read-only
or refused location: one line naming the path), or anything else went wrong; 2 bad input (one line);
130 interrupted (Ctrl-C). ``run`` stops on SIGINT (130) or SIGTERM (143, 128 + 15) alike: the runs in flight
stop without a record (not run, never failed) and keep their resumable state, runs.parquet and grid.json are
written, and one line says that the same command resumes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from fspbench.errors import STORAGE_ERRNOS, BadInput, StorageError, storage_error

if TYPE_CHECKING:
    from fspbench.results import GridLedger, RunCounts


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train(args: argparse.Namespace) -> int:
    from fspbench.config import config_from_dict, load_config_file, merge, parse_set

    raw = load_config_file(args.config) if args.config else {}
    raw = merge(raw, parse_set(args.set))
    cfg = config_from_dict(raw, source=args.config or "--set")  # bad settings exit 2 before torch is imported
    _writable_folder(_local_folder(args.out, "--out"), "--out")
    from fspbench.results import FINISHED, RunCounts, RunRecord
    from fspbench.train import train_run

    record = RunRecord.from_json(train_run(cfg, args.out, progress=not args.quiet), "the run record")
    final = record.final
    assert final is not None  # train_run returns only records of runs that reached their last evaluation
    print(f"{record.run_id}: status {record.status}, test accuracy {100 * final.test_acc:.2f}% "
          f"after {final.step} steps ({record.train_time_s or 0.0:.1f} s of training)")
    print(f"run record: {args.out.rstrip('/')}/{record.run_id}.json")
    done = record.status in FINISHED
    return _exit_code(RunCounts(1, int(record.status == "ok"), int(record.status == "diverged"), int(not done)))


def _run(args: argparse.Namespace) -> int:
    from fspbench.grid import load_benchmark, with_mlflow
    from fspbench.trials import Interrupted
    from fspbench.tune import run_grid

    if "://" not in _results_dir(args):  # a folder (a bucket is checked by the grid, with its credentials)
        _writable_folder(_results_dir(args), "--results")
    bench = with_mlflow(load_benchmark(args.benchmark, _results_dir(args)), args.mlflow)
    try:
        grid = run_grid(bench, _results_dir(args), address=args.address, verbose=0 if args.quiet else 1,
                        dry_run=args.dry_run, autoscaling=args.autoscaling)
    except Interrupted as stop:  # SIGINT or SIGTERM: what the grid did, and the one line that resumes it
        if stop.grid is not None:
            _print_grid(bench.name, stop.grid, args, interrupted=True)
        print(f"[fspbench] interrupted: run the same command again to resume ({_rerun(args)}); finished runs "
              "are not trained again, the runs stopped now go on from their last evaluation", flush=True)
        raise
    if grid is None:  # a dry run
        return 0
    _print_grid(bench.name, grid, args)
    return _exit_code(grid.runs)


def _print_grid(name: str, grid: GridLedger, args: argparse.Namespace, interrupted: bool = False) -> None:
    """The grid's outcome in one line (and how to resume a stopped one), then where its results are."""
    n = grid.runs
    # this invocation (grid.json keeps the figures of the last one that trained)
    trained, wall = grid.history[-1].trained_runs, grid.history[-1].wall_time_s
    if grid.looks is not None:  # a [design] grid: every look this invocation trained
        looks = [e for e in grid.looks if e.trained_now]
        trained, wall = sum(e.trained_now for e in looks), sum(e.wall_time_s for e in looks)
    eff = grid.harness_efficiency if trained else None
    skipped = f", {n.skipped} skipped on this hardware" if n.skipped else ""
    print(f"[fspbench] {name}: {n.ok} ok, {n.diverged} diverged, {n.failed} failed, "
          f"{n.not_run or 0} not run of {n.total} runs{skipped}; {trained} trained now in "
          f"{wall:.0f} s" + (f", harness efficiency {eff:.2f}" if eff is not None else ""))
    if n.not_run and not interrupted:  # an interrupted grid says how to resume in its own line
        print(f"[fspbench] {n.not_run} runs were not run (the grid was stopped): run the same command again "
              "to resume; finished runs are not trained again")
    print(f"[fspbench] results: {_results_dir(args)}/runs.parquet", flush=True)


def _rerun(args: argparse.Namespace) -> str:
    """The ``fspbench run`` command that resumes this one: the same benchmark, results and options."""
    import shlex

    words = ["fspbench", "run", args.benchmark, "--results", _results_dir(args)]
    words += ["--address", args.address] if args.address else []
    words += ["--autoscaling"] if args.autoscaling else []
    words += ["--mlflow", args.mlflow] if args.mlflow else []
    return shlex.join(words + (["--quiet"] if args.quiet else []))


def _exit_code(counts: RunCounts) -> int:
    """0 when every run of the grid is finished (ok, or diverged: a recorded result), 1 otherwise."""
    return 0 if counts.failed == 0 and not counts.not_run else 1


def _local_folder(value: str, what: str) -> str:
    """``value`` as a local folder (the report's --out); a URI is refused rather than taken for a folder named
    after its scheme."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme:
        raise BadInput(f"{what} {value}: {scheme.group(1)}:// is not supported here; pass a folder")
    return value


def _writable_folder(value: str, what: str) -> None:
    """BadInput unless ``value`` is a folder this process can write in, or one it can make (its nearest existing
    ancestor is such a folder): an existing file, a path under a file or an unwritable parent is refused when the
    command starts, not when its first file is written after training."""
    from pathlib import Path

    existing = Path(value)
    while not os.path.lexists(existing) and existing != existing.parent:  # a path under a file exists nowhere
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    if existing.is_dir():  # a folder of a read-only or refused location: a storage fault (exit 1), said now
        import errno

        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise storage_error(value, OSError(code, os.strerror(code), str(existing)))
    why = "a file, not a folder" if existing.is_file() else "not a folder"
    raise BadInput(f"{what} {value}: cannot write there ({existing} is {why}); pass a folder you can write to")


def _results_location(value: str, what: str) -> str:
    """``value`` as results: s3://bucket/prefix or a folder; any other URI (gs://, ...) is refused with one line
    rather than taken for a folder named after its scheme."""
    from fspbench.store import location

    location(value, what)
    return value


def _results_dir(args: argparse.Namespace) -> str:
    if args.results:
        return _results_location(args.results, "--results")
    from fspbench.grid import resolve_benchmark

    return f"results/{resolve_benchmark(args.benchmark).stem}"


def _submit(args: argparse.Namespace) -> int:
    from fspbench.submit import submit

    results = _results_dir(args)
    if "://" not in results:  # a folder: absolute, as the job's driver runs elsewhere
        results = os.path.abspath(results)
    return submit(args.benchmark, args.address, results, autoscaling=args.autoscaling, mlflow=args.mlflow)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fspbench.store import ObjectPath, check_bucket, location

    results = location(_results_location(args.results_dir, "RESULTS_DIR"), "RESULTS_DIR")
    if isinstance(results, ObjectPath):  # endpoint, bucket and credentials: one line naming which
        check_bucket(results)
    from fspbench.report.build import build_report  # the analysis and plotting: after the quick checks

    out = Path(_local_folder(args.out, "--out")) if args.out else Path("reports") / results.resolve().name
    _writable_folder(str(out), "--out")  # before the analysis, which takes a while
    summary = build_report(results, out, rebuild=args.rebuild)
    for claim, verdict in summary["verdicts"].items():
        print(f"{claim}: {verdict} ({summary['reasons'][claim]}); regime: {summary['regimes'][claim]}")
    print(f"report: {summary['report_md']} ({summary['report_html'].name} beside it)")
    print(f"data: {summary['records']} run records, digest {summary['digest']}")
    if summary["rebuilt"]:  # said, never silent: the report's numbers now come from the rebuilt table
        print(f"runs.parquet: rebuilt from the run records (it differed: {summary['rebuilt']})")
    return 0


def _perf(args: argparse.Namespace) -> int:
    import json

    from fspbench.perf import measure, packing, table
    from fspbench.step import resolve_device

    device = str(resolve_device(args.device))
    if args.packing is not None:
        try:
            counts = [int(n) for n in args.packing.split(",")]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            raise BadInput(f"--packing: expected trial counts like 1,2,4,8, got {args.packing!r}")
        rows = packing(device, counts, seconds=args.seconds, precision=args.precision)
        print(json.dumps(rows, indent=2) if args.json else "\n\n".join(table(r) for r in rows))
        return 0
    figures = measure(device, steps=args.steps, repeats=args.repeats, compile=args.compile)
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    return 0


MLFLOW_HELP = ("also log every run's curves, final accuracy and record to this MLflow tracking server "
               "(http://HOST:PORT, or sqlite:///FILE.db); overrides [tracking] mlflow (default: TensorBoard only)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fspbench", description="FSP distillation reproducibility benchmark")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("train", help="train one run (no Ray), with a progress bar")
    p.add_argument("config", nargs="?", help="TOML run config (keys as in fspbench.config.RunConfig)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set arch=resnet8 --set fsp.pool=avg")
    p.add_argument("--out", default="runs", help="folder for the run record and checkpoints (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("run", help="run a benchmark grid on Ray Tune (local, or a cluster with --address)")
    p.add_argument("benchmark", help="a name in benchmarks/ (smoke, default, paper) or a path to a .toml file")
    p.add_argument("--results", help="results folder, or s3://BUCKET/PREFIX (default: results/<benchmark name>)")
    p.add_argument("--address", help="an existing Ray cluster, HOST:PORT or auto (default: a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no Tune status table")
    p.add_argument("--dry-run", action="store_true",
                   help="print the time estimate (calibrated on this machine) and the runs left; train nothing")
    p.add_argument("--autoscaling", action="store_true",
                   help="the cluster adds nodes on demand: a trial no node can hold yet waits for one "
                        "(default: such a request exits 2 at once)")
    p.add_argument("--mlflow", metavar="URI", help=MLFLOW_HELP)
    p.set_defaults(func=_run)

    p = sub.add_parser("submit", help="submit `fspbench run` as a Ray job to a cluster's job server")
    p.add_argument("benchmark", help="a name in benchmarks/ or a .toml file inside this project")
    p.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    p.add_argument("--results", help="results folder on storage every node shares, or s3://BUCKET/PREFIX "
                                     "(default: results/<name>, made absolute)")
    p.add_argument("--autoscaling", action="store_true", help="as for run: wait for nodes the autoscaler adds")
    p.add_argument("--mlflow", metavar="URI", help="as for run; the URI as the head node reaches it")
    p.set_defaults(func=_submit)

    p = sub.add_parser("report", help="analyse a results folder and write the report (no training)")
    p.add_argument("results_dir", metavar="RESULTS_DIR",
                   help="a results folder (or s3://BUCKET/PREFIX) written by `fspbench run`")
    p.add_argument("--out", help="report folder (default: reports/<name of RESULTS_DIR>)")
    p.add_argument("--rebuild", action="store_true",
                   help="rewrite runs.parquet from the run records where it does not match them (without it, a "
                        "mismatch exits 2 and nothing is written)")
    p.set_defaults(func=_report)

    p = sub.add_parser("perf", help="time fspbench's training step against a bare loop and the hardware's peak")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to measure")
    p.add_argument("--steps", type=int, default=20, help="timed steps per figure and round (default 20)")
    p.add_argument("--repeats", type=int, default=5, help="rounds; each figure is the median (default 5)")
    p.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    p.add_argument("--packing", metavar="N,N,...",
                   help="instead: total img/s of N training processes sharing the device, for each N")
    p.add_argument("--seconds", type=float, default=20.0, help="timed window of each --packing run (default 20)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="precision of --packing runs")
    p.set_defaults(func=_perf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BadInput as err:
        print(f"fspbench: error: {err}", file=sys.stderr)
        return 2
    except StorageError as err:  # a full disk or quota, a refused write: which path and why, one line
        print(f"fspbench: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        # a write outside errors.storage(): the same line, naming the file the OSError names
        print(f"fspbench: {storage_error(err.filename or '(unknown path)', err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        # Ctrl-C; and in `run`, SIGINT or SIGTERM (trials.Interrupted): 128 + the signal's number, as a shell says
        print("fspbench: interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
