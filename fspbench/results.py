"""The results store of a benchmark: its folder layout, run records, grid.json, and the runs.parquet table.

results/<name>/ (a local folder, or a prefix in a bucket: fspbench.store)
  runs/<run_id>.json   run records (RunRecord)        runs.parquet  one row per evaluation
  checkpoints/         weights and resumable state     grid.json     the grid's ledger (GridLedger)
  ray/                 Ray Tune's own files (never read back by fspbench)
  tensorboard/         event files of the curves, one TensorBoard run per run (fspbench.tracking; rebuilt
                       from the records)

grid.json of a [design] grid also keeps its ``registration`` (Registration, fspbench.registration), written
before the grid's first run trains and never rewritten; until a run of the grid has finished, grid.json holds
nothing else (read_ledger: no ledger yet; GridLedger.load: BadInput saying so).

A run record and grid.json are typed: RunRecord and GridLedger, frozen dataclasses whose one reader
(``from_json``, and ``load`` / read_run_record / read_ledger for files) checks every key and type and
whose one writer (``to_json``, ``write``) writes the same keys back, so writing what was read gives the
same file. Keys an older fspbench did not write are optional here: None (or ``absent``) stands for
"not recorded" and is left out again on writing. A missing, unknown or wrongly typed key is BadInput,
one line naming the file, the key and the expected value.

Neither torch nor Ray is imported here, so the analysis and the report read results without them.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import pandas as pd

from fspbench.errors import BadInput
from fspbench.io import atomic_write_bytes, atomic_write_json, record_digest, record_intact, sha256_file, write_record
from fspbench.store import Location, ObjectPath

if TYPE_CHECKING:
    from fspbench.grid import GridRun

FINISHED = ("ok", "diverged")  # terminal statuses: never trained again
PARQUET_COLUMNS = [
    "run_id", "role", "method", "arch", "task", "seed", "teacher_run_id", "stage", "step", "stage_step",
    "images_seen", "wall_time_s", "train_loss", "test_loss", "test_acc", "status", "eval_images",
    # labels from the benchmark file, so every number of the report recomputes from this table alone
    "group", "budget", "init_steps", "precision", "train_images",
    # [design] grids: a run's index in its arm (the order its seeds were added: look j holds indices below
    # j x look_every, and a paired test pairs equal indices); -1 where the benchmark file lists the seeds
    "seed_index",
    # accuracy on the curve points' fixed test images, also at the final evaluation (which uses the full
    # test set for test_acc): steps-to-target compares every point on the same images
    "curve_acc", "curve_images",
]


@dataclass(frozen=True)
class Paths:
    """Where a benchmark's results live: a local folder or a prefix in a bucket."""

    root: Location

    @property
    def runs(self) -> Location:
        return self.root / "runs"

    @property
    def checkpoints(self) -> Location:
        return self.root / "checkpoints"

    @property
    def ray(self) -> Location:
        return self.root / "ray"

    def record(self, run_id: str) -> Location:
        return self.runs / f"{run_id}.json"

    @property
    def ledger(self) -> Location:
        return self.root / "grid.json"


# ---------------------------------------------------------------- JSON <-> typed records


def _expected(tp: Any) -> str:
    """What a JSON value of type ``tp`` looks like, in words (for error messages)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_expected(a) for a in inner) + " or null"
    if dataclasses.is_dataclass(tp):
        return "an object"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_expected(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "an object"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, "any value")


def _bad(source: str, where: str, tp: Any, value: Any) -> BadInput:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return BadInput(f"{source}: {where}: expected {_expected(tp)}, got {shown}")


def _value(tp: Any, value: Any, source: str, where: str) -> Any:
    """``value`` checked against ``tp`` (str, int, float, bool, X | None, tuple[X, ...], dict[str, X],
    Any, a _Json dataclass); lists become tuples, objects of a dataclass become that dataclass."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        if not _fits(inner, value):  # neither null nor the other kind: say both (errors inside it are its own)
            raise _bad(source, where, tp, value)
        return _value(inner, value, source, where)
    if dataclasses.is_dataclass(tp):
        return cast(type[_Json], tp).from_json(value, source, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(source, where, tp, value)
        return tuple(_value(typing.get_args(tp)[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _bad(source, where, tp, value)
        return {k: _value(typing.get_args(tp)[1], v, source, f"{where}.{k}") for k, v in value.items()}
    if not _is(tp, value):
        raise _bad(source, where, tp, value)
    return value  # an int where a number is expected stays an int: written back as it was read


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` is of ``tp``'s kind at the top: an object, a list or the scalar (not its contents)."""
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return isinstance(value, dict)
    if typing.get_origin(tp) is tuple:
        return isinstance(value, list | tuple)
    return tp is Any or _is(tp, value)


def _is(tp: type, value: Any) -> bool:
    """Whether a JSON scalar is of type ``tp`` (str, int, float, bool); true and false are no numbers."""
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str or tp is bool:
        return isinstance(value, tp)
    raise TypeError(f"no JSON reader for {tp}")  # a field of a type this module does not read


def _plain(value: Any) -> Any:
    """A typed value as JSON: dataclasses as objects, tuples as lists."""
    if isinstance(value, _Json):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (its annotations are strings here)."""
    return typing.get_type_hints(cls)


class _Json:
    """The one reader (``from_json``) and the one writer (``to_json``) of the dataclasses below.

    A field without a default is a required key. A field whose default is None is an optional key:
    None is "not recorded" and is left out on writing, except for the keys in NULLABLE, whose null
    is a value (written as null) unless the file they were read from lacked them (``absent``).
    """

    NULLABLE: ClassVar[frozenset[str]] = frozenset()
    IGNORED: ClassVar[frozenset[str]] = frozenset()  # keys read past, never kept (a record's sha256)

    @classmethod
    def from_json(cls, obj: Any, source: str = "", where: str = "") -> Self:
        """Check and convert one JSON object; BadInput naming ``source`` and the key when it does not fit."""
        source = source or cls.__name__
        if not isinstance(obj, dict):
            raise BadInput(f"{source}: {where or 'the file'}: expected an object, got {type(obj).__name__}")
        every = dataclasses.fields(cast(Any, cls))
        fields = {f.name: f for f in every if f.name != "absent"}
        hints = _hints(cast(type, cls))
        for key in obj:
            if key not in fields and key not in cls.IGNORED:
                raise BadInput(f"{source}: unknown key {where + '.' if where else ''}{key} (not part of a "
                               f"{cls.__name__}; an fspbench of another version wrote it?)")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            at = f"{where}.{name}" if where else name
            if name in obj:
                kwargs[name] = _value(hints[name], obj[name], source, at)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BadInput(f"{source}: missing key {at} (expected {_expected(hints[name])})")
        if len(every) > len(fields):  # it keeps which of its NULLABLE keys the file lacked
            kwargs["absent"] = frozenset(cls.NULLABLE - obj.keys())
        return cast(Self, cast(Any, cls)(**kwargs))

    def to_json(self) -> dict[str, Any]:
        """The JSON object: every required key, and the optional keys that are recorded."""
        absent: frozenset[str] = getattr(self, "absent", frozenset())
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cast(Any, self)):
            value = getattr(self, f.name)
            optional = f.default is None
            if f.name == "absent" or (value is None and optional and (f.name not in self.NULLABLE
                                                                      or f.name in absent)):
                continue
            out[f.name] = _plain(value)
        return out


def _read_json(path: Location) -> Any:
    """The JSON in ``path``; BadInput naming the file when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"{path}: unreadable ({type(err).__name__}; truncated?)") from None


# ---------------------------------------------------------------- run records


@dataclass(frozen=True)
class CurvePoint(_Json):
    """One evaluation point of a run (a row of runs.parquet before the grid's labels are added)."""

    run_id: str
    role: str  # teacher | student
    method: str  # a name in fspbench.registry (scratch, fsp, ...)
    arch: str
    task: str
    seed: int
    teacher_run_id: str  # "" for a run without a teacher
    stage: str  # the stage's name (e.g. init for FSP's stage 1, main for the main task)
    step: int  # optimizer steps since the run started, all stages
    stage_step: int  # optimizer steps since this stage started
    images_seen: int  # training images drawn so far (step x batch size)
    wall_time_s: float  # training seconds so far (teacher forward passes in, evaluation and checkpoints out)
    train_loss: float | None  # mean training loss of the steps since the last point; null when not finite
    test_loss: float | None  # mean cross-entropy on the evaluated test images; null when not finite
    test_acc: float  # accuracy on the evaluated test images, fraction 0..1
    status: str  # ok | diverged (the loss was not finite by this point)
    eval_images: int | None = None  # test images evaluated: the full test set at the final point, else the subset
    curve_acc: float | None = None  # accuracy (0..1) on the curve points' fixed test images, also at the end
    curve_images: int | None = None  # how many those are


@dataclass(frozen=True)
class FinalMetrics(_Json):
    """A run's last evaluation point, on the full test set."""

    step: int  # optimizer steps, all stages
    images_seen: int
    wall_time_s: float  # training seconds
    train_loss: float | None  # null when not finite (a diverged run)
    test_loss: float | None
    test_acc: float  # fraction 0..1


@dataclass(frozen=True)
class Checkpoint(_Json):
    """The final weights of an ok run."""

    path: str  # relative to the record's folder
    sha256: str  # of the file


@dataclass(frozen=True)
class DataInfo(_Json):
    """The data set a run trained on."""

    source: str  # where the images came from ($FSPBENCH_DATA, the system package, a download)
    train_images: int
    test_images: int
    num_classes: int


@dataclass(frozen=True)
class StageInfo(_Json):
    """One training stage of a run, as it ran."""

    name: str
    steps: int  # optimizer steps
    lr: float  # initial learning rate
    milestones: tuple[float, ...]  # fractions of the stage's steps where the lr is multiplied by gamma


@dataclass(frozen=True)
class RunRecord(_Json):
    """results/<name>/runs/<run_id>.json: one run, what it was, where and how it ran and how it ended.

    Written by train.py (a run that trained) and by failed_record (one that never did); the file
    also carries ``sha256``, the checksum of the rest, which read_run_record checks and ``write``
    writes anew.
    """

    IGNORED = frozenset({"sha256"})

    run_id: str
    role: str  # teacher | student
    method: str
    arch: str
    task: str
    seed: int
    teacher_run_id: str  # "" for a run without a teacher
    config: dict[str, Any]  # the run's RunConfig.to_dict() (fspbench.config.config_from_dict reads it back)
    status: str  # ok | diverged | failed
    curve: tuple[CurvePoint, ...]  # every evaluation point, in step order; empty when none was reached
    final: FinalMetrics | None  # the last point; null when the run never reached one
    checkpoint: Checkpoint | None  # null unless the run ended ok
    error: str | None  # why a failed run failed; null otherwise
    finished_at: str  # UTC, ISO 8601 to the second
    teacher: str | None = None  # the teacher's record, relative to this record's folder when inside it
    env: dict[str, Any] | None = None  # versions, hardware, git commit, Ray node (train.environment)
    stages: tuple[StageInfo, ...] | None = None
    data: DataInfo | None = None
    started_at: str | None = None  # UTC, ISO 8601 to the second
    train_time_s: float | None = None  # training seconds (as the curve's wall_time_s)
    eval_time_s: float | None = None  # seconds spent in evaluations

    @classmethod
    def load(cls, path: Location) -> RunRecord:
        """The record in ``path``; BadInput naming the file (and the key) when it is missing or malformed, and
        what to do about it."""
        return _record_from(_record_json(path), path)

    def write(self, path: str | Location) -> None:
        """Write the record atomically with its checksum (fspbench.io.write_record)."""
        write_record(path, self.to_json())


def _record_json(path: Location) -> Any:
    """_read_json for a run record: its BadInput also says what to do."""
    try:
        return _read_json(path)
    except BadInput as err:
        raise BadInput(f"{err}; {_redo(path)}") from None


def _record_from(raw: Any, path: Location) -> RunRecord:
    """RunRecord.from_json for the record read from ``path``: its BadInput also says what to do."""
    try:
        return RunRecord.from_json(raw, str(path))
    except BadInput as err:
        raise BadInput(f"{err}; {_redo(path)}") from None


def _redo(path: Location) -> str:
    """What to do about the unusable record at ``path``: a grid trains a run again whose record is unreadable
    (read_run_record), so rerunning its grid mends a results folder; a record of ``fspbench train`` is retrained
    by hand."""
    folder = path.parent.parent
    if path.parent.name == "runs" and (folder / "grid.json").exists():
        return f"rerun `fspbench run BENCHMARK --results {folder}` to train that run again, or restore the file"
    return "train that run again with `fspbench train`, or restore the file"


def read_run_record(path: Location) -> RunRecord | None:
    """A run record whose checksum holds; None when it is missing, and (with a warning) when it is
    truncated, altered or malformed: then its run is trained again."""
    if not path.exists():
        return None
    try:
        raw = _read_json(path)
    except BadInput:
        print(f"[fspbench] warning: {path} is unreadable (truncated?); its run is trained again", flush=True)
        return None
    if isinstance(raw, dict) and not record_intact(raw):
        print(f"[fspbench] warning: {path} does not match its sha256 (altered); its run is trained again",
              flush=True)
        return None
    try:
        return RunRecord.from_json(raw, str(path))
    except BadInput as err:
        print(f"[fspbench] warning: {err}; its run is trained again", flush=True)
        return None


def load_intact_record(path: Location) -> tuple[RunRecord, str]:
    """The record in ``path`` and its checksum (fspbench.io.record_digest: the sha256 of its content), for a
    reader that must never use an altered record silently (the report): BadInput naming the file when the record
    does not match the sha256 it carries or carries none (every writer adds it), and when it is missing or
    malformed."""
    raw = _record_json(path)
    if not isinstance(raw, dict):
        return _record_from(raw, path), ""  # raises: BadInput naming the file and what to do
    try:
        checksum = record_digest(raw)
    except ValueError:  # NaN or infinity, which no record is written with: altered
        checksum = ""
    if raw.get("sha256") != checksum or not checksum:
        # a grid trains a run again whose record does not match (read_run_record), so rerunning it mends the folder
        raise BadInput(f"{path}: does not match its sha256 (altered since it was written); {_redo(path)}")
    return _record_from(raw, path), checksum


def is_finished(paths: Paths, run: GridRun) -> bool:
    rec = read_run_record(paths.record(run.run_id))
    return rec is not None and rec.status in FINISHED


def teacher_usable(paths: Paths, teacher_run_id: str) -> bool:
    """A finished teacher whose weights are on disk and match the hash in its record."""
    rec = read_run_record(paths.record(teacher_run_id))
    if rec is None or rec.status != "ok" or rec.checkpoint is None:
        return False
    ckpt = paths.runs / rec.checkpoint.path
    if ckpt.is_file() and sha256_file(ckpt) == rec.checkpoint.sha256:
        return True
    print(f"[fspbench] warning: the weights of teacher {teacher_run_id} are missing or do not match their sha256; "
          "the teacher is trained again", flush=True)
    return False


def runs_table(records: list[RunRecord], labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per evaluation point of every run; a run's status and grid labels on each of its rows.

    ``labels``: run id -> group, budget, init_steps, precision (grid.run_labels). A run that failed
    before its first evaluation keeps one row with step 0 and no metrics, so failures are counted
    rather than dropped.
    """
    rows: list[dict[str, Any]] = []
    for rec in records:
        curve = [p.to_json() for p in rec.curve] or [{
            "run_id": rec.run_id, "role": rec.role, "method": rec.method, "arch": rec.arch,
            "task": rec.task, "seed": rec.seed, "teacher_run_id": rec.teacher_run_id,
            "stage": "", "step": 0, "stage_step": 0, "images_seen": 0, "wall_time_s": 0.0,
            "train_loss": None, "test_loss": None, "test_acc": None, "eval_images": 0,
        }]
        extra = {"seed_index": -1, **labels.get(rec.run_id, {}),
                 "train_images": rec.data.train_images if rec.data else 0}
        rows += [{"curve_acc": row.get("test_acc"), "curve_images": row.get("eval_images", 0), **row, **extra,
                  "status": rec.status} for row in curve]
    df = pd.DataFrame(rows, columns=PARQUET_COLUMNS)
    for col in ("train_loss", "test_loss", "test_acc", "wall_time_s", "curve_acc"):
        df[col] = df[col].astype("float64")
    for col in ("seed", "step", "stage_step", "images_seen", "eval_images", "budget", "init_steps", "train_images",
                "curve_images"):
        df[col] = df[col].fillna(0).astype("int64")
    df["seed_index"] = df["seed_index"].fillna(-1).astype("int64")
    for col in ("group", "precision"):
        df[col] = df[col].fillna("").astype(str)
    return df.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def write_parquet(df: pd.DataFrame, path: Location) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_parquet(path: Location) -> pd.DataFrame:
    """runs.parquet from a folder or a bucket (an object is read whole, then parsed)."""
    return pd.read_parquet(io.BytesIO(path.read_bytes()) if isinstance(path, ObjectPath) else path)


def now() -> str:
    """The time of day as results record it (UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def failed_record(run: GridRun, error: str) -> RunRecord:
    """The record of a run that never trained: failed, with its labels, so it is counted, not dropped."""
    return RunRecord(run.run_id, run.role, run.config.method, run.config.arch, run.config.task, run.config.seed,
                     run.teacher_run_id, run.config.to_dict(), "failed", (), None, None, error, now())


def mark_blocked(paths: Paths, run: GridRun, teacher_status: str) -> None:
    """A student whose teacher did not finish is recorded as failed, not silently skipped."""
    failed_record(run, f"teacher {run.teacher_run_id} ended with status {teacher_status}").write(
        paths.record(run.run_id))


# ---------------------------------------------------------------- grid.json


@dataclass(frozen=True)
class RunCounts(_Json):
    """The grid's runs by how they ended."""

    total: int  # the grid's runs, skipped ones left out
    ok: int
    diverged: int
    failed: int
    not_run: int | None = None  # never started (the grid was stopped first)
    skipped: int | None = None  # not run on this hardware (bf16 without native support)


@dataclass(frozen=True)
class Skipped(_Json):
    """Runs a grid did not run on its hardware."""

    runs: tuple[str, ...]  # run ids
    groups: tuple[str, ...]  # their student groups
    reason: str  # why, in words ("" when none was skipped)


@dataclass(frozen=True)
class Retry(_Json):
    """One failed attempt of a trial, retried from its last checkpoint (trials.TrialLog)."""

    run_id: str
    node: str  # the Ray node it ran on ("unknown" when no report came from it)
    attempt_s: float  # seconds from the attempt's start to its failure
    kept_s: float  # training seconds it saved into checkpoints (the run's record counts these)
    lost_s: float  # attempt_s - kept_s: what the run's record does not count
    error: str  # the last line of Tune's error file ("" when none)


@dataclass(frozen=True)
class HistoryEntry(_Json):
    """One ``fspbench run`` of the grid (every invocation adds one)."""

    started_at: str  # UTC, ISO 8601
    finished_at: str
    wall_time_s: float  # seconds of the invocation
    trained_runs: int  # runs it trained
    trial_time_s: float  # their summed training seconds
    cpus: float  # of the live nodes when it started
    gpus: float
    retried_time_s: float | None = None  # seconds of the attempts that failed and were retried
    retried_attempts: int | None = None


@dataclass(frozen=True)
class Decision(_Json):
    """Where a claim stood after a look."""

    state: str  # open | supported | contradicted | inconclusive
    reason: str
    n_per_arm: int  # seeds per deciding arm at the claim's last look


@dataclass(frozen=True)
class LookEntry(_Json):
    """One look of a [design] grid (fspbench.looks)."""

    look: int  # 1, 2, ...
    seeds_per_arm: dict[str, int]  # claim -> seeds per deciding arm at this look
    trained_runs: int  # runs this look trained (in the invocation that trained it)
    trained_now: int  # runs it trained in the latest invocation (0: kept from an earlier one)
    wall_time_s: float  # seconds of that training
    trial_time_s: float  # summed training seconds of its trials
    estimated_s: float | None  # the estimate made before it (null: nothing to train)
    estimated_runs: int | None
    decisions: dict[str, Decision]  # claim -> where it stood after this look


@dataclass(frozen=True)
class Registration(_Json):
    """grid.json's ``registration``: the design of a [design] grid as it stood before its first run trained
    (fspbench.registration writes it once; every later write of grid.json keeps it as it is)."""

    file: str  # the benchmark file, relative to the project when inside it
    sha256: str  # of ``text`` as UTF-8 (the file's own sha256 for a file with LF line ends)
    text: str  # the benchmark file's text
    registered_at: str  # UTC, ISO 8601 to the second ("2026-12-06T18:40:00Z")
    design: dict[str, Any]  # flattened key path -> value of every design key (all but description, [resources],
    #                         [tracking]: those change how the grid runs, not what it tests)
    after_results: bool  # registered by a run into a folder that held results from before registrations


@dataclass(frozen=True)
class GridLedger(_Json):
    """results/<name>/grid.json: the grid as it was run, its time, resources and estimate, look by look.

    Written by tune.py after every Tune run and by looks.py after the looks (``seeds``, ``looks``);
    read back by the report, which rebuilds the grid from ``benchmark_text``. Time is in seconds.
    """

    NULLABLE = frozenset({"max_concurrent", "harness_efficiency", "eval_share", "estimate"})

    name: str
    benchmark_file: str  # the benchmark file, relative to the project when inside it
    benchmark_text: str  # its text, so the report expands the very grid that ran
    started_at: str  # the last invocation that trained (UTC, ISO 8601)
    finished_at: str
    wall_time_s: float
    cpus: float  # of the live nodes when it started
    gpus: float
    trial_resources: dict[str, float]  # per trial: {"cpu": ..., "gpu": ...}
    concurrent_slots: int  # trials the nodes could hold at once when it started
    trained_runs: int
    trial_time_s: float  # summed training seconds of the trials it trained
    harness_efficiency: float | None  # trial_time_s / (wall_time_s x peak_slots); null when nothing trained
    eval_time_s: float  # summed seconds of the trials' evaluations
    eval_share: float | None  # eval_time_s / (wall_time_s x peak_slots); null when nothing trained
    runs: RunCounts
    history: tuple[HistoryEntry, ...]  # every invocation, the latest last
    max_concurrent: int | None = None  # [resources] max_concurrent (null: no cap)
    nodes: int | None = None  # live nodes when it started
    peak_slots: int | None = None  # the most trials the nodes could hold at once while it ran
    peak_running: int | None = None  # the most trials that ran at once
    retries: tuple[Retry, ...] | None = None
    retried_time_s: float | None = None  # summed lost_s of the retries
    hardware: dict[str, Any] | None = None  # the trials' hardware (fspbench.hardware.Hardware.to_dict())
    estimate: dict[str, Any] | None = None  # fspbench.estimate's Estimate.summary(); null: nothing to train
    skipped: Skipped | None = None
    seeds: dict[str, int] | None = None  # [design] grids: claim -> seeds per deciding arm the results hold
    looks: tuple[LookEntry, ...] | None = None  # [design] grids: every look so far
    storage_fault: str | None = None  # the storage fault that stopped the last invocation, as the CLI said it
    registration: Registration | None = None  # [design] grids: the design registered before the first run trained
    absent: frozenset[str] = field(default=frozenset())  # NULLABLE keys the file lacked

    @classmethod
    def load(cls, path: Location) -> GridLedger:
        """The ledger in ``path``; BadInput naming the file (and the key) when it is missing or malformed, or
        when it holds only the grid's registration (no run of the grid has finished yet)."""
        raw = _read_json(path)
        if _registration_only(raw):
            raise BadInput(f"{path}: holds only the registration of the grid's design; no run of the grid has "
                           "finished yet")
        return cls.from_json(raw, str(path))

    def write(self, path: Location) -> None:
        atomic_write_json(path, self.to_json())


def read_ledger(path: Location) -> GridLedger | None:
    """The grid.json a rerun builds on: None when there is none, and (with a warning) when it is
    unreadable or malformed, so the grid's history starts again rather than the run failing."""
    if not path.exists():
        return None
    try:
        raw = _read_json(path)
        if _registration_only(raw):  # registered, and nothing has finished since: no history yet
            return None
        return GridLedger.from_json(raw, str(path))
    except BadInput as err:
        print(f"[fspbench] warning: {err}; its history is started again", flush=True)
        return None


def _registration_only(raw: Any) -> bool:
    """Whether grid.json's JSON is a registration written before any run of the grid finished."""
    return isinstance(raw, dict) and raw.keys() == {"registration"}


def read_registration(path: Location) -> Registration | None:
    """The registration in grid.json at ``path``: None when there is no grid.json, it is unreadable (read_ledger
    warns), or it holds none; BadInput naming the file and key when the registration itself is malformed."""
    if not path.exists():
        return None
    try:
        raw = _read_json(path)
    except BadInput:
        return None
    if not isinstance(raw, dict) or "registration" not in raw:
        return None
    return Registration.from_json(raw["registration"], str(path), "registration")


def write_registration(path: Location, registration: Registration) -> None:
    """Add ``registration`` to the grid.json at ``path`` (the ledger there kept as it is), or write a grid.json
    that holds only it when there is no readable ledger yet."""
    ledger = read_ledger(path)
    if ledger is not None:
        dataclasses.replace(ledger, registration=registration).write(path)
    else:
        atomic_write_json(path, {"registration": registration.to_json()})
