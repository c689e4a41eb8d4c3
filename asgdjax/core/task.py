"""The task contract every mode computes with: what a worker needs to turn parameters into a gradient.

A task is pure functions over a pytree of parameters and a pytree of data arrays that lives on the device
once; a step receives example *indices* and gathers there, so it moves a few hundred bytes instead of a
batch. Data arrays are explicit arguments (never closed over), so jit does not bake them into programs.
The bundled image classifiers (`asgdjax.train.task.ClassificationTask`) and a researcher's own loss
(`asgdjax.LossTask`, behind `asgdjax.simulate`) are both implementations of this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Params = Any  # a pytree of arrays
Data = Any  # a pytree of arrays (on the device), indexed by example along axis 0 where it is training data


@runtime_checkable
class Task(Protocol):
    """`init(key) -> params`; `grad(params, data, indices, key) -> (loss, grads)`.

    Optional: `evaluate(params, data) -> dict[str, float]` (held-out metrics, e.g. test_accuracy),
    `partition_specs() -> pytree of PartitionSpec` naming each parameter's logical axes for model
    parallelism (without it every array is replicated), and `load(indices, seeds) -> pytree`: a host-side
    loader for data too large for the device (then `grad` receives the loaded batch in place of indices;
    `indices` is int32[n, B], `seeds` uint64[n], the result has the leading axis n; asgdjax.core.inputs).
    """

    def init(self, key: jax.Array) -> Params: ...

    def grad(self, params: Params, data: Data, indices: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]: ...


def batch_key(base: jax.Array, worker: int | jax.Array, step: int | jax.Array) -> jax.Array:
    """The PRNG key of worker `worker`'s batch `step` (augmentation, dropout, sampling): same in every mode."""
    return jax.random.fold_in(jax.random.fold_in(base, worker), step)


def take_rows(x: jax.Array, indices: jax.Array) -> jax.Array:
    """Rows `indices` of `x` (a step's batch from device data). The indices come from a sampler, which keeps
    them below len(x), so the gather clips rather than fills: jnp.take's default fill mode masks every
    element (NaN for an index out of range), which XLA:CPU cannot emit as row copies, and costs 1.6x per
    event on a small least-squares problem (experiments/bench/small_problems.py)."""
    return jnp.take(x, indices, axis=0, mode="clip")


def evaluate(task: Task, params: Params, data: Data) -> dict[str, float]:
    """The task's held-out metrics, or {} when it has none."""
    fn = getattr(task, "evaluate", None)
    return dict(fn(params, data)) if fn is not None else {}
