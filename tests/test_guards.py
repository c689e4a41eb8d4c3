"""Guarded updates end to end: NaN gradients rejected and counted per worker in the simulator and the
runtime alike (replays stay exact), the staleness cap, and divergence stopping a run with its checkpoint."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from asgdjax.delays import DelayModel
from asgdjax.parallel import group_devices
from asgdjax.rules import plain
from asgdjax.runtime import Coordinator
from asgdjax.server import Server
from asgdjax.sim import Simulator, make_schedule, make_streams
from asgdjax.sim.protocol import Protocol
from asgdjax.train.task import Task

HP = {"learning_rate": 0.05}
KEY = jax.random.key(1)


@dataclasses.dataclass(frozen=True)
class PoisonedTask(Task):
    """A fault injector: any batch holding example `poison` yields a NaN gradient."""

    poison: int = 0

    def grad(self, params, data, indices, key):
        loss, g = super().grad(params, data, indices, key)
        hit = jnp.any(indices == self.poison)
        return loss, jax.tree.map(lambda x: jnp.where(hit, jnp.nan, x), g)


def poisoned(digits_task, streams, worker, step):
    task, data = digits_task
    return PoisonedTask(task.model, task.spec, False, poison=int(streams[worker].batch(step)[0])), data


def make(cap=-1):
    return lambda h: Server(plain(), optax.sgd(h["learning_rate"]), num_workers=4, staleness_cap=cap)


def test_nan_gradients_are_rejected_in_runtime_and_simulator_alike(digits_task, digits):
    streams = make_streams(digits.num_train, 16, 0, 4)
    task, data = poisoned(digits_task, streams, worker=2, step=3)
    p0 = task.model.init(jax.random.key(0))
    co = Coordinator(task, make(), HP, group_devices(4), jax.tree.map(np.asarray, data), streams, KEY)
    server, trace, _ = co.run(p0, Protocol(4, 40))
    assert server.rejected[:, 0].tolist() == [0, 0, 1, 0]  # worker 2's poisoned gradient, once
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(server.params))
    sim = Simulator(task, make(), 4, chunk=4)
    replay = sim.run(sim.init(p0, HP), trace, data, HP, streams, KEY)
    assert replay.server.rejected.tolist() == server.rejected.tolist()
    for x, y in zip(jax.tree.leaves(replay.server.params), jax.tree.leaves(server.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_staleness_cap_counts_the_dropped_gradients(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(3), 4, 60, DelayModel("exponential"))
    sim = Simulator(task, make(cap=2), 4, chunk=4)
    streams = make_streams(digits.num_train, 16, 0, 4)
    st = sim.run(sim.init(task.model.init(jax.random.key(0)), HP), trace, data, HP, streams, KEY)
    assert int(st.server.rejected[:, 1].sum()) == int((trace.staleness > 2).sum()) > 0


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    common = ["--config.learning_rate=5", "--config.log_every=20", "--config.checkpoint_every=20", "--workdir=run"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}

    def train(*args):
        cmd = [sys.executable, "-c", "from asgdjax.main import run; run()", *common, *args, "--noprogress"]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)

    # 20 steps with the guard off leave a checkpoint at step 20; resuming with the guard on must stop at
    # the next log (the loss has exploded) and keep that checkpoint, writing no later one.
    assert train("--config.steps=20", "--config.max_train_loss=1e30").returncode == 0
    out = train("--config.steps=400")
    assert out.returncode == 3, out.stderr[-2000:]
    err = [x for x in out.stderr.splitlines() if x.strip()][-1]
    assert err.startswith("asgdjax-train: stopped: the run diverged at step 40") and "Traceback" not in out.stderr
    assert "the last good checkpoint (step 20) is kept" in err
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 40 and records[-1].get("diverged") is True
    assert sorted(int(p) for p in os.listdir(tmp_path / "run" / "checkpoints") if p.isdigit()) == [20]


def test_a_corrupt_checkpoint_is_one_clear_line_and_nothing_is_overwritten(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-c",
        "from asgdjax.main import run; run()",
        "--config.steps=40",
        "--config.checkpoint_every=20",
        "--workdir=run",
        "--noprogress",
    ]
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300).returncode == 0
    step_dir = tmp_path / "run" / "checkpoints" / "40"
    damaged = 0
    for path in step_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(b"\0" * 16)
            damaged += 1
    assert damaged
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    out = subprocess.run(
        [*cmd[:3], "--config.steps=60", *cmd[4:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = [x for x in out.stderr.splitlines() if x.strip()][-1]
    assert last.startswith("asgdjax-train: error: checkpoint") and "cannot be restored" in last
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
