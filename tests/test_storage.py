"""Storage faults: a full disk, a read-only location or a refused write ends with one line naming the path
and the cause, exit 1, and leaves nothing half-written (train, run and report; a real tmpfs)."""

from __future__ import annotations

import errno
import json
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TINY, run_cli, set_args

from fspbench import cli
from fspbench.errors import STORAGE_ERRNOS, StorageError, storage
from fspbench.io import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
TINY_BENCH = str((Path(__file__).parent / "benchmarks" / "tiny.toml").resolve())


def _mount(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 300 KB file system: a run's state file (about 600 KB) does not fit."""
    mnt = tmp_path / "small"
    _mount(mnt, "300k")
    yield mnt
    _unmount(mnt)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A real read-only file system (a tmpfs remounted ro): every write is refused with EROFS, also for root."""
    mnt = tmp_path / "ro"
    _mount(mnt, "1m")
    res = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        _unmount(mnt)
        pytest.skip(f"cannot remount read-only: {res.stderr.strip()}")
    yield mnt
    _unmount(mnt)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _temp_files(root: Path) -> list[Path]:
    """What an interrupted atomic write would leave behind (fspbench.io's ``.<name>.<pid>.<hex>.tmp``)."""
    return [p for p in _files(root) if p.name.endswith(".tmp")]


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------- errors.storage and StorageError


@pytest.mark.parametrize(("code", "cause"), [
    (errno.ENOSPC, "no space left on device (ENOSPC)"),
    (errno.EDQUOT, "disk quota exceeded (EDQUOT)"),
    (errno.EFBIG, "file too large for this file system (EFBIG)"),
    (errno.EROFS, "read-only file system (EROFS)"),
    (errno.EACCES, "permission denied (EACCES)"),
    (errno.EPERM, "operation not permitted (EPERM)"),
    (errno.EIO, "input/output error (EIO)"),
])
def test_storage_names_the_path_and_a_readable_cause(code: int, cause: str) -> None:
    with pytest.raises(StorageError) as info, storage(Path("/data/runs/abc.json")):
        raise OSError(code, "the C library's words", "/data/runs/.abc.json.1.deadbeef.tmp")
    err = info.value
    assert (err.path, err.cause, err.errno) == ("/data/runs/abc.json", cause, code)
    assert str(err).startswith(f"cannot write /data/runs/abc.json: {cause}; ")
    assert "--out/--results" in err.action and "\n" not in str(err)
    assert isinstance(err, OSError) and code in STORAGE_ERRNOS


def test_storage_takes_a_uri_and_an_errno_only_in_the_message() -> None:
    # an object store's path, and an OSError as pyarrow raises it (no errno attribute, "[errno N]" in the text)
    with pytest.raises(StorageError) as info, storage("s3://bucket/results/runs.parquet"):
        raise OSError("Failed to write: [errno 28] No space left on device")
    assert str(info.value).startswith("cannot write s3://bucket/results/runs.parquet: no space left on device")
    assert info.value.errno == errno.ENOSPC


def test_storage_keeps_other_errors_and_an_unknown_errno_in_its_own_words() -> None:
    with pytest.raises(ValueError), storage("/x"):
        raise ValueError("not a storage fault")
    with pytest.raises(StorageError) as info, storage("/x/y"):
        raise OSError(errno.ENOENT, "No such file or directory")
    assert info.value.cause == "no such file or directory (ENOENT)"
    inner = StorageError("/a", "no space left on device (ENOSPC)", "free space", errno.ENOSPC)
    with pytest.raises(StorageError) as info, storage("/outer"):
        raise inner
    assert info.value is inner  # the innermost path is the one that failed


def test_storage_error_survives_pickling() -> None:
    err = StorageError("/r/runs/x.json", "no space left on device (ENOSPC)", "free space", errno.ENOSPC)
    back = pickle.loads(pickle.dumps(err))  # as Ray sends it between processes
    assert type(back) is StorageError
    assert (back.path, back.cause, back.action, back.errno, str(back)) == (
        err.path, err.cause, err.action, err.errno, str(err))


def test_a_storage_fault_reported_by_a_trial_stops_the_grid() -> None:
    from fspbench.trials import STORAGE_FAULT, storage_stop

    stop = storage_stop()
    assert stop("t1", {"test_acc": 0.5}) is False and not stop.stop_all()
    assert stop("t2", {STORAGE_FAULT: ["/r/checkpoints/a.state.pt", "no space left on device (ENOSPC)",
                                       "free space", errno.ENOSPC]}) is True
    assert stop.stop_all() and stop.fault.path == "/r/checkpoints/a.state.pt" and stop.fault.errno == errno.ENOSPC
    stop("t3", {STORAGE_FAULT: ["/r/b", "read-only file system (EROFS)", "elsewhere", errno.EROFS]})
    assert stop.fault.path == "/r/checkpoints/a.state.pt"  # the first fault is the one the user reads


def test_rays_failed_upload_on_a_full_disk_stops_the_grid_without_a_traceback() -> None:
    import logging

    from fspbench.trials import ray_storage_faults

    class Stop:
        fault: StorageError | None = None

        def record(self, fault: StorageError) -> None:
            self.fault = fault

    class Seen(logging.Handler):  # on the logger itself: Ray's loggers may not propagate to the root
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.errors: list[type] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.errors.append(type(record.exc_info[1]) if record.exc_info else type(None))

    stop, seen, logger = Stop(), Seen(), logging.getLogger("ray.tune.execution.experiment_state")

    def log(err: Exception) -> None:
        try:
            raise err
        except Exception:
            logger.error("Saving experiment state to storage failed with exception: ", exc_info=True)

    logger.addHandler(seen)
    try:
        with ray_storage_faults(stop, Path("/r/ray")):
            log(ValueError("not storage"))
            log(OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device"))
    finally:
        logger.removeHandler(seen)
    assert seen.errors == [ValueError]  # the storage fault is not logged: it ends the grid as its one line
    assert stop.fault is not None and str(stop.fault).startswith("cannot write /r/ray: no space left on device")


# ---------------------------------------------------------------- writes on a real full or read-only tmpfs


def test_atomic_write_on_a_full_disk_leaves_the_old_file_and_no_temp_file(small_disk: Path) -> None:
    target = small_disk / "runs" / "abc.json"
    atomic_write_bytes(target, b"old\n")
    with pytest.raises(StorageError) as info:
        atomic_write_bytes(target, b"x" * 400_000)
    assert info.value.path == str(target) and info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old\n"
    assert _files(small_disk) == [target]


def test_atomic_write_on_a_read_only_file_system(read_only: Path) -> None:
    with pytest.raises(StorageError) as info:
        atomic_write_bytes(read_only / "runs" / "abc.json", b"{}\n")
    assert info.value.cause == "read-only file system (EROFS)"
    assert _files(read_only) == []


def test_figures_are_written_whole_or_not_at_all(small_disk: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from fspbench.report.figures import save_figure

    fig = Figure(figsize=(8, 8))  # noise does not compress: a PNG of a few MB, more than the disk holds
    fig.subplots().imshow(np.random.default_rng(0).random((960, 960)), interpolation="nearest")
    with pytest.raises(StorageError, match="no space left on device"):
        save_figure(fig, small_disk / "figures", "big")
    assert _files(small_disk) == []


def test_cli_prints_a_bare_storage_oserror_as_one_line(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import fspbench.report.build as build

    def full(*args: object, **kwargs: object) -> None:  # a write outside errors.storage(), as a library would
        raise OSError(errno.EDQUOT, "Disk quota exceeded", "/quota/report/claims.json")

    monkeypatch.setattr(build, "build_report", full)
    assert cli.main(["report", str(REPO / "results" / "ablation"), "--out", "/quota/report"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == ("fspbench: cannot write /quota/report/claims.json: disk quota exceeded (EDQUOT); free space "
                    "within the quota or pass --out/--results elsewhere")


def test_teacher_folder_says_what_is_expected(tmp_path: Path) -> None:
    folder = tmp_path / "T"
    folder.mkdir()
    (folder / "teacher-resnet14-s0.json").write_text("{}\n")
    res = run_cli("train", "--set", "method=fsp", "--set", f"teacher={folder}", "--out", str(tmp_path / "S"))
    assert res.returncode == 2
    line = _one_line(res.stderr)
    assert line == (f"fspbench: error: teacher: {folder} is a folder; pass a teacher's run record (<run_id>.json) "
                    "or checkpoint (.pt) inside it (teacher-resnet14-s0.json there)")
    assert not (tmp_path / "S").exists()


# ---------------------------------------------------------------- the commands, on a real tmpfs


def _train_args(out: Path) -> list[str]:
    return ["train", *set_args({**TINY, "task": "fashion-mnist", "arch": "resnet8", "method": "scratch",
                                "steps": 20}), "--out", str(out)]


@pytest.mark.slow
def test_train_on_a_full_disk_exits_1_with_one_line(small_disk: Path) -> None:
    res = run_cli(*_train_args(small_disk), "--quiet")
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith(f"fspbench: cannot write {small_disk}/checkpoints/"), line
    assert "no space left on device (ENOSPC); free space or pass --out/--results elsewhere" in line
    assert _temp_files(small_disk) == []
    # the failed run's record fits once the state file's temporary file is gone: it says the cause
    (record,) = small_disk.glob("*.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "failed" and rec["error"] == f"StorageError: {line.removeprefix('fspbench: ')}"


@pytest.mark.slow
def test_train_with_its_progress_bar_ends_with_the_line(small_disk: Path) -> None:
    # as a user types it: the bar is on stderr too, the last line is the fault
    res = run_cli(*_train_args(small_disk))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "no space left on device (ENOSPC)" in res.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_train_on_a_read_only_file_system_exits_1(read_only: Path) -> None:
    res = run_cli(*_train_args(read_only / "out"), "--quiet")
    assert res.returncode == 1
    line = _one_line(res.stderr)
    # said when the command starts, before anything trains
    assert line.startswith(f"fspbench: cannot write {read_only}/out") and "read-only file system (EROFS)" in line
    assert _files(read_only) == []


@pytest.mark.slow  # the whole analysis and every figure of the ablation report
def test_report_on_a_full_disk_exits_1_and_leaves_no_partial_file(small_disk: Path) -> None:
    # the committed ablation results are readable; its report (about 860 KB) does not fit in 300 KB
    res = run_cli("report", str(REPO / "results" / "ablation"), "--out", str(small_disk / "report"))
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith(f"fspbench: cannot write {small_disk}/report/") and "(ENOSPC)" in line
    assert _temp_files(small_disk) == []
    assert not (small_disk / "report" / "report.md").exists()  # written last: no report that reads as whole
    for f in _files(small_disk):  # every file there is whole: the JSON parses, the figures end as their format
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".png":
            assert f.read_bytes().endswith(b"IEND\xaeB`\x82")
        elif f.suffix == ".svg":
            assert f.read_text().rstrip().endswith("</svg>")


@pytest.mark.slow
def test_grid_whose_results_fill_up_stops_with_one_line(tmp_path: Path) -> None:
    mnt = tmp_path / "grid"
    _mount(mnt, "1m")  # Ray's own files fit, the teacher's state file does not
    try:
        res = run_cli("run", TINY_BENCH, "--results", str(mnt), "--quiet")
        assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith(f"fspbench: cannot write {mnt}/") and "no space left on device (ENOSPC)" in line, \
            res.stderr[-3000:]
        # no traceback of fspbench's (Ray's stopped workers may print their own teardown before the line)
        assert not [ln for ln in res.stderr.splitlines() if 'File "' in ln and "fspbench/" in ln], res.stderr[-3000:]
        assert "retried from its last checkpoint" not in res.stdout  # no retry of a full disk
        assert _temp_files(mnt) == []
        # the grid stopped at the fault: no student trained; a record written says failed with the cause
        # (where the disk had no room left even for it, the run has none: not run, and a rerun resumes it)
        records = [json.loads(p.read_text()) for p in (mnt / "runs").glob("*.json")]
        assert not any(r["status"] == "ok" for r in records), records
        assert all("no space left on device (ENOSPC)" in (r["error"] or "") for r in records
                   if r["role"] == "teacher"), records
        if (mnt / "grid.json").exists():  # where it still fitted, grid.json says what stopped the grid
            assert json.loads((mnt / "grid.json").read_text())["storage_fault"] == line.removeprefix("fspbench: ")
    finally:
        _unmount(mnt)
