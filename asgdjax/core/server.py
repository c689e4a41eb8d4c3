"""The parameter server's update: the one function both the simulator and the real runtime call.

An update applies a *group* of arriving gradients (one for plain A-SGD, c for n-softsync, all K for sync
SGD or a group released by the SSP bound): each gradient goes through the staleness rule with its own
staleness and read snapshot, the group is averaged, then the optimizer steps once and the version grows by
one. Slots beyond `count` are padding and leave the state untouched, so the shapes are fixed for jit.

Guards: a gradient holding NaN or Inf, or (with `staleness_cap` >= 0) one staler than the cap, is rejected:
it is left out of its group, counted per worker in `ServerState.rejected`, and a group left empty makes
no update. The version still grows, so versions count server decisions the same way in the simulator, the
runtime and the trace (no host round-trip is needed to know whether an update was accepted).

The optimizer receives the update's mean staleness as an extra argument (`staleness=`), so staleness-aware
optimizers such as `asgdjax.rules.compensated_momentum` see it; any optax optimizer works (plain ones are
wrapped with `optax.with_extra_args_support` and ignore it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from asgdjax.core.task import Params

NONFINITE, STALE = 0, 1  # columns of ServerState.rejected


class ServerState(NamedTuple):
    params: Params
    opt_state: optax.OptState
    rule_state: optax.OptState
    version: jax.Array  # int32: number of server decisions (updates) so far
    rejected: jax.Array  # int32[num_workers, 2]: gradients rejected per worker (non-finite, too stale)


class Server(NamedTuple):
    """A staleness rule and an optimizer, plus the guards; `init` and `apply` are pure."""

    rule: optax.GradientTransformationExtraArgs
    optimizer: optax.GradientTransformation
    num_workers: int = 1
    staleness_cap: int = -1  # -1: no cap

    @property
    def _opt(self) -> optax.GradientTransformationExtraArgs:
        return optax.with_extra_args_support(self.optimizer)

    def init(self, params: Params) -> ServerState:
        return ServerState(
            params,
            self.optimizer.init(params),
            self.rule.init(params),
            jnp.zeros((), jnp.int32),
            jnp.zeros((self.num_workers, 2), jnp.int32),
        )

    def apply(
        self,
        state: ServerState,
        grads: Params,
        read_versions: jax.Array,
        workers: jax.Array,
        read_params: Params,
        count: jax.Array,
    ) -> ServerState:
        """Apply the accepted slots of [0, count) of the stacked group (leading axis G) as one update.

        grads, read_params: pytrees with leading axis G; read_versions, workers: int32[G]; count: int32.
        Staleness of slot j is `state.version - read_versions[j]`.
        """
        num_slots = workers.shape[0]
        staleness = state.version - read_versions
        finite = jax.vmap(_all_finite)(grads)
        valid = jnp.arange(num_slots) < count
        ok = valid & finite & self._fresh(staleness)
        rejected = self._count_rejections(state.rejected, workers, valid, finite, staleness)

        def body(
            carry: tuple[Params, optax.OptState], j: jax.Array | int
        ) -> tuple[tuple[Params, optax.OptState], None]:
            total, rule_state = carry
            g = jax.tree.map(lambda x: x[j], grads)
            rp = jax.tree.map(lambda x: x[j], read_params)
            g, new_rule_state = self.rule.update(
                g, rule_state, state.params, staleness=staleness[j], read_params=rp, worker=workers[j]
            )
            total = jax.tree.map(lambda t, x: t + jnp.where(ok[j], x, jnp.zeros_like(x)), total, g)
            rule_state = jax.tree.map(lambda new, old: jnp.where(ok[j], new, old), new_rule_state, rule_state)
            return (total, rule_state), None

        def update(s: ServerState) -> ServerState:
            zeros = jax.tree.map(jnp.zeros_like, s.params)
            if num_slots == 1:
                (total, rule_state), _ = body((zeros, s.rule_state), 0)
            else:
                (total, rule_state), _ = jax.lax.scan(body, (zeros, s.rule_state), jnp.arange(num_slots))
            n = jnp.sum(ok).astype(jnp.float32)
            mean = jax.tree.map(lambda t: t / n.astype(t.dtype), total)
            tau = jnp.sum(jnp.where(ok, staleness, 0)).astype(jnp.float32) / n
            updates, opt_state = self._opt.update(mean, s.opt_state, s.params, staleness=tau)
            return s._replace(params=optax.apply_updates(s.params, updates), opt_state=opt_state, rule_state=rule_state)

        state = jax.lax.cond(jnp.any(ok), update, lambda s: s, state)
        return state._replace(version=state.version + 1, rejected=rejected)

    def apply_one(
        self, state: ServerState, grad: Params, read_version: Any, worker: Any, read_params: Params
    ) -> ServerState:
        """A single arrival (plain A-SGD): rule, optimizer, version + 1, with no group bookkeeping.

        Equal to `apply` with a group of one up to float rounding (no masking or averaging passes over the
        parameters, which for a 61M-parameter AlexNet cost as much as the optimizer itself).
        """
        worker = jnp.asarray(worker, jnp.int32)
        staleness = state.version - jnp.asarray(read_version, jnp.int32)
        finite = _all_finite(grad)
        ok = finite & self._fresh(staleness)
        rejected = self._count_rejections(state.rejected, worker[None], True, finite[None], staleness[None])

        def update(s: ServerState) -> ServerState:
            g, rule_state = self.rule.update(
                grad, s.rule_state, s.params, staleness=staleness, read_params=read_params, worker=worker
            )
            updates, opt_state = self._opt.update(g, s.opt_state, s.params, staleness=staleness)
            return s._replace(params=optax.apply_updates(s.params, updates), opt_state=opt_state, rule_state=rule_state)

        state = jax.lax.cond(ok, update, lambda s: s, state)
        return state._replace(version=state.version + 1, rejected=rejected)

    def _fresh(self, staleness: jax.Array) -> jax.Array:
        return staleness <= self.staleness_cap if self.staleness_cap >= 0 else jnp.ones_like(staleness, bool)

    def _count_rejections(
        self, rejected: jax.Array, workers: jax.Array, valid: Any, finite: jax.Array, staleness: jax.Array
    ) -> jax.Array:
        bad = valid & ~finite
        stale = valid & finite & ~self._fresh(staleness)
        rejected = rejected.at[workers, NONFINITE].add(bad.astype(jnp.int32))
        return rejected.at[workers, STALE].add(stale.astype(jnp.int32))


def _all_finite(tree: Params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
