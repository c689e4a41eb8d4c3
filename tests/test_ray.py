"""The Ray backend on a local Ray cluster (ray.init(num_cpus=2)): 2- and 4-actor async runs complete and
replay exactly in the simulator, a killed actor does not stop the run, and the trainer drives it."""

import jax
import numpy as np
import pytest
from helpers import assert_trees_close, exactly_once, run_runtime, sgd_server, simulate

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'asgdjax[ray]')")

pytestmark = pytest.mark.slow  # a Ray cluster per module: the full tier

from asgdjax.core.protocol import ProtocolSpec  # noqa: E402
from asgdjax.rules import staleness_scaled_lr  # noqa: E402
from asgdjax.runtime import RunOptions  # noqa: E402

make = sgd_server(staleness_scaled_lr(), momentum=0.9)


@pytest.fixture(scope="module")
def cluster():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"a local Ray cluster cannot start here: {e}")
    yield
    ray.shutdown()


def ray_run(digits_task, spec, steps):
    task, data = digits_task
    options = {"num_cpus": 0.5, "max_restarts": 3}
    devices = [None] * spec.num_workers
    return run_runtime(
        task, data, spec, steps, make_server=make, devices=devices, backend="ray", backend_options=options
    )


def assert_replays(digits_task, trace, spec, p0, server):
    task, data = digits_task
    replayed, _, _ = simulate(task, data, trace, spec=spec, make_server=make, p0=p0)
    assert_trees_close(replayed.server.params, server.params, atol=1e-6)


@pytest.mark.parametrize("k,n", [(2, 1), (4, 2)])
def test_ray_actors_train_asynchronously_and_the_trace_replays(cluster, digits_task, k, n):
    spec = ProtocolSpec(num_workers=k, n_fetch=n, n_push=n)
    server, trace, stats, p0, _ = ray_run(digits_task, spec, 48)
    assert trace.num_gradients == 48 and trace.meta["source"] == "runtime"
    assert stats.steps.sum() == 48 and (stats.steps > 0).all()  # every actor contributed
    assert_replays(digits_task, trace, spec, p0, server)


@pytest.mark.parametrize(
    "k,n_fetch,n_push,warm,faults",
    [
        (2, 4, 4, 5, {}),  # the warm start's last step (4) cuts worker 0's segment 4..7 short: a rewind
        (3, 2, 5, 0, {}),  # segments end at fetches (every 2) and pushes (every 5): 0-1, 2-3, 4, 5-6, ...
        (2, 4, 4, 0, {(1, 6): "raise"}),  # a failure inside a returned segment: restart, segment 6..7 again
    ],
)
def test_downpour_actors_run_a_segment_of_local_steps_per_call_and_the_trace_replays(
    cluster, digits_task, k, n_fetch, n_push, warm, faults
):
    """One actor call per segment between exchanges with the server; the run's end (47 is not a push step
    for n_push = 4 or 5 when the budget is spent mid-segment), a warm start's end and a failure inside a
    segment hand over fewer steps than the call computed, and the trace still replays exactly."""
    import helpers

    task, data = digits_task
    spec = ProtocolSpec(num_workers=k, n_fetch=n_fetch, n_push=n_push, warm_start_steps=warm)
    co = helpers.Coordinator(
        task,
        make,
        helpers.HP,
        spec,
        devices=[None] * k,
        data=jax.tree.map(np.asarray, data),
        sampler=helpers.sampler(int(data["train_y"].shape[0]), k),
        data_key=helpers.KEY,
        backend="ray",
        backend_options={"num_cpus": 0.5, "max_restarts": 3},
    )
    try:
        p0 = task.init(jax.random.key(0))
        server, trace, _ = co.run(p0, spec.machine(47), options=RunOptions(faults=dict(faults)))
    finally:
        co.shutdown()
    assert trace.num_gradients == 47 and exactly_once(trace)
    assert len(trace.meta["failures"]) == len(faults)
    steps = trace.step[trace.step >= 0]
    segments = int(np.sum((steps % n_push == 0) | (steps % n_fetch == 0)))  # steps that begin one
    assert co.workers.calls <= segments + k + len(faults) + 2  # about one call per segment, not per step
    assert co.workers.rewinds >= (1 if warm else 0)
    assert_replays(digits_task, trace, spec, p0, server)


def test_segments_end_at_the_next_push_or_fetch():
    from asgdjax.runtime.ray_workers import segment_end

    assert [segment_end(s, n_fetch=4, n_push=4) for s in range(9)] == [3, 3, 3, 3, 7, 7, 7, 7, 11]
    assert [segment_end(s, n_fetch=2, n_push=5) for s in range(8)] == [1, 1, 3, 3, 4, 5, 7, 7]
    assert [segment_end(s, n_fetch=1, n_push=1) for s in range(3)] == [0, 1, 2]


def test_a_killed_actor_is_restarted_and_no_update_is_applied_twice(cluster, digits_task):
    import helpers

    task, data = digits_task
    spec = ProtocolSpec(num_workers=2)
    killed = []
    co = helpers.Coordinator(
        task,
        make,
        helpers.HP,
        spec,
        devices=[None, None],
        data=jax.tree.map(np.asarray, data),
        sampler=helpers.sampler(int(data["train_y"].shape[0]), 2),
        data_key=helpers.KEY,
        backend="ray",
        backend_options={"num_cpus": 0.5, "max_restarts": 3},
    )

    def kill_once(done, server, protocol):
        if done >= 10 and not killed:
            killed.append(done)
            ray.kill(co.workers.actors[1], no_restart=False)  # Ray restarts it (max_restarts)

    try:
        p0 = task.init(jax.random.key(0))
        server, trace, _ = co.run(p0, spec.machine(80), on_arrival=kill_once, options=RunOptions(max_failures=3))
    finally:
        co.shutdown()
    failures = trace.meta["failures"]
    assert killed and failures and {f["worker"] for f in failures} == {1}
    assert trace.num_gradients == 80 and int(server.version) == 80 and exactly_once(trace)
    # The restarted actor came back (after re-importing JAX) and kept working.
    restart = int(np.flatnonzero((trace.worker == 1) & (trace.step < 0))[-1])
    assert ((trace.worker[restart:] == 1) & (trace.step[restart:] >= 0)).any()
    assert_replays(digits_task, trace, spec, p0, server)


def test_the_trainer_runs_backend_ray(cluster, tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.train import train

    c = get_config()
    c.mode, c.backend, c.num_workers, c.steps, c.model, c.warm_start_steps = "async", "ray", 2, 40, "mlp", 0
    c.ray_cpus_per_worker, c.eval_every, c.checkpoint_every = 0.5, 40, 20
    s = train(c, str(tmp_path / "ray"), show_progress=False)
    assert s["backend"] == "ray" and s["gradients"] == 40 and len(s["devices"]) == 2
