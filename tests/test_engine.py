"""The compiled replay against a plain-Python reference of the same trace semantics, sync == minibatch SGD,
determinism, strategy agreement, bit-identical resumption, and traces a simulator cannot replay refused.

The fast tier runs them on an MLP; the full tier (-m slow) repeats the core ones on the small CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import HP, KEY, assert_trees_close, assert_trees_equal, reference, sampler, sgd_server, simulate

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.task import batch_key
from asgdjax.delays import DelayModel
from asgdjax.errors import TraceMismatch
from asgdjax.rules import dc_asgd
from asgdjax.sim import Simulator, make_schedule, uniform_staleness_schedule

EXP = DelayModel("exponential")


def schedule(seed, k, steps, delays=EXP, **protocol):
    spec = ProtocolSpec(num_workers=k, **protocol)
    return spec, make_schedule(jax.random.key(seed), spec, num_steps=steps, delays=delays)


@pytest.mark.parametrize("strategy", ["sequential", "scan", "waves"])
def test_async_replay_matches_the_python_reference(digits_task, strategy):
    task, data = digits_task
    spec, trace = schedule(3, 4, 37)
    state, p0, smp = simulate(task, data, trace, spec=spec, strategy=strategy, chunk=0 if strategy == "waves" else 4)
    assert int(state.server.version) == 37
    assert_trees_close(state.server.params, reference(task, data, trace, smp, p0))


@pytest.mark.parametrize("n_fetch,n_push", [(2, 2), (3, 1), (1, 3)])
def test_downpour_local_steps_match_the_python_reference(digits_task, n_fetch, n_push):
    task, data = digits_task
    spec, trace = schedule(4, 3, 30, n_fetch=n_fetch, n_push=n_push)
    state, p0, smp = simulate(task, data, trace, spec=spec)
    assert_trees_close(state.server.params, reference(task, data, trace, smp, p0, local=True))


def test_ssp_groups_match_the_python_reference(digits_task):
    task, data = digits_task
    spec, trace = schedule(5, 4, 40, DelayModel("exponential", speeds=(1, 1, 3, 1)), max_staleness=1)
    assert trace.num_updates < 40  # some gradients were released together
    state, p0, smp = simulate(task, data, trace, spec=spec)
    assert_trees_close(state.server.params, reference(task, data, trace, smp, p0))


def test_sync_protocol_equals_minibatch_sgd_with_batch_k_times_b(digits_task):
    task, data = digits_task
    k = 4
    spec, trace = schedule(6, k, 4 * 6, kind="sync")
    state, p0, smp = simulate(task, data, trace, spec=spec, make_server=sgd_server(momentum=0.9))
    # Plain minibatch SGD on the concatenated K*B batch (same examples, no augmentation or dropout).
    opt = optax.sgd(HP["learning_rate"], momentum=0.9)
    params, opt_state = p0, opt.init(p0)
    for step in range(6):
        idx = np.concatenate([smp.batch(w, step) for w in range(k)])
        _, g = task.grad(params, data, idx, KEY)
        u, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, u)
    assert int(state.server.version) == 6
    assert_trees_close(state.server.params, params, atol=1e-5)


def test_replay_is_bit_for_bit_deterministic(digits_task):
    task, data = digits_task
    spec, trace = schedule(7, 4, 30)
    a, _, _ = simulate(task, data, trace, spec=spec)
    b, _, _ = simulate(task, data, trace, spec=spec)
    assert_trees_equal(a, b)


@pytest.mark.slow
def test_strategies_agree(digits_task):
    task, data = digits_task
    spec, trace = schedule(8, 4, 30, n_push=2)
    a, _, _ = simulate(task, data, trace, spec=spec, strategy="sequential")
    b, _, _ = simulate(task, data, trace, spec=spec, strategy="waves", chunk=0)
    c, _, _ = simulate(task, data, trace, spec=spec, strategy="scan", chunk=16)
    assert_trees_close(a.server.params, b.server.params, atol=1e-5)
    assert_trees_close(a.server.params, c.server.params, atol=1e-5)


def test_dc_asgd_with_lambda_zero_replays_exactly_as_plain(digits_task):
    task, data = digits_task
    spec, trace = schedule(9, 4, 20)
    a, _, _ = simulate(task, data, trace, spec=spec)
    b, _, _ = simulate(task, data, trace, spec=spec, make_server=sgd_server(dc_asgd(0.0)))
    assert_trees_equal(a.server.params, b.server.params)


@pytest.mark.parametrize("strategy", ["sequential", "scan"])
def test_resuming_at_a_call_boundary_is_bit_identical(digits_task, strategy):
    task, data = digits_task
    spec, trace = schedule(10, 4, 40)
    sim = Simulator(task, sgd_server(), spec, strategy=strategy, chunk=4)
    p0, smp = task.init(jax.random.key(0)), sampler(int(data["train_y"].shape[0]), 4)
    cut = 12  # a checkpoint taken after event 12: calls end there in both runs
    full = sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY, cuts=[cut])
    first = sim.run(sim.init(p0, HP), trace.slice(cut), data, HP, smp, KEY, cuts=[cut])
    first = jax.tree.map(np.asarray, first)  # as a checkpoint would hold it
    resumed = sim.run(jax.tree.map(jnp.asarray, first), trace, data, HP, smp, KEY, start_event=cut, cuts=[cut])
    assert_trees_equal(full, resumed)


@pytest.mark.parametrize(
    "protocol",
    [{}, {"n_fetch": 2, "n_push": 2}, {"kind": "softsync", "softsync_n": 2}],
    ids=["async", "downpour", "softsync"],
)
def test_padding_slots_of_calls_cut_short_change_nothing(digits_task, protocol):
    """Calls cut every 3 events pad 5 of their 8 scan slots; every protocol's event skips a padding slot, so
    the state equals the uncut run's bit for bit (the planner cuts a call at every evaluation and rung)."""
    task, data = digits_task
    spec, trace = schedule(13, 3, 24, **protocol)
    sim = Simulator(task, sgd_server(momentum=0.9), spec, strategy="scan", chunk=8)
    p0, smp = task.init(jax.random.key(0)), sampler(int(data["train_y"].shape[0]), 3)
    whole = sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY)
    cut = sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY, cuts=range(3, len(trace), 3))
    assert int(cut.server.version) == int(whole.server.version) > 0
    assert_trees_equal(whole, cut)


def test_version_ring_replays_like_per_worker_copies(digits_task):
    task, data = digits_task
    spec, trace = schedule(11, 4, 30)
    a, p0, smp = simulate(task, data, trace, spec=spec)
    sim = Simulator(task, sgd_server(), spec, chunk=4, ring_depth=int(trace.staleness.max()) + 1)
    b = sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY)
    assert_trees_close(a.server.params, b.server.params)


def test_dai_uniform_staleness_replays_from_the_ring(digits_task):
    task, data = digits_task
    trace = uniform_staleness_schedule(jax.random.key(12), 4, 24, bound=3)
    sim = Simulator(task, sgd_server(), ProtocolSpec(num_workers=4), chunk=4, ring_depth=4)
    p0, smp = task.init(jax.random.key(0)), sampler(int(data["train_y"].shape[0]), 4)
    got = sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY)
    # Reference: keep every version; gradient i is computed on version v_read(i).
    versions, grad = [p0], jax.jit(task.grad)
    for e in range(len(trace)):
        w, s, v = int(trace.worker[e]), int(trace.step[e]), int(trace.v_read[e])
        _, g = grad(versions[v], data, smp.batch(w, s), batch_key(KEY, w, s))
        versions.append(jax.tree.map(lambda p, d: p - HP["learning_rate"] * d, versions[-1], g))
    assert_trees_close(got.server.params, versions[-1])


def test_a_trace_the_simulator_cannot_replay_is_refused_in_one_line(digits_task):
    task, data = digits_task
    _, sync_trace = schedule(13, 4, 16, kind="sync")
    with pytest.raises(TraceMismatch, match="applies groups of up to 4 gradients; .* applies at most 1"):
        simulate(task, data, sync_trace, spec=ProtocolSpec(num_workers=4))
    _, downpour = schedule(14, 4, 16, n_push=2)
    with pytest.raises(TraceMismatch, match="Downpour local steps"):
        simulate(task, data, downpour, spec=ProtocolSpec(num_workers=4))
    with pytest.raises(TraceMismatch, match="has 4 workers; this simulator has 3"):
        simulate(task, data, downpour, spec=ProtocolSpec(num_workers=3, n_push=2))


def test_auto_strategy_scans_cheap_steps_and_unrolls_convolutions_on_cpu(digits_task, digits_cnn):
    spec = ProtocolSpec(num_workers=8)
    for (task, data), want in ((digits_task, "scan"), (digits_cnn, "sequential")):
        sim = Simulator(task, sgd_server(), spec)
        sim.plan(task.init(jax.random.key(0)), data, 16)
        expected = want if jax.default_backend() == "cpu" else sim.strategy
        assert sim.strategy == expected and sim.C >= 1
    fixed = Simulator(digits_task[0], sgd_server(), spec, strategy="sequential", chunk=7)
    fixed.plan(None, None, 16)
    assert fixed.C == 7


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [{}, {"n_fetch": 2, "n_push": 2}, {"kind": "sync"}])
def test_cnn_replay_matches_the_python_reference(digits_cnn, protocol):
    task, data = digits_cnn
    spec, trace = schedule(15, 4, 24, **protocol)
    state, p0, smp = simulate(task, data, trace, spec=spec)
    want = reference(task, data, trace, smp, p0, local=spec.local_updates)
    assert_trees_close(state.server.params, want, atol=1e-5)
