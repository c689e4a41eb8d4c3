"""The real asynchronous runtime on forced CPU devices: runs complete, traces replay exactly in the
simulator, every gradient is applied once, the SSP bound holds, sync mode is minibatch SGD."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import HP, KEY, _num_examples, assert_trees_close, exactly_once, run_runtime, sampler, sgd_server, simulate

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.parallel import group_devices
from asgdjax.rules import dc_asgd_adaptive, staleness_scaled_lr


def momentum_server(rule=None):
    return sgd_server(rule or staleness_scaled_lr(), momentum=0.9)


def replay(task, data, trace, spec, p0, make_server=None):
    state, _, _ = simulate(task, data, trace, spec=spec, make_server=make_server or momentum_server(), p0=p0)
    return state


def test_devices_round_robin_over_the_forced_cpu_devices():
    assert len(jax.devices()) == 8
    assert [g[0].id for g in group_devices(10)] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert [g[0].id for g in group_devices(2, spec="3,5")] == [3, 5]
    assert [[d.id for d in g] for g in group_devices(5, 2)] == [[0, 1], [2, 3], [4, 5], [6, 7], [0, 1]]
    assert [[d.id for d in g] for g in group_devices(2, 2, "7,6,1,0")] == [[7, 6], [1, 0]]


def test_four_worker_async_run_completes_and_replays_exactly(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4)
    server, trace, stats, p0, _ = run_runtime(task, data, spec, 48, make_server=momentum_server())
    assert int(server.version) == 48 and trace.num_gradients == 48
    assert stats.steps.sum() == 48 and (stats.steps > 0).all()
    assert trace.stats().staleness_mean > 0.5  # real asynchrony happened
    assert_trees_close(replay(task, data, trace, spec, p0).server.params, server.params, atol=1e-6)


@pytest.mark.parametrize("n_fetch,n_push", [(2, 2), (1, 3)])
def test_downpour_local_steps_replay_exactly(digits_task, n_fetch, n_push):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4, n_fetch=n_fetch, n_push=n_push)
    server, trace, _, p0, _ = run_runtime(task, data, spec, 40, make_server=momentum_server())
    assert trace.num_gradients == 40 and int(server.version) == trace.num_updates
    assert_trees_close(replay(task, data, trace, spec, p0).server.params, server.params, atol=1e-6)


def test_dc_asgd_adaptive_reads_the_same_snapshots_in_both(digits_task):
    task, data = digits_task
    make = momentum_server(dc_asgd_adaptive(0.5, 3))
    spec = ProtocolSpec(num_workers=3)
    server, trace, _, p0, _ = run_runtime(task, data, spec, 30, make_server=make)
    assert_trees_close(replay(task, data, trace, spec, p0, make).server.params, server.params, atol=1e-6)


def test_every_gradient_is_applied_exactly_once(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4, n_fetch=2, n_push=2)
    _, trace, _, _, _ = run_runtime(task, data, spec, 40)
    keys = [(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0]
    assert exactly_once(trace) and len(keys) == 40
    for w in range(4):  # each worker's steps are 0..n-1, each once
        steps = sorted(s for v, s in keys if v == w)
        assert steps == list(range(len(steps)))
    assert (trace.v_apply[trace.apply] == np.arange(trace.num_updates)).all()


def test_ssp_bound_is_respected_and_replays(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4, max_staleness=1)
    server, trace, _, p0, _ = run_runtime(task, data, spec, 40, make_server=momentum_server())
    assert trace.staleness.max() <= 1
    assert_trees_close(replay(task, data, trace, spec, p0).server.params, server.params, atol=1e-6)


def test_sync_mode_equals_minibatch_sgd(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=4, kind="sync")
    server, trace, _, p0, smp = run_runtime(task, data, spec, 24, make_server=sgd_server(momentum=0.9))
    assert int(server.version) == 6 and trace.staleness.max() == 0
    opt = optax.sgd(HP["learning_rate"], momentum=0.9)
    params, opt_state = p0, opt.init(p0)
    for step in range(6):
        idx = np.concatenate([smp.batch(w, step) for w in range(4)])
        _, g = task.grad(params, data, idx, KEY)
        u, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, u)
    assert_trees_close(server.params, params, atol=1e-5)


def test_several_workers_can_share_one_device(digits_task):
    task, data = digits_task
    spec = ProtocolSpec(num_workers=3)
    server, trace, _, p0, _ = run_runtime(
        task, data, spec, 24, make_server=momentum_server(), devices=[jax.devices()[0]] * 3
    )
    assert trace.num_gradients == 24
    assert_trees_close(replay(task, data, trace, spec, p0).server.params, server.params, atol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(server.params))


def test_every_program_compiles_before_the_runs_clock_starts(digits_task):
    """A worker joining after a warm start used to compile its gradient program inside the run (a stall
    the simulator's clock does not have, and calibration fitted as step time): now each device group's
    programs and the server update compile and run once before time zero."""
    from jax._src import monitoring
    from jax._src.dispatch import BACKEND_COMPILE_EVENT

    from asgdjax.runtime.coordinator import Coordinator

    task, data = digits_task
    spec = ProtocolSpec(num_workers=2, warm_start_steps=6)
    co = Coordinator(
        task,
        momentum_server(),
        HP,
        spec,
        devices=group_devices(2),
        data=jax.tree.map(np.asarray, data),
        sampler=sampler(_num_examples(data), 2),
        data_key=KEY,
    )
    arrived, late = [0], []

    def on_compile(event: str, seconds: float, **_) -> None:
        if event == BACKEND_COMPILE_EVENT and arrived[0]:
            late.append(arrived[0])

    monitoring.register_event_duration_secs_listener(on_compile)
    try:
        _, trace, _ = co.run(
            task.init(jax.random.key(0)),
            spec.machine(20),
            on_arrival=lambda g, *_: arrived.__setitem__(0, g),
        )
    finally:
        monitoring.unregister_event_duration_listener(on_compile)
    assert trace.num_gradients == 20 and 1 in set(np.asarray(trace.worker)[6:].tolist())
    assert late == [], f"programs compiled after arrivals {late}"
