"""A method from another installed package: registered through the ``fspbench.methods`` entry-point group,
with no change to fspbench, and run by ``fspbench train`` and in a grid on a real local Ray."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from helpers import run_cli

PLUGIN = '''
"""Label smoothing (Szegedy et al. 2016) as an fspbench method: cross-entropy on smoothed targets."""
from fspbench.methods import Method, main_stage, register


@register
class LabelSmoothing(Method):
    name = "smooth"
    label = "label smoothing"
    settings = {"epsilon": 0.1}

    def plan(self, cfg):
        return [main_stage(cfg, "ce_smooth")]

    def objective(self, plan, ctx):
        import torch.nn.functional as F
        from fspbench.objectives import Objective

        eps, student = float(self.option(ctx.cfg, "epsilon")), [ctx.student]

        class Smoothed(Objective):
            def forward(self, x, y, progress):
                return F.cross_entropy(student[0](x), y, label_smoothing=eps)

        return Smoothed()
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """A folder on PYTHONPATH holding the plug-in's module and its installed metadata (a dist-info)."""
    site = tmp_path / "site"
    info = site / "example_fspbench_method-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "example_fspbench_method.py").write_text(textwrap.dedent(PLUGIN))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example-fspbench-method\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fspbench.methods]\nsmooth = example_fspbench_method\n")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}


def test_without_the_plugin_the_method_is_unknown(tmp_path: Path) -> None:
    res = run_cli("train", "--set", "method=smooth", "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "method: expected one of fsp, scratch, kd, fitnet, at" in res.stderr + res.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_plugin_method_trains_through_the_cli(plugin_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("train", "--set", "method=smooth", "--set", "options.epsilon=0.2", "--set", "arch=resnet8",
                  "--set", "steps=30", "--set", "train_per_class=50", "--set", "batch_size=32",
                  "--set", "eval_every=15", "--set", "eval_subset=200", "--out", str(out), env=plugin_env)
    assert res.returncode == 0, res.stdout + res.stderr
    (path,) = out.glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "ok" and rec["config"]["method"] == "smooth"
    assert rec["config"]["options"] == {"epsilon": 0.2}
    bad = run_cli("train", "--set", "method=smooth", "--set", "options.epsilo=0.2", "--out", str(tmp_path / "x"),
                  env=plugin_env)
    assert bad.returncode == 2 and "did you mean options.epsilon" in bad.stderr + bad.stdout


GRID = '''
name = "plugin"

[defaults]
task = "fashion-mnist"
train_per_class = 50
batch_size = 32
eval_every = 10
eval_subset = 200

[resources]
cpu = 1
gpu = 0.0

[teachers.t8]
arch = "resnet8"
seeds = [0]
steps = 20

[students.s]
teacher = "t8"
methods = ["fsp", "scratch", "smooth"]
archs = ["resnet8"]
seeds = [0, 1]
budgets = [10]
init_steps = 10
method_settings = { smooth = { options = { epsilon = 0.3 } } }
'''


@pytest.mark.slow
def test_a_plugin_method_runs_in_a_grid_and_its_report(plugin_env: dict[str, str], tmp_path: Path) -> None:
    bench = tmp_path / "plugin.toml"
    bench.write_text(GRID)
    results, report = tmp_path / "results", tmp_path / "report"
    res = run_cli("run", str(bench), "--results", str(results), env=plugin_env)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    smooth = [r for r in recs if r["config"]["method"] == "smooth"]
    assert len(recs) == 7 and len(smooth) == 2
    assert all(r["status"] == "ok" and r["config"]["options"] == {"epsilon": 0.3} for r in smooth)
    assert all(r["config"]["teacher"] == "" for r in smooth)  # it needs no teacher, so it gets none
    res = run_cli("report", str(results), "--out", str(report), env=plugin_env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "smooth" in (report / "report.md").read_text()
