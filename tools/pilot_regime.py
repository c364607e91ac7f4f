"""Pilot a preset's regime before its design is fixed: the regime checks only, never a comparison of FSP with scratch.

It trains, with ``fspbench train`` (no Ray; ``--jobs`` processes of one thread), each pilot seed's teacher on the
student's own training subset and the students whose doubling gains and headroom the regime checks need, on
seeds outside every preset's (900 + i), then prints per candidate full budget F:

- the doubling gain (2F minus F) of scratch and of FSP (stage 2), paired by seed, with its 90% interval (the
  two-sided convergence check: the interval within +-0.5 points);
- each teacher's lead over the scratch students at F (Welch, 90% interval): the headroom.

FSP and scratch at the same budget are never set against each other here; the records (in --out) hold every
accuracy, and the committed pilot folder keeps them with the command that made them.

    python tools/pilot_regime.py --out results/pilot-default --seeds 6 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

from fspbench.config import config_from_dict, parse_set

PILOT_SEED = 900  # the pilot's seeds start here: no preset reaches it (max_seeds <= 30, teachers 100,000 + i)
COMMON = {"task": "fashion-mnist", "augment": "false", "batch_size": "64", "lr": "0.05", "image_size": "14",
          "eval_subset": "1000", "threads": "1"}
# (group, student settings, teachers {name: settings}, candidate full budgets F, FSP stage 1 per F)
GROUPS = {
    "main": ({"train_per_class": "100"},
             {"t8": {"arch": "resnet8", "steps": "840"}, "t14": {"arch": "resnet14", "steps": "840"}},
             (840,)),
    "cross": ({"train_per_class": "100", "classes": "[5,6,7,8,9]"},
              {"t8_04": {"arch": "resnet8", "steps": "210", "train_per_class": "500", "classes": "[0,1,2,3,4]"}},
              (420,)),
}


def _train(settings: dict[str, str], out: Path) -> Path:
    """One ``fspbench train`` run; returns its record. A finished record of the same run id is kept (run ids
    are content hashes), so an interrupted pilot resumes."""
    merged = {**COMMON, **settings}
    cfg = config_from_dict(parse_set([f"{k}={v}" for k, v in merged.items()]), source="pilot")
    teacher = Path(merged["teacher"]).stem if merged.get("teacher") else ""
    done_record = out / f"{cfg.run_id(teacher)}.json"
    if done_record.is_file():
        return done_record
    args = [sys.executable, "-m", "fspbench.cli", "train", "--quiet", "--out", str(out)]
    for k, v in merged.items():
        args += ["--set", f"{k}={v}"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done_record.is_file():
        raise RuntimeError(f"{' '.join(args)}\n{done.stderr[-2000:]}")
    return done_record


def _acc(record: Path) -> float:
    return 100 * float(json.loads(record.read_text())["final"]["test_acc"])


def _interval(d: np.ndarray, level: float = 0.90) -> tuple[float, float, float]:
    m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    h = float(stats.t.ppf(0.5 + level / 2, len(d) - 1)) * se
    return m, m - h, m + h


def _welch(a: np.ndarray, b: np.ndarray, level: float = 0.90) -> tuple[float, float, float]:
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return float(a.mean() - b.mean()), float(ci.low), float(ci.high)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/pilot-default")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [PILOT_SEED + i for i in range(a.seeds)]
    acc: dict[tuple[str, str, int, int], float] = {}
    with ThreadPoolExecutor(a.jobs) as pool:
        for group, (student, teachers, budgets) in GROUPS.items():
            base = {**student, "arch": "resnet8"}
            t_runs = {(t, s): pool.submit(_train, {**base, **ts, "seed": str(100_000 + s), "subset_seed": str(s),
                                                   "role": "teacher"}, out)
                      for t, ts in teachers.items() for s in seeds}
            jobs = {}
            for s in seeds:
                for f in budgets:
                    for steps in (f, 2 * f):
                        jobs[(group, "scratch", steps, s)] = pool.submit(
                            _train, {**base, "method": "scratch", "seed": str(s), "subset_seed": str(s),
                                     "steps": str(steps)}, out)
            first = next(iter(teachers))
            for s in seeds:
                teacher = t_runs[(first, s)].result()
                for f in budgets:
                    for steps in (f, 2 * f):
                        jobs[(group, "fsp", steps, s)] = pool.submit(
                            _train, {**base, "method": "fsp", "seed": str(s), "subset_seed": str(s),
                                     "steps": str(steps), "init_steps": str(f // 3), "teacher": str(teacher)}, out)
            for (t, s), fut in t_runs.items():
                acc[(group, t, 0, s)] = _acc(fut.result())
            for key, fut in jobs.items():
                acc[key] = _acc(fut.result())
    _print(acc, seeds)


def _print(acc: dict[tuple[str, str, int, int], float], seeds: list[int]) -> None:
    print(f"pilot seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); 90% intervals, points")
    for group, (_, teachers, budgets) in GROUPS.items():
        for f in budgets:
            for m in ("scratch", "fsp"):
                d = np.array([acc[(group, m, 2 * f, s)] - acc[(group, m, f, s)] for s in seeds])
                est, lo, hi = _interval(d)
                ok = "within" if -0.5 < lo and hi < 0.5 else "NOT within"
                print(f"{group} F={f}: doubling {m}: {est:+.2f} [{lo:+.2f}, {hi:+.2f}] ({ok} +-0.5)")
            scratch = np.array([acc[(group, "scratch", f, s)] for s in seeds])
            for t in teachers:
                est, lo, hi = _welch(np.array([acc[(group, t, 0, s)] for s in seeds]), scratch)
                print(f"{group} F={f}: headroom {t} minus scratch: {est:+.2f} [{lo:+.2f}, {hi:+.2f}]")


if __name__ == "__main__":
    main()
