"""The compiled replay against a plain-Python reference of the same trace semantics, sync == minibatch SGD,
determinism, strategy agreement and bit-identical resumption."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from asgdjax.delays import DelayModel
from asgdjax.rules import dc_asgd, plain
from asgdjax.server import Server
from asgdjax.sim import Simulator, make_schedule, make_streams, uniform_staleness_schedule
from asgdjax.train.task import batch_key

LR, LLR, B = 0.1, 0.05, 16
KEY = jax.random.key(1)


def sgd_server(rule=None):
    return lambda h: Server(rule or plain(), optax.sgd(h["learning_rate"]))


def simulate(task, data, digits, trace, strategy="sequential", make_server=None, group=1, local=False, chunk=4):
    sim = Simulator(task, make_server or sgd_server(), trace.num_workers, group, local, strategy, chunk)
    hp = {"learning_rate": LR, "local_learning_rate": LLR}
    params = task.model.init(jax.random.key(0))
    streams = make_streams(digits.num_train, B, 0, trace.num_workers)
    return sim, sim.run(sim.init(params, hp), trace, data, hp, streams, KEY), params, streams


def reference(task, data, trace, streams, p0, local_updates):
    """Plain Python: per event compute the worker's gradient on its copy, push, apply groups, fetch."""
    sub = lambda a, b, c: jax.tree.map(lambda x, y: x - c * y, a, b)
    k = trace.num_workers
    params, local = p0, [p0] * k
    acc = [jax.tree.map(jnp.zeros_like, p0)] * k
    pending, fetch_on_apply = [], []
    grad = jax.jit(task.grad)
    for e in range(len(trace)):
        w, s = int(trace.worker[e]), int(trace.step[e])
        if s >= 0:
            _, g = grad(local[w], data, streams[w].batch(s), batch_key(KEY, w, s))
            if local_updates:
                local[w] = sub(local[w], g, LLR)
            acc[w] = jax.tree.map(jnp.add, acc[w], g)
        if trace.push[e]:
            pending.append(acc[w])
            acc[w] = jax.tree.map(jnp.zeros_like, p0)
            if trace.fetch[e] == 2:
                fetch_on_apply.append(w)
        if trace.apply[e]:
            mean = jax.tree.map(lambda *gs: sum(gs) / len(gs), *pending)
            params = sub(params, mean, LR)
            for v in fetch_on_apply:
                local[v] = params
            pending, fetch_on_apply = [], []
        if trace.fetch[e] == 1:
            local[w] = params
    return params


def assert_close(a, b, atol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5)


def test_async_replay_matches_the_python_reference(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(3), 4, 37, DelayModel("exponential"))
    _, state, p0, streams = simulate(task, data, digits, trace)
    assert int(state.server.version) == 37
    assert_close(state.server.params, reference(task, data, trace, streams, p0, False))


@pytest.mark.parametrize("n_fetch,n_push", [(2, 2), (3, 1), (1, 3)])
def test_downpour_local_steps_match_the_python_reference(digits_task, digits, n_fetch, n_push):
    task, data = digits_task
    trace = make_schedule(jax.random.key(4), 3, 30, DelayModel("exponential"), n_fetch=n_fetch, n_push=n_push)
    _, state, p0, streams = simulate(task, data, digits, trace, local=True)
    assert_close(state.server.params, reference(task, data, trace, streams, p0, True))


def test_ssp_groups_match_the_python_reference(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(5), 4, 40, DelayModel("exponential", speeds=(1, 1, 3, 1)), max_staleness=1)
    assert trace.num_updates < 40  # some gradients were released together
    _, state, p0, streams = simulate(task, data, digits, trace, group=4)
    assert_close(state.server.params, reference(task, data, trace, streams, p0, False))


def test_sync_protocol_equals_minibatch_sgd_with_batch_k_times_b(digits_task, digits):
    task, data = digits_task
    k = 4
    trace = make_schedule(jax.random.key(6), k, 4 * 6, DelayModel("exponential"), protocol="sync")
    make = lambda h: Server(plain(), optax.sgd(h["learning_rate"], momentum=0.9))
    _, state, p0, streams = simulate(task, data, digits, trace, make_server=make, group=k)
    # Plain minibatch SGD on the concatenated K*B batch (same examples, no augmentation or dropout).
    opt = optax.sgd(LR, momentum=0.9)
    params, opt_state = p0, opt.init(p0)
    for step in range(6):
        idx = np.concatenate([streams[w].batch(step) for w in range(k)])
        _, g = task.grad(params, data, idx, KEY)
        u, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, u)
    assert int(state.server.version) == 6
    assert_close(state.server.params, params, atol=1e-5)


def test_replay_is_bit_for_bit_deterministic(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(7), 4, 30, DelayModel("exponential"))
    _, a, _, _ = simulate(task, data, digits, trace)
    _, b, _, _ = simulate(task, data, digits, trace)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_waves_and_sequential_chunks_agree(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(8), 4, 30, DelayModel("exponential"), n_push=2)
    _, a, _, _ = simulate(task, data, digits, trace, "sequential", local=True)
    _, b, _, _ = simulate(task, data, digits, trace, "waves", local=True, chunk=0)
    assert_close(a.server.params, b.server.params, atol=1e-5)


def test_dc_asgd_with_lambda_zero_replays_exactly_as_plain(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(9), 4, 20, DelayModel("exponential"))
    _, a, _, _ = simulate(task, data, digits, trace)
    _, b, _, _ = simulate(task, data, digits, trace, make_server=sgd_server(dc_asgd(0.0)))
    for x, y in zip(jax.tree.leaves(a.server.params), jax.tree.leaves(b.server.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resuming_at_a_chunk_boundary_is_bit_identical(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(10), 4, 40, DelayModel("exponential"))
    sim, full, p0, streams = simulate(task, data, digits, trace)
    hp = {"learning_rate": LR, "local_learning_rate": LLR}
    cut = int(sim.boundaries(trace)[2])
    first = sim.run(sim.init(p0, hp), trace.slice(cut), data, hp, streams, KEY)
    first = jax.tree.map(np.asarray, first)  # as a checkpoint would hold it
    resumed = sim.run(jax.tree.map(jnp.asarray, first), trace, data, hp, streams, KEY, start_event=cut)
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_version_ring_replays_like_per_worker_copies(digits_task, digits):
    task, data = digits_task
    trace = make_schedule(jax.random.key(11), 4, 30, DelayModel("exponential"))
    _, a, _, _ = simulate(task, data, digits, trace)
    sim = Simulator(task, sgd_server(), 4, chunk=4, ring_depth=int(trace.staleness.max()) + 1)
    hp = {"learning_rate": LR}
    streams = make_streams(digits.num_train, B, 0, 4)
    b = sim.run(sim.init(task.model.init(jax.random.key(0)), hp), trace, data, hp, streams, KEY)
    assert_close(a.server.params, b.server.params)


def test_dai_uniform_staleness_replays_from_the_ring(digits_task, digits):
    task, data = digits_task
    trace = uniform_staleness_schedule(jax.random.key(12), 4, 24, bound=3)
    sim = Simulator(task, sgd_server(), 4, chunk=4, ring_depth=4)
    hp = {"learning_rate": LR}
    streams = make_streams(digits.num_train, B, 0, 4)
    p0 = task.model.init(jax.random.key(0))
    got = sim.run(sim.init(p0, hp), trace, data, hp, streams, KEY)
    # Reference: keep every version; gradient i is computed on version v_read(i).
    versions, grad = [p0], jax.jit(task.grad)
    for e in range(len(trace)):
        w, s, v = int(trace.worker[e]), int(trace.step[e]), int(trace.v_read[e])
        _, g = grad(versions[v], data, streams[w].batch(s), batch_key(KEY, w, s))
        versions.append(jax.tree.map(lambda p, d: p - LR * d, versions[-1], g))
    assert_close(got.server.params, versions[-1])


def test_large_stacked_copies_run_one_event_per_call_on_cpu(digits):
    # XLA:CPU copies the whole (K, ...) buffer per event inside multi-event programs; above 32 MiB of
    # copies the simulator dispatches one event per call instead (both replay the same trace exactly).
    from asgdjax.models import get_model
    from asgdjax.train.task import Task

    task = Task(get_model("mlp", 10, digits.spec.image_shape), digits.spec, augment=False)
    make = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))
    events_per_call = lambda k, **kw: Simulator(task, make, k, **kw).C
    assert events_per_call(8) == 10
    assert events_per_call(1024) == (1 if jax.default_backend() == "cpu" else 10)
    assert events_per_call(1024, chunk=7) == 7
