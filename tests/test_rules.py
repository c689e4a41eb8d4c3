"""Each staleness rule against its paper's formula, on hand-computed numbers; the optax contract every
rule keeps; asynchrony-compensated momentum (Mitliagkas et al. 2016) on hand numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from asgdjax.core.server import Server
from asgdjax.errors import ConfigError
from asgdjax.rules import (
    FRESH_IDENTITY,
    RULES,
    choose,
    compensated_momentum,
    compensated_momentum_value,
    dc_asgd,
    dc_asgd_adaptive,
    delay_adaptive,
    implicit_momentum,
    make_rule,
    plain,
    staleness_scaled_lr,
)

W = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
G = {"a": jnp.array([0.5, -1.0]), "b": jnp.array(2.0)}
WR = {"a": jnp.array([0.0, 1.0]), "b": jnp.array(1.0)}


def run(tx, staleness=0, worker=0, read=WR, state=None):
    state = tx.init(W) if state is None else state
    return tx.update(G, state, W, staleness=staleness, read_params=read, worker=worker)


def close(tree, want):
    for k in want:
        np.testing.assert_allclose(tree[k], want[k], rtol=1e-6)


def test_staleness_scaled_lr_is_lr0_over_tau_and_lr0_at_zero():
    close(run(staleness_scaled_lr(), staleness=4)[0], {"a": [0.125, -0.25], "b": 0.5})
    close(run(staleness_scaled_lr(), staleness=0)[0], {"a": [0.5, -1.0], "b": 2.0})
    close(run(staleness_scaled_lr(), staleness=1)[0], {"a": [0.5, -1.0], "b": 2.0})


def test_delay_adaptive_is_k_over_max_k_tau():
    tx = delay_adaptive(num_workers=4)
    close(run(tx, staleness=3)[0], {"a": [0.5, -1.0], "b": 2.0})  # tau <= K: full step
    close(run(tx, staleness=8)[0], {"a": [0.25, -0.5], "b": 1.0})  # 4 / 8


def test_dc_asgd_constant_lambda():
    # g + 0.5 * g^2 * (w - w_read): a = [0.5 + 0.5*0.25*1, -1 + 0.5*1*1], b = 2 + 0.5*4*2
    close(run(dc_asgd(0.5))[0], {"a": [0.625, -0.5], "b": 6.0})


def test_dc_asgd_with_lambda_zero_is_plain_asgd():
    close(run(dc_asgd(0.0), staleness=5)[0], run(plain(), staleness=5)[0])


def test_dc_asgd_adaptive_uses_the_workers_own_mean_square():
    tx = dc_asgd_adaptive(0.1, num_workers=2, momentum=0.95, eps=1e-7)
    out, state = run(tx, worker=1)
    ms_a0 = 0.05 * 0.25  # (1 - m) * g^2 on a fresh mean square
    lam = 0.1 / np.sqrt(ms_a0 + 1e-7)
    np.testing.assert_allclose(out["a"][0], 0.5 + lam * 0.25 * 1.0, rtol=1e-6)
    np.testing.assert_allclose(state.mean_square["a"][1], [0.0125, 0.05], rtol=1e-6)
    np.testing.assert_array_equal(state.mean_square["a"][0], [0.0, 0.0])  # worker 0 untouched
    # second arrival from worker 1: MeanSquare <- 0.95 * 0.0125 + 0.05 * 0.25
    _, state = run(tx, worker=1, state=state)
    np.testing.assert_allclose(state.mean_square["a"][1, 0], 0.95 * 0.0125 + 0.05 * 0.25, rtol=1e-6)


def test_rules_compose_with_any_optax_optimizer():
    tx = optax.chain(staleness_scaled_lr(), optax.sgd(0.1))
    updates, _ = run(tx, staleness=2)
    close(updates, {"a": [-0.025, 0.05], "b": -0.1})
    tx = optax.chain(dc_asgd(0.5), optax.adam(1e-3))
    updates, _ = run(tx, staleness=2)
    assert jnp.all(jnp.isfinite(updates["a"]))


def test_server_apply_of_one_arrival_is_the_chained_transformation():
    server = Server(staleness_scaled_lr(), optax.sgd(0.1))
    state = server.init(W)._replace(version=jnp.int32(5))
    new = server.apply_one(state, G, read_version=2, worker=0, read_params=WR)  # tau = 3
    close(new.params, {"a": [1 - 0.1 * 0.5 / 3, 2 + 0.1 / 3], "b": 3 - 0.1 * 2 / 3})
    assert int(new.version) == 6


def test_server_group_averages_rule_outputs_and_ignores_padding():
    server = Server(staleness_scaled_lr(), optax.sgd(1.0))
    state = server.init(W)._replace(version=jnp.int32(4))
    grads = {"a": jnp.stack([G["a"], G["a"], G["a"] * 100]), "b": jnp.stack([G["b"], G["b"], G["b"] * 100])}
    reads = {"a": jnp.stack([WR["a"]] * 3), "b": jnp.stack([WR["b"]] * 3)}
    # slot 0 has tau 4 (scale 1/4), slot 1 tau 2 (1/2), slot 2 is padding
    new = server.apply(state, grads, jnp.array([0, 2, 0]), jnp.array([0, 1, 0]), reads, jnp.int32(2))
    mean = (0.25 + 0.5) / 2
    close(new.params, {"a": [1 - mean * 0.5, 2 + mean * 1.0], "b": 3 - mean * 2})


def test_unknown_rule_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown rule 'fancy'; allowed: none, staleness_lr"):
        make_rule("fancy", 4)


def test_server_rejects_nonfinite_gradients_and_counts_them_per_worker():
    server = Server(plain(), optax.sgd(1.0), num_workers=3)
    state = server.init(W)
    bad = {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.array(1.0)}
    new = server.apply_one(state, bad, read_version=0, worker=2, read_params=WR)
    close(new.params, W)  # untouched
    assert int(new.version) == 1 and new.rejected.tolist() == [[0, 0], [0, 0], [1, 0]]
    # In a group the bad slot is left out and the others are averaged.
    grads = {"a": jnp.stack([G["a"], bad["a"]]), "b": jnp.stack([G["b"], bad["b"]])}
    reads = {"a": jnp.stack([WR["a"]] * 2), "b": jnp.stack([WR["b"]] * 2)}
    new = server.apply(state, grads, jnp.array([0, 0]), jnp.array([0, 1]), reads, jnp.int32(2))
    close(new.params, {"a": [0.5, 3.0], "b": 1.0})
    assert new.rejected.tolist() == [[0, 0], [1, 0], [0, 0]]


def test_staleness_cap_drops_old_gradients():
    server = Server(plain(), optax.sgd(1.0), num_workers=2, staleness_cap=2)
    state = server.init(W)._replace(version=jnp.int32(5))
    old = server.apply_one(state, G, read_version=2, worker=1, read_params=WR)  # tau 3 > 2
    close(old.params, W)
    assert old.rejected.tolist() == [[0, 0], [0, 1]] and int(old.version) == 6
    fresh = server.apply_one(state, G, read_version=3, worker=1, read_params=WR)  # tau 2
    close(fresh.params, {"a": [0.5, 3.0], "b": 1.0})


@pytest.mark.parametrize("name", RULES)
def test_every_rule_keeps_the_optax_contract(name):
    tx = make_rule(name, 4)
    state = tx.init(W)
    kw = dict(read_params=W, worker=1)
    # staleness 0 (and reading the current parameters) leaves the gradient as plain SGD would see it
    out, _ = tx.update(G, state, W, staleness=0, **kw)
    close(out, G)
    # jit gives the same numbers; vmap over gradients and staleness gives each one's
    eager, _ = tx.update(G, state, W, staleness=3, read_params=WR, worker=1)
    jitted, _ = jax.jit(lambda g, t: tx.update(g, state, W, staleness=t, read_params=WR, worker=1))(G, 3)
    close(jitted, eager)
    gs = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), G)
    taus = jnp.array([3, 3])
    batched = jax.vmap(lambda g, t: tx.update(g, state, W, staleness=t, read_params=WR, worker=1)[0])(gs, taus)
    close(jax.tree.map(lambda x: x[0], batched), eager)
    # dtypes are kept
    half = lambda t: jax.tree.map(lambda x: x.astype(jnp.bfloat16), t)
    out16, _ = tx.update(half(G), tx.init(half(W)), half(W), staleness=2, read_params=half(WR), worker=0)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(out16))
    # composes with any optax optimizer, extra arguments passed through the chain
    chain = optax.chain(tx, optax.adam(1e-3))
    upd, _ = chain.update(G, chain.init(W), W, staleness=2, read_params=WR, worker=0)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(upd))


def test_a_chosen_rule_is_that_rule_exactly_with_a_traced_index_and_other_states_untouched():
    """choose(rules, i) under jit with i traced: one program, the i-th rule's numbers bit for bit, its
    state updated (DC-ASGD adaptive's per-worker mean square) and every other rule's passed through."""
    names = ("none", "staleness_lr", "dc_asgd_adaptive", "delay_adaptive")
    rules = [make_rule(n, 4) for n in names]
    compiled = []

    @jax.jit
    def update(i, g, state, tau):
        compiled.append(1)
        return choose(rules, i).update(g, state, W, staleness=tau, read_params=WR, worker=2)

    state = choose(rules, 0).init(W)
    for i, rule in enumerate(rules):
        want, want_state = jax.jit(lambda g, s, t, r=rule: r.update(g, s, W, staleness=t, read_params=WR, worker=2))(
            G, state[i], 3
        )
        got, got_state = update(float(i), G, state, 3)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        for j in range(len(rules)):
            expected = want_state if j == i else state[j]
            for a, b in zip(jax.tree.leaves(got_state[j]), jax.tree.leaves(expected), strict=True):
                np.testing.assert_array_equal(a, b)
    assert len(compiled) == 1


def test_rules_named_fresh_identity_pass_a_fresh_gradient_bit_for_bit_and_keep_no_state():
    """At staleness 0 the worker read the server's own parameters: each FRESH_IDENTITY rule returns the
    gradient unchanged and an empty state (what lets the planner share such runs' common prefix); the other
    rules are excluded for a reason (DC-ASGD adaptive keeps a running mean square)."""
    grads = {"a": jnp.array([0.5, -1.0, -0.0, 3e-38]), "b": jnp.array(2.0)}
    params = {"a": jnp.array([1.0, 2.0, -4.0, 7.0]), "b": jnp.array(3.0)}
    assert FRESH_IDENTITY.issubset(RULES) and set(RULES) != FRESH_IDENTITY
    for name in RULES:
        rule = make_rule(name, 4)
        state = rule.init(params)
        out, new = jax.jit(lambda g, s, r=rule: r.update(g, s, params, staleness=0, read_params=params, worker=1))(
            grads, state
        )
        same = all(np.array_equal(np.asarray(out[k]), np.asarray(grads[k])) for k in grads)
        stateless = not jax.tree.leaves(state) and not jax.tree.leaves(new)
        assert (same and stateless) == (name in FRESH_IDENTITY), name


def test_implicit_momentum_of_asynchrony_is_tau_over_one_plus_tau():
    # M memoryless workers: geometric staleness with mean M - 1, momentum 1 - 1/M
    for m in (1, 2, 4, 8):
        np.testing.assert_allclose(implicit_momentum(m - 1), 1 - 1 / m, rtol=1e-6)


def test_compensated_momentum_keeps_the_total_at_its_target():
    # (1 - mu_total) = (1 - mu)(1 - q): target 0.9 with q = 0.75 (4 workers) needs mu = 1 - 0.1 / 0.25 = 0.6
    np.testing.assert_allclose(compensated_momentum_value(0.9, 0.75), 0.6, rtol=1e-6)
    np.testing.assert_allclose(compensated_momentum_value(0.9, 0.875), 0.2, rtol=1e-5)
    assert float(compensated_momentum_value(0.9, 0.9375)) == 0.0  # floor
    np.testing.assert_allclose(compensated_momentum_value(0.9, 0.9375, floor=-1.0), -0.6, rtol=1e-5)
    assert float(compensated_momentum_value(0.9, 0.0)) == np.float32(0.9)  # synchronous: unchanged


def test_compensated_momentum_on_hand_numbers():
    g = {"a": jnp.array(1.0)}
    p = {"a": jnp.array(0.0)}
    open_loop = compensated_momentum(0.9, num_workers=4)  # mu = 0.6
    s = open_loop.init(p)
    t1, s = open_loop.update(g, s, p, staleness=3)
    t2, s = open_loop.update(g, s, p, staleness=3)
    np.testing.assert_allclose([t1["a"], t2["a"]], [1.0, 1.6], rtol=1e-6)
    measured = compensated_momentum(0.9, prior_staleness=3.0)  # staleness stays 3: q = 0.75, mu = 0.6
    s = measured.init(p)
    t1, s = measured.update(g, s, p, staleness=3)
    t2, s = measured.update(g, s, p, staleness=3)
    np.testing.assert_allclose([t1["a"], t2["a"]], [1.0, 1.6], rtol=1e-6)
    # no staleness at all: exactly optax.trace(0.9)
    sync, ref = compensated_momentum(0.9), optax.trace(0.9)
    s, r = sync.init(p), ref.init(p)
    for _ in range(3):
        a, s = sync.update(g, s, p, staleness=0)
        b, r = ref.update(g, r, p)
        np.testing.assert_allclose(a["a"], b["a"], rtol=1e-7)


def test_the_server_passes_each_updates_staleness_to_the_optimizer():
    server = Server(plain(), optax.chain(compensated_momentum(0.9), optax.scale(-1.0)))
    state = server.init(W)._replace(version=jnp.int32(7))
    new = server.apply_one(state, G, read_version=4, worker=0, read_params=WR)  # tau 3
    ema = new.opt_state[0].staleness_ema
    np.testing.assert_allclose(ema, 0.1 * 3, rtol=1e-6)  # 0.9 * 0 + 0.1 * 3 (bias-corrected: 3)
