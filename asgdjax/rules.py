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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from asgdjax.errors import ConfigError

RULES = ("none", "staleness_lr", "dc_asgd", "dc_asgd_adaptive", "delay_adaptive")


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
