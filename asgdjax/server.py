"""The parameter server's update: the one function both the simulator and the real runtime call.

An update applies a *group* of arriving gradients (one for plain A-SGD, c for n-softsync, all K for sync
SGD or a group released by the SSP bound): each gradient goes through the staleness rule with its own
staleness and read snapshot, the group is averaged, then the optimizer steps once and the version grows by
one. Slots beyond `count` are padding and leave the state untouched, so the shapes are fixed for jit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ServerState(NamedTuple):
    params: optax.Params
    opt_state: optax.OptState
    rule_state: optax.OptState
    version: jax.Array  # int32: number of updates applied so far


class Server(NamedTuple):
    """A staleness rule and an optimizer; `init` and `apply` are pure."""

    rule: optax.GradientTransformationExtraArgs
    optimizer: optax.GradientTransformation

    def init(self, params) -> ServerState:
        return ServerState(params, self.optimizer.init(params), self.rule.init(params), jnp.zeros((), jnp.int32))

    def apply(self, state: ServerState, grads, read_versions, workers, read_params, count) -> ServerState:
        """Apply slots [0, count) of the stacked group (leading axis G) as one update.

        grads, read_params: pytrees with leading axis G; read_versions, workers: int32[G]; count: int32.
        Staleness of slot j is `state.version - read_versions[j]`.
        """
        num_slots = workers.shape[0]
        staleness = state.version - read_versions

        def body(carry, j):
            total, rule_state = carry
            g = jax.tree.map(lambda x: x[j], grads)
            rp = jax.tree.map(lambda x: x[j], read_params)
            g, new_rule_state = self.rule.update(
                g, rule_state, state.params, staleness=staleness[j], read_params=rp, worker=workers[j]
            )
            valid = j < count
            total = jax.tree.map(lambda t, x: t + jnp.where(valid, x, jnp.zeros_like(x)), total, g)
            rule_state = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_rule_state, rule_state)
            return (total, rule_state), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        if num_slots == 1:
            (total, rule_state), _ = body((zeros, state.rule_state), 0)
        else:
            (total, rule_state), _ = jax.lax.scan(body, (zeros, state.rule_state), jnp.arange(num_slots))
        mean = jax.tree.map(lambda t: t / jnp.maximum(count, 1).astype(t.dtype), total)
        updates, opt_state = self.optimizer.update(mean, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return ServerState(params, opt_state, rule_state, state.version + 1)

    def apply_one(self, state: ServerState, grad, read_version, worker, read_params) -> ServerState:
        """A single arrival (plain A-SGD): rule, optimizer, version + 1, with no group bookkeeping.

        Equal to `apply` with a group of one up to float rounding (no masking or averaging passes over the
        parameters, which for a 61M-parameter AlexNet cost as much as the optimizer itself).
        """
        g, rule_state = self.rule.update(
            grad,
            state.rule_state,
            state.params,
            staleness=state.version - jnp.asarray(read_version, jnp.int32),
            read_params=read_params,
            worker=jnp.asarray(worker, jnp.int32),
        )
        updates, opt_state = self.optimizer.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return ServerState(params, opt_state, rule_state, state.version + 1)
