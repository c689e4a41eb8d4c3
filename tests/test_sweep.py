"""Sweeps: the grid from the command line, points sharing a program run together (vmapped or one by one,
same results), resumable, one table and one picture, bad keys in one line."""

import csv
import json

import jax
import numpy as np
import pytest
from helpers import KEY, assert_trees_close, one_line_error, run_cli, sampler, sgd_server

from asgdjax.configs.default import get_config
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.errors import ConfigError
from asgdjax.sim import Simulator, make_schedule
from asgdjax.sim.sweep import Member, sweep
from asgdjax.sweep import grid, split_argv
from asgdjax.sweep.grid import apply, program_key
from asgdjax.train import tensorboard


@pytest.mark.slow
def test_a_4x4_grid_of_the_default_config_runs_from_the_command_line(tmp_path):
    args = ["--config.mode=sim", "--config.num_workers=4", "--config.steps=60", "--config.eval_every=30"]
    args += ["--config.warm_start_steps=0"]  # all four workers from the start: real staleness in 60 steps
    args += ["--sweep.learning_rate=0.02,0.05,0.1,0.2", "--sweep.momentum=0,0.5,0.9,0.95", "--workdir=sw"]
    out = run_cli("sweep", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert len(rows) == 16 and all(0 < r["final_test_accuracy"] <= 1 and r["staleness_mean"] > 0 for r in rows)
    assert {(r["learning_rate"], r["momentum"]) for r in rows} == {
        (lr, m) for lr in (0.02, 0.05, 0.1, 0.2) for m in (0.0, 0.5, 0.9, 0.95)
    }
    with open(tmp_path / "sw" / "sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == 16
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 10_000
    assert "point 1-16 of 16 (one simulated sweep)" in out.stderr  # one group: they share a program
    point = tmp_path / "sw" / "learning_rate=0.05,momentum=0.9"
    assert json.loads((point / "summary.json").read_text())["steps"] == 60 and (point / "trace.npz").exists()
    if tensorboard.available():  # where a lone run writes its event files (swept points wrote none)
        assert any((point / tensorboard.SUBDIR).iterdir())
    # Rerunning skips every finished point (nothing is recomputed) and rewrites the same table.
    again = run_cli("sweep", args, tmp_path)
    assert again.returncode == 0 and "point " not in again.stderr
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"] == rows


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "sim"])  # sync: each point through the trainer; sim: swept together
def test_a_diverging_point_is_a_result_and_the_sweep_goes_on(tmp_path, mode):
    """A learning-rate sweep whose largest value diverges: that row says where and why, the others finish,
    exit 0; rerunning reads the diverged point back instead of diverging again."""
    args = [f"--config.mode={mode}", "--config.model=mlp", "--config.steps=60", "--config.log_every=10"]
    args += ["--config.eval_every=30", "--sweep.learning_rate=0.05,50", "--workdir=sw"]
    out = run_cli("sweep", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["learning_rate"]: r for r in json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]}
    assert rows[0.05]["diverged_at"] is None and rows[0.05]["final_test_accuracy"] > 0.5
    assert rows[50.0]["final_test_accuracy"] is None and 0 < rows[50.0]["diverged_at"] <= 60
    summary = json.loads((tmp_path / "sw" / "learning_rate=50.0" / "summary.json").read_text())
    assert summary["diverged"] is True and summary["reason"].startswith("train_loss=")
    assert any("learning_rate" in line and "diverged_at" in line for line in out.stdout.splitlines())
    again = run_cli("sweep", args, tmp_path)
    assert again.returncode == 0 and "point " not in again.stderr and "diverged:" not in again.stderr


def test_vmapped_and_one_by_one_sweeps_agree(digits_task):
    task, data = digits_task
    k = 4
    spec = ProtocolSpec(num_workers=k, max_staleness=0)
    sim = Simulator(task, sgd_server(momentum=0.5), spec, strategy="sequential", chunk=2)
    n = int(data["train_y"].shape[0])
    members = [
        Member(
            task.init(jax.random.key(s)),
            make_schedule(jax.random.key(s), ProtocolSpec(num_workers=k, max_staleness=b), num_steps=24),
            {"learning_rate": lr},
            sampler(n, k, seed=s),
            KEY,
            (12,),
        )
        for s, b, lr in ((0, 0, 0.05), (1, 2, 0.1), (2, -1, 0.02))
    ]
    cuts: list = []
    one = sweep(sim, members, data, strategy="sequential", on_cut=lambda i, e, st, loss: cuts.append((i, e, len(loss))))
    together = sweep(sim, members, data, strategy="vmapped")
    for a, b in zip(one, together, strict=True):
        assert_trees_close(a.server.params, b.server.params, atol=1e-5)
    assert sorted(cuts) == sorted([(i, e, g) for i, m in enumerate(members) for e, g in _cut_counts(m.trace, 12)])


def _cut_counts(trace, cut):
    grads = np.cumsum(trace.step >= 0)
    return [(cut, int(grads[cut - 1])), (len(trace), int(grads[-1] - grads[cut - 1]))]


def test_points_that_share_a_program_are_grouped():
    base = get_config()
    base.mode, base.num_workers = "sim", 4
    same = [
        apply(base, p) for p in grid(base, [("learning_rate", "0.1,0.2"), ("seed", "0,1"), ("max_staleness", "1,2")])
    ]
    assert len({program_key(c) for c in same}) == 1
    with pytest.raises(ConfigError, match="--sweep.learning_rate='0.1,,0.2' has an empty entry"):
        grid(base, [("learning_rate", "0.1,,0.2")])
    with pytest.raises(ConfigError, match="--sweep.learning_rate gives '0.1' twice; give each value once"):
        grid(base, [("learning_rate", "0.1,0.1")])  # it ran as one point, silently
    with pytest.raises(ConfigError, match="--sweep.delay names a group of keys; sweep one of them"):
        grid(base, [("delay", "1,2")])
    with pytest.raises(ConfigError, match="--sweep.seed is given twice"):
        split_argv(["--sweep.seed=0", "--sweep.seed=1"])
    other = [apply(base, p) for p in grid(base, [("num_workers", "4,8")])]
    assert len({program_key(c) for c in other}) == 2
    unbounded = apply(base, grid(base, [("max_staleness", "-1")])[0])
    assert program_key(unbounded) != program_key(same[0])  # a group of 1 against a group of K


def test_bad_sweep_arguments_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--sweep.x="):
        split_argv(["prog", "--sweep.x="])
    with pytest.raises(ConfigError, match="unknown config key 'lerning_rate'"):
        grid(get_config(), [("lerning_rate", "0.1,0.2")])
    with pytest.raises(ConfigError, match="--sweep.num_workers value '2.5' is not allowed; use int"):
        grid(get_config(), [("num_workers", "2,2.5")])
    with pytest.raises(ConfigError, match=r"--sweep.learning_rate gives 0.1 twice \('0.1' and '0.10'\)"):
        grid(get_config(), [("learning_rate", "0.1,0.2,0.10")])  # two names of one point ran it once, silently
    err = one_line_error(run_cli("sweep", ["--sweep.num_workers=2,4", "--workdir=sw"], tmp_path))
    assert "--sweep.num_workers is read by mode=sim and mode=async only" in err and "identical points" in err
    err = one_line_error(run_cli("sweep", ["--sweep.steps=a,b", "--workdir=sw"], tmp_path))
    assert "--sweep.steps value 'a' is not allowed" in err
    err = one_line_error(run_cli("sweep", ["--workdir=sw"], tmp_path))
    assert "nothing to sweep" in err
    args = ["--config.dataset=mnist", f"--config.data_dir={tmp_path / 'tfds'}", "--sweep.seed=0,1", "--workdir=sw"]
    err = one_line_error(run_cli("sweep", args, tmp_path))  # before any point starts, nothing left behind
    assert "dataset 'mnist' is not prepared" in err and not (tmp_path / "sw").exists()
    args = ["--config.steps=10", "--config.eval_every=10", "--sweep.momentum=0.5", "--workdir=done", "--noprogress"]
    assert run_cli("sweep", args, tmp_path).returncode == 0
    err = one_line_error(run_cli("sweep", [*args, "--config.batch_size=16"], tmp_path))  # not read back as its own
    assert "holds a run with batch_size=32 (this config: 16)" in err


def test_every_point_is_checked_before_the_first_runs(tmp_path):
    """A later point whose batch cannot fit its worker's shard is refused before any point trains."""
    args = ["--config.mode=sim", "--config.steps=10", "--sweep.num_workers=1,64", "--workdir=sw"]
    err = one_line_error(run_cli("sweep", args, tmp_path))
    assert "exceeds a worker's shard of 22 examples (1438 examples / 64 workers)" in err
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_another_sweep_in_the_workdir_keeps_the_earlier_table_and_ignored_keys_are_noted(tmp_path):
    args = ["--config.steps=10", "--config.eval_every=10", "--workdir=sw", "--noprogress"]
    first = run_cli("sweep", [*args, "--sweep.momentum=0.5"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli("sweep", [*args, "--sweep.momentum=0.5,0.8"], tmp_path)  # extended: replaced, nothing lost
    assert again.returncode == 0 and not (tmp_path / "sw" / "sweep.1.json").exists()
    other = run_cli("sweep", [*args, "--sweep.learning_rate=0.1", "--config.num_workers=4"], tmp_path)
    assert other.returncode == 0, other.stderr[-2000:]
    assert "kept as" in other.stderr and "sweep.1.json (and its .csv, .png)" in other.stderr
    assert "note: --config.num_workers is read by mode=sim and mode=async only; this mode=sync run" in other.stderr
    kept = json.loads((tmp_path / "sw" / "sweep.1.json").read_text())["rows"]
    assert [r["momentum"] for r in kept] == [0.5, 0.8] and (tmp_path / "sw" / "sweep.1.png").exists()
    assert [r["learning_rate"] for r in json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]] == [0.1]


@pytest.mark.slow
def test_a_collapsed_point_says_so_in_its_summary_the_table_and_a_warning(tmp_path):
    """Points swept together get the trainer's collapse verdict (summary.json's health), shown in the table."""
    args = ["--config.mode=sim", "--config.num_workers=8", "--sweep.learning_rate=0.05,0.2"]
    out = run_cli("sweep", [*args, "--sweep.momentum=0.95", "--workdir=sw", "--noprogress"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["learning_rate"]: r for r in json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]}
    assert rows[0.05]["health"] == "ok" and rows[0.2]["health"] == "collapsed"
    summary = json.loads((tmp_path / "sw" / "learning_rate=0.2,momentum=0.95" / "summary.json").read_text())
    assert summary["health"]["status"] == "collapsed" and summary["health"]["reason"]
    assert "WARNING collapsed" in out.stderr and "learning_rate=0.2,momentum=0.95" in out.stderr
