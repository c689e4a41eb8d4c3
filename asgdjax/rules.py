"""Staleness-aware rules as optax transformations (`GradientTransformationExtraArgs`).

Each rule transforms one worker's gradient on arrival, given `staleness=` (server version at apply minus
the version the worker read) and, where the rule needs them, `read_params=` (the exact parameters the
worker computed on) and `worker=` (its index). They compose with any optax optimizer:

    tx = optax.chain(asgdjax.rules.staleness_scaled_lr(), optax.sgd(0.1))
    updates, state = tx.update(grads, state, params, staleness=3, read_params=snapshot, worker=1)

The server (asgdjax.server) applies the rule to each arriving gradient, averages a group of them (sync,
softsync, SSP), then runs the optimizer once: with one gradient per update that is exactly the chain above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from asgdjax.errors import ConfigError

RULES = ("none", "staleness_lr", "dc_asgd", "dc_asgd_adaptive", "delay_adaptive")
# Rules with no state that pass a gradient through bit for bit at staleness 0 (where the parameters a worker
# read are the server's): runs that differ only in such a rule are one run until the first stale gradient,
# which the planner shares (asgdjax.plan.lanes). tests/test_rules.py checks each member.
FRESH_IDENTITY = frozenset({"none", "staleness_lr", "delay_adaptive", "dc_asgd"})


def plain() -> optax.GradientTransformationExtraArgs:
    """Plain A-SGD / Downpour: the gradient passes unchanged whatever its staleness."""

    def update_fn(updates, state, params=None, **extra):
        del params, extra
        return updates, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def staleness_scaled_lr() -> optax.GradientTransformationExtraArgs:
    """Zhang et al. 2016: scale the gradient by 1/tau (lr0/tau), and by 1 at tau = 0."""

    def update_fn(updates, state, params=None, *, staleness, **extra):
        del params, extra
        scale = 1.0 / jnp.maximum(jnp.asarray(staleness, jnp.float32), 1.0)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def delay_adaptive(num_workers: int) -> optax.GradientTransformationExtraArgs:
    """Mishchenko et al. 2022: scale by K / max(K, tau) (full step while tau <= K workers)."""
    k = float(num_workers)

    def update_fn(updates, state, params=None, *, staleness, **extra):
        del params, extra
        scale = k / jnp.maximum(k, jnp.asarray(staleness, jnp.float32))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def dc_asgd(lam: float) -> optax.GradientTransformationExtraArgs:
    """Zheng et al. 2017, constant lambda: g + lam * g * g * (w - w_read), elementwise.

    `params` is the server's current w; `read_params` the snapshot the worker computed g on.
    """

    def update_fn(updates, state, params=None, *, read_params, **extra):
        del extra
        out = jax.tree.map(lambda g, w, wr: g + lam * g * g * (w - wr), updates, params, read_params)
        return out, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


class DCAdaptiveState(NamedTuple):
    mean_square: optax.Params  # per worker: leaves of shape (num_workers, *param.shape)


def dc_asgd_adaptive(
    lam0: float, num_workers: int, momentum: float = 0.95, eps: float = 1e-7
) -> optax.GradientTransformationExtraArgs:
    """Zheng et al. 2017, adaptive lambda: lam_t = lam0 / sqrt(MeanSquare_m + eps), per worker m.

    MeanSquare_m <- momentum * MeanSquare_m + (1 - momentum) * g^2 is updated with worker m's gradient
    before it is used; then g + lam_t * g * g * (w - w_read(m)).
    """

    def init_fn(params):
        return DCAdaptiveState(jax.tree.map(lambda p: jnp.zeros((num_workers, *p.shape), p.dtype), params))

    def update_fn(updates, state, params=None, *, read_params, worker, **extra):
        del extra

        def one(g, w, wr, ms):
            ms_w = momentum * ms[worker] + (1.0 - momentum) * g * g
            lam = lam0 / jnp.sqrt(ms_w + eps)
            return g + lam * g * g * (w - wr), ms.at[worker].set(ms_w)

        pairs = jax.tree.map(one, updates, params, read_params, state.mean_square)
        outer = jax.tree.structure(updates)
        out, ms = jax.tree.transpose(outer, jax.tree.structure((0, 0)), pairs)
        return out, DCAdaptiveState(ms)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_rule(name: str, num_workers: int, lam: float = 0.04) -> optax.GradientTransformationExtraArgs:
    """The rule called `name` (see RULES); unknown names raise ConfigError."""
    if name == "none":
        return plain()
    if name == "staleness_lr":
        return staleness_scaled_lr()
    if name == "delay_adaptive":
        return delay_adaptive(num_workers)
    if name == "dc_asgd":
        return dc_asgd(lam)
    if name == "dc_asgd_adaptive":
        return dc_asgd_adaptive(lam, num_workers)
    raise ConfigError(f"unknown rule {name!r}; allowed: {', '.join(RULES)}")


def choose(rules: Sequence[optax.GradientTransformationExtraArgs], index) -> optax.GradientTransformationExtraArgs:
    """rules[index] with `index` possibly traced: every rule compiles into one program and `lax.switch`
    applies the chosen one (its state updated, the others' passed through). The planner searches rules
    this way: one compiled simulator per worker count and protocol instead of one per rule."""
    rules = tuple(rules)

    def init_fn(params):
        return tuple(r.init(params) for r in rules)

    def update_fn(updates, state, params=None, **extra):
        def branch(i):
            def apply(updates, state, params, extra):
                out, new = rules[i].update(updates, state[i], params, **extra)
                return out, (*state[:i], new, *state[i + 1 :])

            return apply

        i = jnp.clip(jnp.round(jnp.asarray(index)).astype(jnp.int32), 0, len(rules) - 1)
        return jax.lax.switch(i, [branch(j) for j in range(len(rules))], updates, state, params, extra)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class CompensatedMomentumState(NamedTuple):
    trace: optax.Params  # the momentum buffer (optax.trace's)
    staleness_ema: jax.Array  # float32: running (bias-corrected) mean staleness of the updates seen
    updates: jax.Array  # int32: updates seen


def implicit_momentum(mean_staleness) -> jax.Array:
    """Mitliagkas et al. 2016: asynchrony alone acts as momentum q = tau / (1 + tau).

    Their queueing model gives staleness geometric, P(tau = l) = (1 - q) q^l, with q = 1 - 1/M for M
    workers of memoryless speed; its mean is q / (1 - q) = M - 1. Read backwards, a measured mean staleness
    tau means q = tau / (1 + tau), which also covers SSP bounds, softsync groups and unequal speeds.
    """
    tau = jnp.maximum(jnp.asarray(mean_staleness, jnp.float32), 0.0)
    return tau / (1.0 + tau)


def compensated_momentum_value(target, implicit, floor: float = 0.0) -> jax.Array:
    """The explicit momentum that keeps the total at `target`: mu = 1 - (1 - target) / (1 - q), >= floor.

    With explicit momentum mu, the expected update under the queueing model is the second-order recurrence
    D[t+1] = (mu + q) D[t] - mu q D[t-1] - lr (1 - q) grad(W[t]), whose roots are mu and q. Its steady-state
    gain fixes the total momentum: 1 - mu_total = (1 - mu)(1 - q). Solving for mu_total = target gives the
    formula; M workers (q = 1 - 1/M) give mu = 1 - M (1 - target), e.g. target 0.9: 0.8, 0.6, 0.2 at M = 2,
    4, 8 and 0 (the floor) from M = 10 on. Negative values (a floor below 0) are what the paper found best
    under heavy asynchrony.
    """
    q = jnp.asarray(implicit, jnp.float32)
    mu = 1.0 - (1.0 - jnp.asarray(target, jnp.float32)) / jnp.maximum(1.0 - q, 1e-6)
    return jnp.where(q > 0, jnp.clip(mu, floor, target), jnp.float32(target))


def compensated_momentum(
    momentum: float,
    *,
    num_workers: int | None = None,
    prior_staleness: float | None = None,
    floor: float = 0.0,
    ema: float = 0.9,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """Heavy-ball momentum whose coefficient shrinks as asynchrony adds its own (Mitliagkas et al. 2016).

    `momentum` is the total momentum wanted (what synchronous training was tuned with). The explicit
    coefficient is `compensated_momentum_value(momentum, q)`, q the implicit momentum: open loop from
    `num_workers` (q = 1 - 1/K), or, when it is None, measured from the mean staleness of the updates seen
    (the server passes each update's mean staleness as `staleness=`; a running mean with decay `ema`,
    started at `prior_staleness` when given, e.g. K - 1 for K plain async workers, else bias-corrected
    from zero). The prior matters at the start, when every worker's first gradient is stale but few have
    arrived: measured from zero, the momentum would start at its synchronous value exactly then. With no
    staleness (synchronous runs) it is plain `optax.trace(momentum)`. Chain it before the learning rate:
    `optax.chain(compensated_momentum(0.9), optax.scale(-lr))`.
    """
    start = jnp.float32(prior_staleness or 0.0)

    def init_fn(params):
        trace = jax.tree.map(jnp.zeros_like, params)
        return CompensatedMomentumState(trace, start, jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, *, staleness=0, **extra):
        del params, extra
        count = state.updates + 1
        ema_value = ema * state.staleness_ema + (1.0 - ema) * jnp.asarray(staleness, jnp.float32)
        if num_workers is None:
            correction = 1.0 if prior_staleness is not None else 1.0 - ema ** count.astype(jnp.float32)
            q = implicit_momentum(ema_value / correction)
        else:
            q = jnp.float32(1.0 - 1.0 / num_workers)
        mu = compensated_momentum_value(momentum, q, floor)
        trace = jax.tree.map(lambda g, t: g + mu.astype(t.dtype) * t, updates, state.trace)
        out = jax.tree.map(lambda g, t: g + mu.astype(t.dtype) * t, updates, trace) if nesterov else trace
        return out, CompensatedMomentumState(trace, ema_value, count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
