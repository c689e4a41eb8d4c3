"""Guarded updates end to end: NaN gradients rejected and counted per worker in the simulator and the
runtime alike (replays stay exact), the staleness cap, and divergence stopping a run with its checkpoint."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_trees_close, one_line_error, run_cli, run_runtime, sgd_server, simulate

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.delays import DelayModel
from asgdjax.sim import make_schedule
from asgdjax.train.task import ClassificationTask


@dataclasses.dataclass(frozen=True)
class PoisonedTask(ClassificationTask):
    """A fault injector: any batch holding example `poison` yields a NaN gradient."""

    poison: int = 0

    def grad(self, params, data, indices, key):
        loss, g = super().grad(params, data, indices, key)
        hit = jnp.any(indices == self.poison)
        return loss, jax.tree.map(lambda x: jnp.where(hit, jnp.nan, x), g)


def test_nan_gradients_are_rejected_in_runtime_and_simulator_alike(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4)
    # Worker 2's first batch (every worker computes its step 0, whatever the timing) holds the poison.
    from helpers import sampler

    first = int(sampler(int(data["train_y"].shape[0]), 4).batch(2, 0)[0])
    bad = PoisonedTask(task.model, task.spec, False, poison=first)
    make = sgd_server(num_workers=4)
    server, trace, _, p0, _ = run_runtime(bad, data, spec, 40, make_server=make)
    assert server.rejected[:, 0].tolist() == [0, 0, 1, 0]  # worker 2's poisoned gradient, once
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(server.params))
    replay, _, _ = simulate(bad, data, trace, spec=spec, make_server=make, p0=p0)
    assert replay.server.rejected.tolist() == server.rejected.tolist()
    assert_trees_close(replay.server.params, server.params, atol=1e-6)


def test_staleness_cap_counts_the_dropped_gradients(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4)
    trace = make_schedule(jax.random.key(3), spec, num_steps=60, delays=DelayModel("exponential"))
    st, _, _ = simulate(task, data, trace, spec=spec, make_server=sgd_server(num_workers=4, cap=2))
    assert int(st.server.rejected[:, 1].sum()) == int((trace.staleness > 2).sum()) > 0


@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    common = ["--config.learning_rate=50", "--config.log_every=20", "--config.checkpoint_every=20", "--workdir=run"]
    common += ["--config.model=mlp"]

    def train(*args):
        return run_cli("train", [*common, *args, "--noprogress"], tmp_path)

    # 20 steps with the guard off leave a checkpoint at step 20; resuming with the guard on must stop at
    # the next log (the loss has exploded) and keep that checkpoint, writing no later one.
    assert train("--config.steps=20", "--config.max_train_loss=1e38").returncode == 0
    out = train("--config.steps=400")
    err = one_line_error(out, code=3)
    assert err.startswith("asgdjax-train: stopped: the run diverged at step 40")
    assert "the last good checkpoint (step 20) is kept" in err
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 40 and records[-1].get("diverged") is True
    assert sorted(int(p) for p in os.listdir(tmp_path / "run" / "checkpoints") if p.isdigit()) == [20]


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path):
    common = ["--config.checkpoint_every=20", "--workdir=run", "--noprogress", "--config.model=mlp"]
    assert run_cli("train", ["--config.steps=40", *common], tmp_path).returncode == 0
    for path in (tmp_path / "run" / "checkpoints" / "40").rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(b"\0" * 16)
    out = run_cli("train", ["--config.steps=60", *common], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from the previous checkpoint 20" in out.stderr
    assert (tmp_path / "run" / "checkpoints" / "damaged-40").exists()  # kept, not deleted
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from_step"] == 20 and summary["steps"] == 60


@pytest.mark.slow
def test_a_corrupt_only_checkpoint_is_one_clear_line_and_nothing_is_overwritten(tmp_path):
    common = ["--config.checkpoint_every=40", "--workdir=run", "--noprogress", "--config.model=mlp"]
    assert run_cli("train", ["--config.steps=40", *common], tmp_path).returncode == 0
    damaged = 0
    for path in (tmp_path / "run" / "checkpoints" / "40").rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(b"\0" * 16)
            damaged += 1
    assert damaged
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    last = one_line_error(run_cli("train", ["--config.steps=60", *common], tmp_path))
    assert last.startswith("asgdjax-train: error: checkpoint") and "cannot be restored" in last
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
