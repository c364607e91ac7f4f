"""How long a grid will take on this machine, before it starts.

The estimate is of the wall time grid.json records (``wall_time_s``: from the grid's start, its own
calibration included, to its last trial's end):

1. **Calibration.** Every kind of training step the grid contains (a stage of a method for one
   network, input shape, batch, precision and teacher) and every kind of evaluation is timed: the step
   train.train_run takes, built by the same ``fspbench.step.build_step`` (networks, objective,
   optimizer, autocast, batch stream, the per-step divergence check), on synthetic data of the task's
   shape (``data.synthetic_task``) with a random teacher, at the trial's thread count, on the device
   the trials use, while ``alongside`` = (trials the grid runs at once on this machine) - 1 other
   processes run the same kinds in turn, as the grid's other trials will (``_Alongside``). After
   WARMUP_STEPS untimed calls of each, CALIBRATION_ROUNDS rounds each time one call of every kind in
   turn (a step, or one test batch); a kind's time is its median over the rounds, so a slow spell of a
   shared machine falls on every kind alike and a slow round does not count. Timings are cached per machine
   (``Hardware.key()``, threads, ``alongside``, library versions) in ``$FSPBENCH_CACHE_DIR`` or
   ``~/.cache/fspbench``, so a second grid calibrates only what is new.
2. **A run's seconds** = (sum over stages of steps x step time + its evaluated images x the time per
   image) x ``ray_slowdown`` (the CPU Ray's own processes take from the trials when every core is
   booked) + TRIAL_OVERHEAD_S + POINT_OVERHEAD_S per evaluation point.
3. **The schedule** = the end of a simulated run of the grid: ``slots`` trials at once, each student
   once its teacher has ended, the ready run with the longest remaining chain first: the policy of
   ``fspbench.schedule``, which the grid's Tune searcher (searcher.TeacherFirst) follows too; a run that
   finds no idle trial actor (Tune reuses an ended trial's) waits ACTOR_START_S for a new one.
4. **The wall time** = ``startup_s`` + the schedule, where ``startup_s`` = the seconds the estimate
   itself took (imports, calibration) + TUNE_START_S + TUNE_END_S, and once per invocation
   PREPARE_S + RAY_START_S. A further Tune run in the same process (another look at the grid) pays
   only its own: ``estimate_grid(..., include_ray_start=False)`` (the default leaves them out once
   this process is connected to Ray), ``tune_run_startup_s()``.

The constants were measured on a 2-core AMD EPYC (AVX2, no AVX-512), 1-CPU trials on 2 slots, with
``fspbench run`` on a results folder instrumented with timestamps (Tune callbacks, ``Tuner.fit``,
``ray.init``) and per-process CPU times, on 2026-12-02: a smoke grid (34 runs, 1-12 evaluation points)
and an 18-run grid of 400-step ResNet-14 teachers and ResNet-8 students (20-21 points):

- PREPARE_S: grid start to the estimate (torch's import): 3.2 and 3.0 s. RAY_START_S: ``ray.init``,
  5.5 and 5.8 s. TUNE_START_S: ``Tuner.fit`` to the first trial's start, 3.5 and 3.1 s.
  TUNE_END_S: the last trial's end to the grid's end, 0.27 and 0.23 s.
- TRIAL_OVERHEAD_S, POINT_OVERHEAD_S: a trial's seconds in Tune (start to end, as the driver saw
  them) less its record's training and evaluation seconds, fitted over 48 trials on a reused actor:
  0.16 s + 0.045 s per evaluation point (residual sd 0.08 s). ACTOR_START_S: the first trial on each
  actor took 6.3-7.3 s more (the worker's imports of torch and fspbench, the data set's first load).
- Contention: training steps beside a copy of the work took 0.96-1.09x their time alone, and an
  evaluation 1.4-1.8x, hence the calibration beside copies of the grid's kinds. In the grid the
  trials' training and evaluation then took 1.03x and 0.94x the calibrated seconds (1.01x together);
  Ray's processes (driver, raylet, GCS, dashboard agent, log monitor) used 0.12-0.13 cores meanwhile,
  of which RAY_CPU = 0.04 cores (a factor 2 / (2 - 0.04) = 1.02 on 2 booked cores) is what the trials
  lost beyond the calibration's own interference.

On another machine the fixed costs (PREPARE_S, RAY_START_S, TUNE_START_S, TUNE_END_S, ACTOR_START_S,
TRIAL_OVERHEAD_S, POINT_OVERHEAD_S) are these times ``Calibration.fixed_scale``: a fresh interpreter's
``import torch`` there (the fastest of IMPORT_ROUNDS, cached with the kinds: a busy machine only slows
an import down) over REFERENCE_IMPORT_S. They are
imports, process starts and small file writes, which follow the machine's single-thread speed, not its
vector units. On a 2-core AMD EPYC with AVX-512 (2026-12-02) the import took 1.35-1.64 s (scale about
0.5), and the smoke grid's fixed costs, fitted as one factor on the reference's, came to 0.44 of them.

Checked with tools/estimate_check.py (the real ``fspbench run``, cold and warm cache) on the same
machine: measured / estimated 0.94-1.04 on the smoke preset, tests/benchmarks/cluster.toml and an 18-run
grid of 12 minutes (docs/PERFORMANCE.md, "Time estimates").

The same model gives the progress line's "remaining", scaled by the measured / estimated seconds
of the runs already ended.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fspbench.config import RunConfig
from fspbench.io import atomic_write_json
from fspbench.methods import get as get_method
from fspbench.methods import stage_plans
from fspbench.registry import TASKS
from fspbench.schedule import ReadyRuns, chain_priority

if TYPE_CHECKING:  # the grid module imports torch through the methods registry
    from fspbench.grid import Benchmark, GridRun

# measured on a 2-core AMD EPYC (AVX2), 2026-12-02: see the module docstring
PREPARE_S = 3.1  # an invocation's start before its estimate: torch's import, the results folder read
RAY_START_S = 5.7  # ray.init of the local Ray that `fspbench run` starts (once per invocation)
TUNE_START_S = 3.4  # a Tune run's set-up: Tuner.fit until its first trial starts
TUNE_END_S = 0.25  # a Tune run's end: its last trial's end until fit returns and the grid ends
ACTOR_START_S = 6.8  # a new trial actor: the worker's imports of torch and fspbench, the data's first load
TRIAL_OVERHEAD_S = 0.16  # per trial: set-up (data subset, networks, record), final checkpoint, Tune's hand-over
POINT_OVERHEAD_S = 0.045  # per evaluation point: state file, Tune report and checkpoint
# the fixed costs above are the reference machine's; another machine's are these times its speed at
# them, measured as a fresh interpreter's `import torch` (the fastest of IMPORT_ROUNDS) over the reference's
REFERENCE_IMPORT_S = 3.0  # `import torch` on the reference machine: the bulk of its PREPARE_S (3.0-3.2 s)
IMPORT_ROUNDS = 3
RAY_CPU = 0.04  # cores' worth of CPU the trials lose to Ray's processes beyond the calibration's interference
CALIBRATION_ROUNDS = 7  # timed rounds; a round times one call of each kind; a kind's time is its median
EVAL_ROUND_BATCHES = 1  # test batches (of data.EVAL_BATCH images) per timed call of an evaluation
WARMUP_STEPS = 2  # untimed calls of each kind before the rounds
KINDS_AT_ONCE = 8  # kinds built and timed together, at most (their networks and data in memory at once)
FIXED_SCALE_KEY = "fixed_cost_scale"  # a machine's cache entry: its fixed costs over the reference's
GRID_PREFIX = "grid:"  # + a kind's key: its fastest seconds measured in a grid's trials (fspbench.measured)
BUSY_PREFIX = "busy:"  # + a kind's key: cores other processes took while it was timed
BUSY_CORES = 0.5  # more than this and a timing is taken again next time (an idle Ray and servers: 0.1-0.3)
LOAD_TIMEOUT_S = 120.0  # the longest wait for the processes that load the CPU alongside a calibration
CACHE_VERSION = 4  # 2: timings under the grid's concurrency (machine key "alongside=N"), medians of rounds;
# 3: the machine's fixed-cost scale (FIXED_SCALE_KEY) beside its kinds; 4: a stage's own settings in its key
# only where its method names them (Method.work)


# ---------------------------------------------------------------- what a run is made of


@dataclass(frozen=True)
class Kind:
    """One kind of timed work: a training stage of a run's method, or an evaluation.

    ``key`` names everything its speed depends on; ``cfg`` and ``teacher`` are a run of that kind.
    """

    key: str
    cfg: RunConfig
    teacher: RunConfig | None
    stage: int  # index into the method's stages; -1 for evaluation (seconds per image)


def _shape(cfg: RunConfig) -> tuple[int, int, int]:
    """(classes, channels, image side) of a run's data, without loading it."""
    info = TASKS[cfg.task]
    return len(cfg.classes) or info.num_classes, info.in_channels, cfg.image_size or info.image_size


def _net(cfg: RunConfig) -> dict[str, Any]:
    # not the number of classes: it sizes only the last linear layer, a negligible share of a step
    _, c, side = _shape(cfg)
    return {"arch": cfg.arch, "width": cfg.width, "channels": c, "side": side,
            "precision": cfg.precision, "channels_last": cfg.channels_last, "compile": cfg.compile,
            "device": cfg.device}


def _key(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stage_kinds(cfg: RunConfig, teacher: RunConfig | None) -> list[Kind]:
    """The training-step kinds of one run, one per stage of its method."""
    kinds = []
    for i, plan in enumerate(stage_plans(cfg)):
        # an objective is the same work in any method (FSP's stage 2 is scratch's step); the method names the
        # settings that change a stage's work beyond that (FSP's pairs and pooling)
        what = {"net": _net(cfg), "objective": plan.objective, "batch": cfg.batch_size,
                "augment": cfg.augment, "hflip": cfg.hflip, **get_method(cfg.method).work(cfg, plan),
                **({"options": dict(cfg.options)} if cfg.options else {}),
                "teacher": _net(teacher) if teacher is not None and plan.uses_teacher else None}
        kinds.append(Kind(_key(what), cfg, teacher if plan.uses_teacher else None, i))
    return kinds


def eval_kind(cfg: RunConfig) -> Kind:
    return Kind(_key({"eval": _net(cfg)}), cfg, None, -1)


def eval_points(cfg: RunConfig) -> list[tuple[int, bool]]:
    """(images evaluated, is_final) for each evaluation point of a run, as train.train_run makes them:
    every ``eval_every`` steps and at each stage's end; the final one evaluates the full test set
    and the curve's own subset."""
    k, _, _ = _shape(cfg)
    info = TASKS[cfg.task]
    test = round(info.test_images * k / info.num_classes)
    curve = min(cfg.eval_subset, test) if cfg.eval_subset else test
    stages = stage_plans(cfg)
    points: list[tuple[int, bool]] = []
    base, every = 0, cfg.eval_every
    for i, spec in enumerate(stages):
        if spec.steps <= 0:
            continue
        end = base + spec.steps
        # the multiples of eval_every inside the stage (counted, not stepped through: a grid has thousands of
        # runs of thousands of steps), then the stage's end, whether or not it is one
        points.extend([(curve, False)] * len(range((base // every + 1) * every, end, every)))
        points.append((test + (curve if cfg.eval_subset else 0), True) if i == len(stages) - 1 else (curve, False))
        base = end
    return points


# ---------------------------------------------------------------- calibration


def cache_path() -> Path:
    base = os.environ.get("FSPBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fspbench")
    return Path(base) / "calibration.json"


def machine_key(device: str, threads: int, alongside: int = 0) -> str:
    """Whose timings a cache entry holds: the hardware, the thread count, how many copies of the work ran
    alongside (the other trials of a grid on the same machine) and the library versions."""
    import torch

    import fspbench
    from fspbench.hardware import detect

    return (f"{detect(device).key()}|threads={threads}|alongside={alongside}|torch={torch.__version__}"
            f"|fspbench={fspbench.__version__}")


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
        return data if data.get("version") == CACHE_VERSION else {"version": CACHE_VERSION}
    except (OSError, json.JSONDecodeError, AttributeError):
        return {"version": CACHE_VERSION}


@dataclass
class Work:
    """One kind's unit of work, ready to run: ``run()`` does one training step (``units`` = 1) or
    evaluates EVAL_ROUND_BATCHES batches (``units`` = their images); ``sync()`` waits for the device."""

    run: Callable[[], None]
    units: float
    sync: Callable[[], None]


def _workload(kind: Kind) -> Work:
    """``kind``'s work on synthetic data of its shape: the training step train.train_run takes
    (fspbench.step.build_step, the stage's ``Stage.train``), or one of its evaluations."""
    from fspbench.data import EVAL_BATCH, eval_batches, synthetic_task
    from fspbench.models import build_model
    from fspbench.step import build_step, resolve_device

    # a random teacher and no pretrained weights: a network's values change no step's time
    cfg = kind.cfg.replace(weights="")
    device = resolve_device(cfg.device)
    k, _, side = _shape(cfg)
    data = synthetic_task(cfg.task, max(4 * cfg.batch_size, 4 * EVAL_BATCH), classes=k, image_size=side,
                          device=device)
    teacher = None
    if kind.teacher is not None:
        teacher = build_model(kind.teacher.arch, _shape(kind.teacher)[0], data.in_channels, kind.teacher.width)
    step = build_step(cfg, teacher, device, data=data, stages=[kind.stage] if kind.stage >= 0 else [])

    def sync() -> None:
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)

    if kind.stage < 0:
        batches = eval_batches(data, memory_format=step.memory_format)[:EVAL_ROUND_BATCHES]

        def score() -> None:
            step.evaluate(batches)  # its one host sync at the end, as at an evaluation point

        return Work(score, float(sum(int(y.numel()) for _, y in batches)), sync)

    stage = step.stages[kind.stage]
    stage.objective.active().__enter__()  # the stage's hooks stay on for as long as the work runs
    check = step.check_every == 1  # train_run's divergence check, a sync per step on the CPU

    def run() -> None:
        stage.train(0.0, check)

    return Work(run, 1.0, sync)


def interleaved_times(works: list[Work], rounds: int,
                      clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Seconds of one call of each work in each of ``rounds`` rounds. A round calls every work once,
    in turn, so that a slow spell of the machine (another process, the host) falls on every kind alike
    and the median over rounds leaves it out, rather than making one kind slow."""
    out: list[list[float]] = [[] for _ in works]
    for _ in range(rounds):
        for times, w in zip(out, works):
            w.sync()
            t0 = clock()
            w.run()
            w.sync()
            times.append(clock() - t0)
    return out


def median(values: Iterable[float]) -> float:
    """The median (the mean of the middle two of an even count); a single slow round, when another
    process took the CPU for a moment, does not move it."""
    xs = sorted(values)
    if not xs:
        raise ValueError("median of no values")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _time_kinds(kinds: list[Kind], load: _Alongside | None = None,
                clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds per training step of each kind (per evaluated image for an evaluation): the median of
    CALIBRATION_ROUNDS interleaved rounds after WARMUP_STEPS untimed calls, while ``load`` runs the
    same kinds in its processes."""
    works = [_workload(k) for k in kinds]
    for w in works:
        for _ in range(WARMUP_STEPS):
            w.run()
        w.sync()
    if load is not None:
        load.wait_ready()
    rounds = interleaved_times(works, CALIBRATION_ROUNDS, clock)
    return [median(times) / w.units for times, w in zip(rounds, works)]


# ---------------------------------------------------------------- the other trials, while calibrating


_READY = b"fspbench-estimate-load-ready"


def load_worker(threads: int) -> None:
    """Body of a process that loads the machine as a grid's other trials would (``_Alongside``): each
    line on stdin is a pickled list of kinds in hex (an empty line or the end of input: exit); it builds
    their work, runs each once, prints _READY and calls them in turn until the next line comes."""
    import pickle
    import select
    import sys

    import torch

    torch.set_num_threads(threads)
    stdin = sys.stdin.buffer
    line = stdin.readline().strip()
    while line:
        works = [_workload(k) for k in pickle.loads(bytes.fromhex(line.decode()))]
        for w in works:
            w.run()
        sys.stdout.buffer.write(_READY + b"\n")
        sys.stdout.flush()
        busy = True
        while busy:
            for w in works:
                w.run()
                if select.select([stdin], [], [], 0)[0]:
                    busy = False
                    break
        line = stdin.readline().strip()


class _Alongside:
    """``copies`` processes, each at ``threads`` threads, that run the kinds being timed, in turn, while
    they are timed: the other trials a grid runs at once on this machine. Any failure (a process that
    does not start, or dies) ends them all, and ``ok`` turns False: the kinds were then timed alone."""

    def __init__(self, copies: int, threads: int) -> None:
        import subprocess
        import sys

        code = f"from fspbench.estimate import load_worker; load_worker({int(threads)})"
        self.procs: list[Any] = []
        self.ok = copies > 0
        try:
            for _ in range(copies):
                self.procs.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        except OSError:  # no process to spare: time the kinds alone
            self.close()

    def start(self, kinds: list[Kind]) -> None:
        """Tell every process to run ``kinds`` now (each builds them meanwhile; wait_ready waits)."""
        import pickle

        line = pickle.dumps(kinds).hex().encode() + b"\n"
        for p in self.procs:
            try:
                assert p.stdin is not None
                p.stdin.write(line)
                p.stdin.flush()
            except (OSError, ValueError):
                self.close()

    def wait_ready(self) -> None:
        """Until every process runs the kinds asked for (at most LOAD_TIMEOUT_S in all)."""
        import select

        deadline = time.monotonic() + LOAD_TIMEOUT_S
        for p in list(self.procs):
            assert p.stdout is not None
            fd, seen = p.stdout.fileno(), b""
            while self.ok and _READY not in seen:
                left = deadline - time.monotonic()
                chunk = os.read(fd, 4096) if left > 0 and select.select([fd], [], [], left)[0] else b""
                if not chunk:  # timed out, or the process ended
                    self.close()
                seen = seen[-len(_READY):] + chunk

    def close(self) -> None:
        self.ok = False
        for p in self.procs:
            try:
                if p.stdin is not None:
                    p.stdin.close()  # the process ends at the end of its input
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001 - whatever it is, the process must go
                p.kill()
                p.wait()
        self.procs = []


@dataclass
class Calibration:
    """Measured seconds per step (per image for evaluations) of each kind, on one machine."""

    machine: str
    seconds: dict[str, float]
    measured_s: float  # time spent measuring now (0 when every kind came from the cache)
    measured: int  # kinds measured now
    cached: int  # kinds read from the cache
    alongside: int = 0  # copies of each kind's work that ran in other processes while it was timed
    fixed_scale: float = 1.0  # this machine's fixed costs (start-ups, overheads) over the reference's


def calibrate(kinds: Iterable[Kind], threads: int, alongside: int = 0) -> Calibration:
    """Time every kind not in this machine's cache, at ``threads`` torch threads, while ``alongside``
    other processes run the same work (a grid's other trials on this machine); update the cache.

    A kind some grid on this machine has run takes its measured seconds (``GRID_PREFIX``, written by
    fspbench.measured). A kind timed while other processes kept the machine busy (more than BUSY_CORES
    of other CPU, ``BUSY_PREFIX``) is timed again, and the faster of the two timings kept: another
    process's load only ever slows a step down.
    """
    import torch

    from fspbench.step import resolve_device

    by_key = {k.key: k for k in kinds}
    device = next(iter(by_key.values())).cfg.device if by_key else "cpu"

    machine = machine_key(resolve_device(device).type, threads, alongside)
    known: dict[str, float] = dict(_read_cache().get(machine, {}))
    todo = [k for key, k in by_key.items() if GRID_PREFIX + key not in known
            and (key not in known or (known.get(BUSY_PREFIX + key, 0.0) > BUSY_CORES
                                      and (machine, key) not in _TIMED_HERE))]
    _TIMED_HERE.update((machine, k.key) for k in todo)
    t0 = time.perf_counter()
    if todo:
        load = OtherLoad()
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        alongside_load = _Alongside(alongside, threads) if alongside > 0 else None
        timed: dict[str, float] = {}
        try:
            for i in range(0, len(todo), KINDS_AT_ONCE):
                group = todo[i:i + KINDS_AT_ONCE]
                if alongside_load is not None:
                    alongside_load.start(group)
                timed.update(zip((k.key for k in group), _time_kinds(group, alongside_load)))
        finally:
            torch.set_num_threads(before)
            # else some kinds were timed alone: not what the key says
            complete = alongside_load is None or alongside_load.ok
            if alongside_load is not None:
                alongside_load.close()
        if complete:
            cache_update(machine, _faster(known, timed, load.cores()))
        known.update(_faster(known, timed, 0.0))
    if FIXED_SCALE_KEY not in known or (known.get(BUSY_PREFIX + FIXED_SCALE_KEY, 0.0) > BUSY_CORES
                                        and (machine, FIXED_SCALE_KEY) not in _TIMED_HERE):
        _TIMED_HERE.add((machine, FIXED_SCALE_KEY))
        # the fastest of a few: another process's load only ever slows an import down
        load = OtherLoad()
        scale = min(import_seconds() for _ in range(IMPORT_ROUNDS)) / REFERENCE_IMPORT_S
        entry = _faster(known, {FIXED_SCALE_KEY: scale}, load.cores())
        cache_update(machine, entry)
        known.update(entry)
    seconds = {key: known[GRID_PREFIX + key] if GRID_PREFIX + key in known else known[key] for key in by_key}
    fixed = known.get(GRID_PREFIX + FIXED_SCALE_KEY, known[FIXED_SCALE_KEY])
    return Calibration(machine, seconds, round(time.perf_counter() - t0, 2), len(todo), len(by_key) - len(todo),
                       alongside, fixed)


# (machine, kind key) timed by this process: a timing from a busy machine is taken again once per
# invocation, not at each of its estimates (a dry run estimates every look)
_TIMED_HERE: set[tuple[str, str]] = set()


def _faster(known: dict[str, float], timed: dict[str, float], busy: float) -> dict[str, float]:
    """Cache entries for ``timed`` (key -> seconds measured while other processes took ``busy`` cores):
    the faster of each kind's new timing and the one the cache holds, and the lesser of their loads (once a
    kind was timed on a quiet machine, a faster timing from a busy one is not a reason to time it again)."""
    out: dict[str, float] = {}
    for key, secs in timed.items():
        out[key] = min(secs, known.get(key, secs))
        out[BUSY_PREFIX + key] = round(min(busy, known.get(BUSY_PREFIX + key, busy)), 3)
    return out


class OtherLoad:
    """Cores' worth of CPU that processes other than this one and its waited-for children took since it
    was made (Linux's /proc/stat less this process's own CPU; 0 where /proc/stat cannot be read). Ray's
    own processes, when this process started them, count as other: they took the CPU too."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), machine_busy_s(), _own_cpu_s()

    def cores(self) -> float:
        busy = machine_busy_s()
        if busy is None or self.busy0 is None:
            return 0.0
        other = (busy - self.busy0) - (_own_cpu_s() - self.own0)
        return max(0.0, other) / max(1e-9, time.monotonic() - self.t0)


def machine_busy_s() -> float | None:
    """CPU seconds every process on this machine has used since boot (/proc/stat), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children it has waited for (the calibration's own load)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cache_update(machine: str, entries: dict[str, float]) -> None:
    """Add ``entries`` to ``machine``'s entry of the calibration cache (atomically; not at all where the
    cache cannot be written: the estimate still stands, it is only not cached)."""
    cache = _read_cache()  # another process may have added kinds meanwhile
    cache[machine] = {**cache.get(machine, {}), **entries}
    try:
        atomic_write_json(cache_path(), cache)
    except OSError:  # a read-only home
        pass


def cached(machine: str) -> dict[str, float]:
    """``machine``'s entry of the calibration cache as it is now (empty when there is none)."""
    return dict(_read_cache().get(machine, {}))


def import_seconds() -> float:
    """Wall seconds of a fresh interpreter that imports torch: what an invocation's start, Ray's, a trial
    actor's and a trial's set-up are mostly made of (imports, Python at start-up speed), so the measure of
    how this machine's fixed costs compare with the reference machine's."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- runs and the grid


def run_parts(run: GridRun, teachers: dict[str, RunConfig]) -> tuple[list[tuple[Kind, int]], Kind, list[int]]:
    """(stage kinds with their steps, the evaluation kind, images at each evaluation point) of a run."""
    cfg = run.config
    teacher = teachers.get(run.teacher_run_id)
    steps = [p.steps for p in stage_plans(cfg)]
    return (list(zip(stage_kinds(cfg, teacher), steps, strict=True)), eval_kind(cfg),
            [n for n, _ in eval_points(cfg)])


def grid_kinds(runs: list[GridRun], teachers: dict[str, RunConfig]) -> list[Kind]:
    out: dict[str, Kind] = {}
    for r in runs:
        stages, ev, _ = run_parts(r, teachers)
        for k, _ in stages:
            out.setdefault(k.key, k)
        out.setdefault(ev.key, ev)
    return list(out.values())


def run_seconds(run: GridRun, teachers: dict[str, RunConfig], seconds: dict[str, float],
                slowdown: float = 1.0, fixed_scale: float = 1.0) -> float:
    """Estimated trial seconds of one run (module docstring, step 2); ``slowdown`` scales its training
    and evaluation for the CPU that Ray's own processes take (``ray_slowdown``), ``fixed_scale`` its
    overheads (``Calibration.fixed_scale``)."""
    stages, ev, points = run_parts(run, teachers)
    train = sum(seconds[k.key] * n for k, n in stages)
    work = (train + seconds[ev.key] * sum(points)) * slowdown
    return work + (POINT_OVERHEAD_S * len(points) + TRIAL_OVERHEAD_S) * fixed_scale


def ray_slowdown(cores: float, busy: float, ray_cpu: float = RAY_CPU) -> float:
    """How much slower the trials' work runs beside Ray's processes: they take ``ray_cpu`` cores' worth
    of CPU, from the cores left idle first; ``busy`` cores (trials x threads) of ``cores`` are the trials'."""
    busy = min(busy, cores)
    if busy <= 0:
        return 1.0
    taken = min(max(0.0, ray_cpu - (cores - busy)), busy * 0.5)
    return busy / (busy - taken)


def simulate(runs: list[GridRun], seconds: dict[str, float], slots: int, first: Iterable[str] = (),
             actor_start_s: float = 0.0) -> float:
    """End time of ``runs`` on ``slots`` parallel slots, each run started in the order the grid's Tune
    searcher starts them (fspbench.schedule): a student once its teacher (if among ``runs``) has ended,
    then the ready run of highest chain priority; ``first`` (run ids already running) take their slots
    at time 0 whatever their priority. A run that finds no idle trial actor (Tune reuses an ended
    trial's actor) waits ``actor_start_s`` for a new one."""
    started = set(first)
    queue = ReadyRuns(runs, chain_priority(runs, lambda r: seconds[r.run_id]), running=started)
    slots = max(1, slots)
    now = 0.0
    running: list[tuple[float, str]] = []  # (end time, run id)
    actors = len(started & {r.run_id for r in runs})  # the runs already running have theirs
    while True:
        while len(running) < slots and (r := queue.pop()) is not None:
            start = now
            if len(running) >= actors:  # every actor is busy: a new one starts
                actors += 1
                start += 0.0 if r.run_id in started else actor_start_s
            heapq.heappush(running, (start + seconds[r.run_id], r.run_id))
        if not running:
            return now
        now, done = heapq.heappop(running)
        queue.ended(done)


@dataclass
class Estimate:
    """The time a grid's runs will take on this machine."""

    wall_s: float  # startup_s + the simulated schedule: the grid's wall time as grid.json measures it
    run_s: dict[str, float]  # run id -> estimated trial seconds
    slots: int
    threads: int
    calibration: Calibration
    startup_s: float = 0.0  # fixed costs: the calibration made now, Ray's start, the Tune run's start and end
    slowdown: float = 1.0  # the factor on the trials' work for the CPU Ray's processes take (ray_slowdown)
    fixed_startup_s: float = 0.0  # the fixed costs in startup_s at the reference machine's speed (x fixed_scale)

    @property
    def schedule_s(self) -> float:
        """The simulated schedule alone: the trials, from the first actor's start to the last trial's end."""
        return self.wall_s - self.startup_s

    def summary(self) -> dict[str, Any]:
        """What grid.json keeps of it."""
        return {"wall_time_s": round(self.wall_s, 1), "trial_time_s": round(sum(self.run_s.values()), 1),
                "startup_s": round(self.startup_s, 1), "schedule_s": round(self.schedule_s, 1),
                "runs": len(self.run_s), "slots": self.slots, "threads_per_trial": self.threads,
                "machine": self.calibration.machine, "calibration_s": self.calibration.measured_s,
                "kinds_measured": self.calibration.measured, "kinds_cached": self.calibration.cached,
                "alongside": self.calibration.alongside, "ray_slowdown": round(self.slowdown, 3),
                "fixed_cost_scale": round(self.calibration.fixed_scale, 3)}


def teacher_configs(bench: Benchmark) -> dict[str, RunConfig]:
    return {t.run_id: t.config for t in bench.teachers}


def ray_start_s() -> float:
    """Seconds of starting the local Ray: once per ``fspbench run`` that trains, before its first Tune run."""
    return RAY_START_S


def tune_run_startup_s() -> float:
    """Fixed seconds of one more Tune run in a process whose Ray is up: its set-up and end (its trial
    actors' starts are in the simulated schedule, ``simulate(actor_start_s=ACTOR_START_S)``)."""
    return TUNE_START_S + TUNE_END_S


def per_machine(slots: int, request: dict[str, float]) -> int:
    """How many of ``slots`` concurrent trials run on this machine (the one calibrating): on a cluster
    the slots are spread over its nodes, each of which runs this many side by side."""
    from fspbench.cluster import this_machine

    here = sum(n.holds(request) for n in this_machine())
    return max(1, min(slots, here or 1))


def estimate_from(runs: list[GridRun], teachers: dict[str, RunConfig], cal: Calibration, slots: int,
                  threads: int, *, include_ray_start: bool = True, spent_s: float | None = None,
                  cores: float | None = None, on_cpu: bool = True) -> Estimate:
    """The estimate of ``runs`` from a calibration (module docstring, steps 2-4).

    ``include_ray_start``: the first Tune run of an invocation pays the invocation's start (PREPARE_S)
    and Ray's; later ones in the same process (another look at the grid) only their own
    (``tune_run_startup_s``). ``spent_s``: seconds the estimate itself took in this process, part of
    the grid's wall time (default: the calibration's). ``cores``: this machine's (os.cpu_count()),
    shared by the trials and Ray's processes when the trials run ``on_cpu``.
    """
    busy = min(slots, cal.alongside + 1) * threads  # the cores this machine's trials keep busy
    slowdown = ray_slowdown(float(cores or os.cpu_count() or 1), busy) if on_cpu else 1.0
    fixed = cal.fixed_scale
    run_s = {r.run_id: run_seconds(r, teachers, cal.seconds, slowdown, fixed) for r in runs}
    fixed_startup = tune_run_startup_s() + ((PREPARE_S + ray_start_s()) if include_ray_start else 0.0)
    startup = (cal.measured_s if spent_s is None else spent_s) + fixed_startup * fixed
    schedule = simulate(runs, run_s, slots, actor_start_s=ACTOR_START_S * fixed)
    return Estimate(startup + schedule, run_s, slots, threads, cal, startup, slowdown, fixed_startup)


def ray_is_up() -> bool:
    """Whether this process is connected to Ray already (its Tune runs start no Ray of their own)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def estimate_grid(bench: Benchmark, runs: list[GridRun], slots: int, threads: int,
                  include_ray_start: bool | None = None) -> Estimate:
    """Calibrate (or read the cache) and simulate ``runs`` of ``bench`` on ``slots`` slots.

    Each kind is timed while as many processes run the grid's kinds alongside as the grid runs other
    trials at once on this machine. ``include_ray_start``: count the invocation's start and Ray's
    (True), or not (False: a further Tune run in the same process, whose estimate adds to the
    first's); None: count them unless this process is connected to Ray already (``ray_is_up``).
    """
    t0 = time.perf_counter()
    teachers = teacher_configs(bench)
    kinds = grid_kinds(runs, teachers)
    request = {"cpu": float(bench.resources["cpu"]), "gpu": float(bench.resources["gpu"])}
    cal = calibrate(kinds, threads, per_machine(slots, request) - 1)
    first = not ray_is_up() if include_ray_start is None else include_ray_start
    return estimate_from(runs, teachers, cal, slots, threads, include_ray_start=first,
                         spent_s=time.perf_counter() - t0, on_cpu=cal.machine.startswith("cpu|"))


def fmt_duration(seconds: float) -> str:
    """"1 h 02 min", "37 min 50 s", "45 s"."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
