"""The edges of bad input, through the real command: each is refused with one line and exit 2 before anything
trains, leaving nothing behind, or simply works (a byte order mark).

Groups: a UTF-8 byte order mark in a TOML file; an S3 location with '.' or '..' in its prefix or an invalid
bucket name; sizes above their bounds (width, image_size, steps, ...); --out / --results that cannot be a
folder; a run record the report cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import CLUSTER_BENCH, run_cli

from fspbench.config import MAX_SIZES, MAX_WIDTH, cifar_resnet_params, load_config_file
from fspbench.grid import available_benchmarks, load_benchmark
from fspbench.store import ObjectPath, bucket_problem, location

ROOT = Path(__file__).resolve().parent.parent
TINY_BENCH = str(Path(CLUSTER_BENCH).with_name("tiny.toml"))
BOM = b"\xef\xbb\xbf"
# a run that trains in seconds: resnet8 on 10 images per class
QUICK_CONFIG = ('arch = "resnet8"\nsteps = 4\ntrain_per_class = 10\nbatch_size = 8\neval_every = 2\n'
                'eval_subset = 100\ndevice = "cpu"\n[fsp]\npool = "avg"\n')


def refused(res: subprocess.CompletedProcess, *words: str) -> str:
    """The one line of a refusal: exit 2, no traceback, every one of ``words`` in it."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def crlf_with_bom(text: str) -> bytes:
    """``text`` as a Windows editor saves it: a UTF-8 byte order mark and CRLF line ends."""
    return BOM + text.replace("\n", "\r\n").encode()


# ---------------------------------------------------------------- a byte order mark is read past


def test_a_byte_order_mark_is_read_past_by_every_toml_reader(tmp_path: Path) -> None:
    """A config file and a benchmark file with a BOM read as the same files without it."""
    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_text(QUICK_CONFIG)
    marked.write_bytes(crlf_with_bom(QUICK_CONFIG))
    assert load_config_file(str(marked)) == load_config_file(str(plain))

    bench_text = Path(TINY_BENCH).read_text()
    (tmp_path / "plain_bench.toml").write_text(bench_text)
    (tmp_path / "marked_bench.toml").write_bytes(crlf_with_bom(bench_text))
    ids = [[r.run_id for r in load_benchmark(str(tmp_path / f"{k}_bench.toml"), tmp_path / "R").runs]
           for k in ("plain", "marked")]
    assert ids[0] == ids[1] and len(ids[0]) == 3
    # the text kept for the registration parses as TOML again (grid.json's copy has no mark)
    assert not load_benchmark(str(tmp_path / "marked_bench.toml"), tmp_path / "R").text.startswith("\ufeff")
    assert not (tmp_path / "R").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "run --dry-run"])
def test_a_file_with_a_byte_order_mark_simply_works(command: str, tmp_path: Path) -> None:
    """What a Windows editor saves (BOM, CRLF) trains (`fspbench train`) and plans (`fspbench run --dry-run`)."""
    if command == "train":
        cfg = tmp_path / "run.toml"
        cfg.write_bytes(crlf_with_bom(QUICK_CONFIG))
        res = run_cli("train", str(cfg), "--out", str(tmp_path / "out"), "--quiet")
        assert res.returncode == 0, res.stdout + res.stderr
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
        assert record["status"] == "ok" and record["config"]["steps"] == 4 and record["config"]["fsp"]["pool"] == "avg"
    else:
        bench = tmp_path / "tiny.toml"
        bench.write_bytes(crlf_with_bom(Path(TINY_BENCH).read_text()))
        res = run_cli("run", str(bench), "--results", str(tmp_path / "R"), "--dry-run")
        assert res.returncode == 0, res.stdout + res.stderr
        assert all(r.run_id in res.stdout for r in load_benchmark(TINY_BENCH, tmp_path / "R").runs)
        assert not (tmp_path / "R").exists()


# ---------------------------------------------------------------- S3 locations


BAD_LOCATIONS = [
    (["run", "smoke", "--results", "s3://bkt/a/../../x", "--dry-run"], ["--results", "'..' segment"]),
    (["run", "smoke", "--results", "s3://bkt/./x"], ["--results", "'.' segment"]),
    (["report", "s3://bkt/runs/.."], ["RESULTS_DIR", "'..' segment"]),
    (["run", "smoke", "--results", "s3://UPPER_Bucket/x", "--dry-run"],
     ["invalid bucket name 'UPPER_Bucket'", "upper-case letters and '_'", "3-63 lowercase letters"]),
    (["run", "smoke", "--results", "s3://ab/x"], ["invalid bucket name 'ab'", "2 characters"]),
    (["run", "smoke", "--results", f"s3://{'b' * 64}/x"], ["invalid bucket name", "64 characters"]),
    (["run", "smoke", "--results", "s3://-bucket/x"], ["invalid bucket name '-bucket'", "start and end"]),
    (["run", "smoke", "--results", "s3://my..bucket/x"], ["invalid bucket name 'my..bucket'", "two dots"]),
    (["report", "s3://192.168.5.4/x"], ["invalid bucket name '192.168.5.4'", "IP address"]),
    (["submit", "smoke", "--address", "http://127.0.0.1:1", "--results", "s3://Bucket/x"],
     ["invalid bucket name 'Bucket'"]),
]


@pytest.mark.parametrize("args,words", BAD_LOCATIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_LOCATIONS])
def test_a_bad_s3_location_is_one_line_before_anything_runs(args: list[str], words: list[str],
                                                           tmp_path: Path) -> None:
    """Refused when the location is parsed: no server is asked, nothing is made here (no folder named "s3:")."""
    refused(run_cli(*args, cwd=tmp_path), *words)
    assert list(tmp_path.iterdir()) == []


def test_valid_s3_locations_still_parse() -> None:
    """The checks refuse only what S3 refuses: dots and hyphens inside a name, '..' inside a segment."""
    assert location("s3://fspbench-0a1b.results/grids/default/") == ObjectPath("fspbench-0a1b.results",
                                                                               "grids/default")
    assert location("s3://abc/a..b/x") == ObjectPath("abc", "a..b/x")
    assert location("s3://abc") == ObjectPath("abc", "")
    assert [bucket_problem(n) for n in ("abc", "a" * 63, "1-2.3", "my.bucket-1")] == [None] * 4


# ---------------------------------------------------------------- sizes and their bounds


BAD_SIZES = [
    (["--set", "width=100000"], ["--set: width: expected at most 64", "PB to train", "resnet20 of width 100,000"]),
    (["--set", "width=65", "--set", "arch=resnet8"], ["width: expected at most 64", "GB to train"]),
    (["--set", "arch=resnet2000"], ["arch: resnet2000 is deeper than resnet1202"]),
    (["--set", "image_size=100000"], ["image_size: expected at most 1,024"]),
    (["--set", "batch_size=1000000"], ["batch_size: expected at most 65,536"]),
    (["--set", "steps=100000000000"], ["steps: expected at most 10,000,000"]),
    (["--set", "init_steps=100000000"], ["init_steps: expected at most 10,000,000"]),
    (["--set", "eval_every=100000000"], ["eval_every: expected at most 10,000,000"]),
    (["--set", "train_per_class=100000000"], ["train_per_class: expected at most 10,000,000"]),
    (["--set", "eval_subset=100000000"], ["eval_subset: expected at most 10,000,000"]),
    (["--set", "threads=100000"], ["threads: expected at most 4,096"]),
    (["--set", "seed=100000000000000000000"], ["seed: expected at most 9,223,372,036,854,775,807"]),
    (["--set", "subset_seed=18446744073709551616"], ["subset_seed: expected at most"]),
]


@pytest.mark.parametrize("args,words", BAD_SIZES, ids=[" ".join(a[1::2]) for a, _ in BAD_SIZES])
def test_a_size_above_its_bound_is_one_line_before_anything_trains(args: list[str], words: list[str],
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    refused(run_cli("train", *args, "--out", str(out), "--quiet"), *words)
    assert not out.exists()


@pytest.mark.parametrize("table,expected", [
    ("[defaults]\nwidth = 100000\n", "defaults.width: expected at most 64"),
    ("[teachers.t8]\nimage_size = 4096\n", "teachers.t8.image_size: expected at most 1,024"),
    ("[students.s]\nbudgets = [100000000]\n", "students.s.budgets: expected at most 10,000,000"),
])
def test_a_benchmark_size_above_its_bound_names_its_key(table: str, expected: str, tmp_path: Path) -> None:
    """The same bounds in a benchmark file, named by their key path there; nothing is written under --results."""
    text = Path(TINY_BENCH).read_text()
    head, _, key_value = table.partition("\n")
    key = key_value.split(" = ")[0]
    # the tiny benchmark with that key set in that table (replacing the table's own value, if it has one)
    lines = text.splitlines()
    at = lines.index(head) + 1
    lines = lines[:at] + [key_value.strip()] + [ln for ln in lines[at:] if not ln.startswith(f"{key} =")]
    bench = tmp_path / "big.toml"
    bench.write_text("\n".join(lines) + "\n")
    refused(run_cli("run", str(bench), "--results", str(tmp_path / "R")), "big.toml", expected)
    assert not (tmp_path / "R").exists()


def test_the_presets_are_within_the_bounds(tmp_path: Path) -> None:
    """Every preset loads (its every run passes the bounds), with room to spare: the widest is far below 64."""
    names = available_benchmarks()
    assert {"default", "paper", "full"} <= set(names)
    widths, steps = set(), set()
    for name in names:
        for run in load_benchmark(name, tmp_path / name).runs:
            widths.add(run.config.width)
            steps.add(run.config.steps)
    assert max(widths) * 4 <= MAX_WIDTH and max(steps) * 10 <= MAX_SIZES["steps"][0]


@pytest.mark.parametrize("arch,width,in_channels,classes", [
    ("resnet8", 1, 1, 10), ("resnet20", 1, 3, 10), ("resnet20", 3, 1, 5), ("resnet32", 4, 3, 100),
])
def test_the_parameter_count_of_a_refusal_is_the_networks(arch: str, width: int, in_channels: int,
                                                          classes: int) -> None:
    """The count the width's refusal names is what models.CifarResNet really has (0.27M for a resnet20)."""
    from fspbench.models import build_model

    model = build_model(arch, classes, in_channels, width)
    real = sum(p.numel() for p in model.parameters())
    assert cifar_resnet_params(int(arch[6:]), width, in_channels, classes) == real
    if (arch, width, in_channels) == ("resnet20", 1, 3):
        assert 270_000 < real < 275_000


# ---------------------------------------------------------------- --out / --results that cannot be a folder


def _not_a_folder(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """(the path to pass, the path the refusal names): an existing file, or a folder under one."""
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me\n")
    return (blocker, blocker) if case == "file" else (blocker / "sub" / "dir", blocker)


OUT_CASES = [
    ("train", "file"), ("train", "under-a-file"), ("run", "file"), ("run", "under-a-file"),
    ("run --dry-run", "file"), ("report", "file"), ("report", "under-a-file"),
]


@pytest.mark.parametrize("command,case", OUT_CASES, ids=[f"{c}-{k}" for c, k in OUT_CASES])
def test_out_or_results_that_cannot_be_a_folder_is_refused_at_the_start(command: str, case: str,
                                                                         tmp_path: Path) -> None:
    """Refused before the config is trained, the grid planned or the report analysed; the file is untouched."""
    path, named = _not_a_folder(tmp_path, case)
    if command == "train":
        args = ["train", "--set", "arch=resnet8", "--out", str(path), "--quiet"]
        flag = "--out"
    elif command.startswith("run"):
        args = ["run", TINY_BENCH, "--results", str(path), *command.split()[1:]]
        flag = "--results"
    else:  # the --out check comes before the results are read, so a missing results folder is not what is said
        args = ["report", str(tmp_path / "R"), "--out", str(path)]
        flag = "--out"
    refused(run_cli(*args, cwd=tmp_path), flag, "cannot write there", f"{named} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert (tmp_path / "blocker").read_text() == "keep me\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_out_in_a_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        refused(run_cli("train", "--set", "arch=resnet8", "--out", str(locked / "o"), "--quiet"),
                "--out", "not a writable folder")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- a record the report cannot read


@pytest.fixture
def default_results(tmp_path: Path) -> Path:
    """A copy of the committed default results without their weights (the report reads none)."""
    src = ROOT / "results" / "default"
    if not (src / "grid.json").is_file():
        pytest.skip("results/default is not committed in this checkout")
    dst = tmp_path / "default"
    dst.mkdir()
    shutil.copytree(src / "runs", dst / "runs")
    for name in ("runs.parquet", "grid.json"):
        shutil.copy2(src / name, dst / name)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "a JSON list"])
def test_an_unreadable_record_says_how_to_mend_it(damage: str, default_results: Path, tmp_path: Path) -> None:
    """The report names the record and what to do: rerun the grid into that folder (which trains the run again),
    or restore the file; no report is written."""
    record = sorted((default_results / "runs").glob("*.json"))[0]
    data = record.read_bytes()
    record.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"[" + data + b"]")
    out = tmp_path / "report"
    refused(run_cli("report", str(default_results), "--out", str(out)), str(record),
            f"rerun `fspbench run BENCHMARK --results {default_results}` to train that run again",
            "or restore the file")
    assert not out.exists()
