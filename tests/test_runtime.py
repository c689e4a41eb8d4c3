"""The real asynchronous runtime on forced CPU devices: runs complete, traces replay exactly in the
simulator, every gradient is applied once, the SSP bound holds, sync mode is minibatch SGD."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from asgdjax.parallel import group_devices
from asgdjax.rules import dc_asgd_adaptive, plain, staleness_scaled_lr
from asgdjax.runtime import Coordinator
from asgdjax.server import Server
from asgdjax.sim import Simulator, make_streams
from asgdjax.sim.protocol import Protocol

B = 16
HP = {"learning_rate": 0.05, "local_learning_rate": 0.02}
KEY = jax.random.key(1)


def momentum_server(rule=None):
    return lambda h: Server(rule or staleness_scaled_lr(), optax.sgd(h["learning_rate"], momentum=0.9))


def run_runtime(digits_task, digits, k, protocol, make_server=None, group=1, local=False, devices=None):
    task, data = digits_task
    streams = make_streams(digits.num_train, B, 0, k)
    co = Coordinator(
        task,
        make_server or momentum_server(),
        HP,
        devices or group_devices(k),
        jax.tree.map(np.asarray, data),
        streams,
        KEY,
        group,
        local,
    )
    p0 = task.model.init(jax.random.key(0))
    server, trace, stats = co.run(p0, protocol)
    return server, trace, stats, p0, streams


def replay(digits_task, trace, p0, streams, make_server=None, group=1, local=False):
    task, data = digits_task
    sim = Simulator(task, make_server or momentum_server(), trace.num_workers, group, local, chunk=4)
    return sim.run(sim.init(p0, HP), trace, data, HP, streams, KEY)


def assert_close(a, b, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5)


def test_devices_round_robin_over_the_forced_cpu_devices():
    assert len(jax.devices()) == 8
    assert [g[0].id for g in group_devices(10)] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert [g[0].id for g in group_devices(2, spec="3,5")] == [3, 5]
    assert [[d.id for d in g] for g in group_devices(5, 2)] == [[0, 1], [2, 3], [4, 5], [6, 7], [0, 1]]
    assert [[d.id for d in g] for g in group_devices(2, 2, "7,6,1,0")] == [[7, 6], [1, 0]]


def test_four_worker_async_run_completes_and_replays_exactly(digits_task, digits):
    server, trace, stats, p0, streams = run_runtime(digits_task, digits, 4, Protocol(4, 48))
    assert int(server.version) == 48 and trace.num_gradients == 48
    assert stats.steps.sum() == 48 and (stats.steps > 0).all()
    assert trace.stats()["staleness_mean"] > 0.5  # real asynchrony happened
    assert_close(replay(digits_task, trace, p0, streams).server.params, server.params)


@pytest.mark.parametrize("n_fetch,n_push", [(2, 2), (1, 3)])
def test_downpour_local_steps_replay_exactly(digits_task, digits, n_fetch, n_push):
    proto = Protocol(4, 40, n_fetch=n_fetch, n_push=n_push)
    server, trace, _, p0, streams = run_runtime(digits_task, digits, 4, proto, local=True)
    assert trace.num_gradients == 40 and int(server.version) == trace.num_updates
    assert_close(replay(digits_task, trace, p0, streams, local=True).server.params, server.params)


def test_dc_asgd_adaptive_reads_the_same_snapshots_in_both(digits_task, digits):
    make = momentum_server(dc_asgd_adaptive(0.5, 3))
    server, trace, _, p0, streams = run_runtime(digits_task, digits, 3, Protocol(3, 30), make_server=make)
    assert_close(replay(digits_task, trace, p0, streams, make_server=make).server.params, server.params)


def test_every_gradient_is_applied_exactly_once(digits_task, digits):
    _, trace, _, _, _ = run_runtime(digits_task, digits, 4, Protocol(4, 40, n_push=2, n_fetch=2), local=True)
    keys = [(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0]
    assert len(keys) == len(set(keys)) == 40
    for w in range(4):  # each worker's steps are 0..n-1, each once
        steps = sorted(s for v, s in keys if v == w)
        assert steps == list(range(len(steps)))
    assert (trace.v_apply[trace.apply] == np.arange(trace.num_updates)).all()


def test_ssp_bound_is_respected_and_replays(digits_task, digits):
    server, trace, _, p0, streams = run_runtime(digits_task, digits, 4, Protocol(4, 40, max_staleness=1), group=4)
    assert trace.staleness.max() <= 1
    assert_close(replay(digits_task, trace, p0, streams, group=4).server.params, server.params)


def test_sync_mode_equals_minibatch_sgd(digits_task, digits):
    task, data = digits_task
    make = lambda h: Server(plain(), optax.sgd(h["learning_rate"], momentum=0.9))
    server, trace, _, p0, streams = run_runtime(digits_task, digits, 4, Protocol(4, 24, max_staleness=0), make, 4)
    assert int(server.version) == 6 and trace.staleness.max() == 0
    opt = optax.sgd(HP["learning_rate"], momentum=0.9)
    params, opt_state = p0, opt.init(p0)
    for step in range(6):
        idx = np.concatenate([streams[w].batch(step) for w in range(4)])
        _, g = task.grad(params, data, idx, KEY)
        u, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, u)
    assert_close(server.params, params, atol=1e-5)


def test_several_workers_can_share_one_device(digits_task, digits):
    dev = jax.devices()[0]
    server, trace, _, p0, streams = run_runtime(digits_task, digits, 3, Protocol(3, 24), devices=[dev] * 3)
    assert trace.num_gradients == 24
    assert_close(replay(digits_task, trace, p0, streams).server.params, server.params)
    assert jnp.all(jnp.isfinite(server.params["fc2"]["kernel"]))
