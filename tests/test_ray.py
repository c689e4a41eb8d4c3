"""The Ray backend on a local Ray cluster (ray.init(num_cpus=2)): 2- and 4-actor async runs complete and
replay exactly in the simulator, a killed actor does not stop the run, and the trainer drives it."""

import jax
import numpy as np
import optax
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'asgdjax[ray]')")

from asgdjax.rules import staleness_scaled_lr  # noqa: E402
from asgdjax.runtime import Coordinator  # noqa: E402
from asgdjax.server import Server  # noqa: E402
from asgdjax.sim import Simulator, make_streams  # noqa: E402
from asgdjax.sim.protocol import Protocol  # noqa: E402

HP = {"learning_rate": 0.05, "local_learning_rate": 0.02}
KEY = jax.random.key(1)
make = lambda h: Server(staleness_scaled_lr(), optax.sgd(h["learning_rate"], momentum=0.9))


@pytest.fixture(scope="module")
def cluster():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"a local Ray cluster cannot start here: {e}")
    yield
    ray.shutdown()


def coordinator(digits_task, digits, k, local=False, restarts=3):
    task, data = digits_task
    streams = make_streams(digits.num_train, 16, 0, k)
    co = Coordinator(
        task,
        make,
        HP,
        [None] * k,
        jax.tree.map(np.asarray, data),
        streams,
        KEY,
        local_updates=local,
        backend="ray",
        backend_options={"num_cpus": 0.5, "max_restarts": restarts},
    )
    return co, streams


def assert_replays(digits_task, trace, p0, server, streams, local=False):
    task, data = digits_task
    sim = Simulator(task, make, trace.num_workers, 1, local, chunk=4)
    replayed = sim.run(sim.init(p0, HP), trace, data, HP, streams, KEY)
    for x, y in zip(jax.tree.leaves(replayed.server.params), jax.tree.leaves(server.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("k,n", [(2, 1), (4, 2)])
def test_ray_actors_train_asynchronously_and_the_trace_replays(cluster, digits_task, digits, k, n):
    co, streams = coordinator(digits_task, digits, k, local=n > 1)
    try:
        p0 = digits_task[0].model.init(jax.random.key(0))
        server, trace, stats = co.run(p0, Protocol(k, 48, n_fetch=n, n_push=n))
    finally:
        co.shutdown()
    assert trace.num_gradients == 48 and trace.meta["source"] == "runtime"
    assert stats.steps.sum() == 48 and (stats.steps > 0).all()  # every actor contributed
    assert len(co.devices) == k
    assert_replays(digits_task, trace, p0, server, streams, local=n > 1)


def test_a_killed_actor_is_restarted_and_no_update_is_applied_twice(cluster, digits_task, digits):
    co, streams = coordinator(digits_task, digits, 2)
    killed = []

    def kill_once(done, server, protocol):
        if done >= 10 and not killed:
            killed.append(done)
            ray.kill(co.workers.actors[1], no_restart=False)  # Ray restarts it (max_restarts)

    try:
        p0 = digits_task[0].model.init(jax.random.key(0))
        server, trace, _ = co.run(p0, Protocol(2, 80), on_arrival=kill_once, max_failures=3)
    finally:
        co.shutdown()
    failures = trace.meta["failures"]
    assert killed and failures and {f["worker"] for f in failures} == {1}
    assert trace.num_gradients == 80 and int(server.version) == 80
    keys = [(w, s) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0]
    assert len(keys) == len(set(keys))  # exactly once
    # The restarted actor came back (after re-importing JAX) and kept working.
    restart = int(np.flatnonzero((trace.worker == 1) & (trace.step < 0))[-1])
    assert ((trace.worker[restart:] == 1) & (trace.step[restart:] >= 0)).any()
    assert_replays(digits_task, trace, p0, server, streams)


def test_the_trainer_runs_backend_ray(cluster, tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.train import train

    c = get_config()
    c.mode, c.backend, c.num_workers, c.steps = "async", "ray", 2, 40
    c.ray_cpus_per_worker, c.eval_every, c.checkpoint_every = 0.5, 40, 20
    s = train(c, str(tmp_path / "ray"), show_progress=False)
    assert s["backend"] == "ray" and s["gradients"] == 40 and len(s["devices"]) == 2
