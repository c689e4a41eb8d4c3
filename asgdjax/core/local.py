"""Downpour's local step (Dean et al. 2012): a client moves its own copy by -lr * g between fetches and
accumulates g for its next push. One formula for the simulator, local workers and Ray actors, so a replay
stays exact by construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from asgdjax.core.task import Params


def sgd_step(params: Params, grads: Params, lr: jax.Array | float) -> Params:
    """params - lr * grads."""
    return jax.tree.map(lambda x, d: x - lr * d, params, grads)


def local_sgd(params: Params, acc: Params, grads: Params, lr: jax.Array | float) -> tuple[Params, Params]:
    """The worker's copy after a local step, and the accumulator holding g for the next push."""
    return sgd_step(params, grads, lr), jax.tree.map(jnp.add, acc, grads)
