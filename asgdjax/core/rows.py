"""A batch's rows of the training data inside a compiled step: `take_rows(x, indices)` is
`jnp.take(x, indices, axis=0)`, the same values, written for the backend that runs it.

XLA:CPU's gather copies element by element; a loop of row slices copies each row whole. Measured on the
small-problems event (32 rows of 400 float32 from a 10,000-row matrix, least-squares gradient, 2-core EPYC,
one process): 7.1-7.8 against 13.1 us per event in a bare scan, and asgdjax.simulate 1.4-1.6x faster
(experiments/bench/small_problems.py); for image batches (MNIST b64, CIFAR-10 b128) the two were within
noise, beside a convolution step's milliseconds, so the built-in tasks keep jnp.take and `asgdjax.simulate`'s
own-loss task (where small problems live) uses this. Accelerators keep the one gather (a loop would
launch a kernel per row), and so does a vmapped call (sweeps, waves): batched, its slices become gathers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOOP_MAX_ROWS = 512  # larger batches keep the gather (each loop iteration has a fixed cost)


def take_rows(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x[indices] along axis 0, for int indices of shape [batch] that are in bounds (a sampler's)."""
    if jax.default_backend() != "cpu" or jnp.ndim(indices) != 1 or jnp.shape(indices)[0] > LOOP_MAX_ROWS:
        return jnp.take(x, indices, axis=0)
    out: jax.Array = _row_loop(x, indices)
    return out


@jax.custom_batching.custom_vmap
def _row_loop(x: jax.Array, indices: jax.Array) -> jax.Array:
    out = jnp.zeros((indices.shape[0], *x.shape[1:]), x.dtype)

    def copy_row(i: jax.Array, out: jax.Array) -> jax.Array:
        row = jax.lax.dynamic_slice_in_dim(x, indices[i], 1, axis=0)
        return jax.lax.dynamic_update_slice_in_dim(out, row, i, axis=0)

    rows: jax.Array = jax.lax.fori_loop(0, indices.shape[0], copy_row, out)
    return rows


@_row_loop.def_vmap
def _row_loop_batched(
    axis_size: int, in_batched: list[bool], x: jax.Array, indices: jax.Array
) -> tuple[jax.Array, bool]:
    """Under vmap: one gather of every batch's rows."""
    x_batched, i_batched = in_batched
    axes = (0 if x_batched else None, 0 if i_batched else None)
    return jax.vmap(lambda a, i: jnp.take(a, i, axis=0), in_axes=axes, axis_size=axis_size)(x, indices), True
