"""A researcher's own problem as a `Task`: a loss function over any pytree of parameters, data as arrays.

`loss_fn(params, batch)` (or `loss_fn(params, batch, key)` for dropout, augmentation or noise) returns a
scalar; `batch` has the structure of `data` with each array cut to the batch's rows. Parameters may be
plain arrays, a Flax Linen `params` dict, the `nnx.State` of `nnx.split(model)` (merge it back inside the
loss), or any other pytree of arrays.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.task import Params, take_rows
from asgdjax.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class LossTask:
    """Implements the Task protocol: `init` returns the given starting parameters; `grad` differentiates
    the loss on the batch `indices` of the device-resident data."""

    loss_fn: Callable[..., jax.Array]
    params: Params
    takes_key: bool = False

    @classmethod
    def of(cls, loss_fn: Callable[..., jax.Array], params: Params) -> LossTask:
        """The task of `loss_fn` starting from `params` (a pytree, or `init(key) -> pytree`)."""
        if not callable(loss_fn):
            raise ConfigError(f"loss_fn={loss_fn!r} is not callable; give loss(params, batch[, key]) -> scalar")
        if isinstance(params, list | tuple) and params and all(isinstance(x, int | float) for x in params):
            raise ConfigError(
                f"params is a Python {type(params).__name__} of {len(params)} numbers, which JAX treats as "
                f"{len(params)} separate scalars; give an array, e.g. jnp.asarray(params)"
            )
        return cls(loss_fn, params, _takes_key(loss_fn))

    def check_shapes(self, data: Any, batch_size: int) -> None:
        """Traced abstractly on one batch (no FLOPs): every parameter leaf is a float array (gradients are
        taken with respect to all of them) and the loss returns one scalar; otherwise one line saying so."""
        params = jax.eval_shape(self.init, jax.random.key(0))
        given = self.params if _is_pytree_of_arrays(self.params) else params  # dtypes as given (int64 stays)
        for path, leaf in jax.tree_util.tree_leaves_with_path(given):
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                where = f"params leaf {jax.tree_util.keystr(path)}" if path else "params"
                raise ConfigError(
                    f"{where} is {leaf.dtype}: every leaf is trained, so give "
                    "floating-point arrays only (for flax.nnx: graphdef, params, rest = nnx.split(model, nnx.Param, "
                    "...), pass params and merge the rest back inside the loss)"
                )
        batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((batch_size, *np.shape(x)[1:]), x.dtype), data)
        args = (params, batch, jax.random.key(0)) if self.takes_key else (params, batch)
        out = jax.eval_shape(self.loss_fn, *args)
        if isinstance(out, tuple | list):
            raise ConfigError(
                f"loss_fn returned a {type(out).__name__} of {len(out)}; return the scalar loss only (e.g. "
                "lambda p, b: loss(p, b)[0]): auxiliary outputs are not carried"
            )
        shape = getattr(out, "shape", None)
        if shape != () or not jnp.issubdtype(out.dtype, jnp.inexact):
            raise ConfigError(
                f"loss_fn returned {getattr(out, 'dtype', type(out).__name__)}{list(shape or [])}; return one "
                "float scalar (e.g. the jnp.mean of per-example losses)"
            )

    def init(self, key: jax.Array) -> Params:
        if callable(self.params) and not _is_pytree_of_arrays(self.params):
            return self.params(key)
        return jax.tree.map(jnp.asarray, self.params)

    def grad(self, params: Params, data: Any, indices: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        batch = jax.tree.map(lambda x: take_rows(x, indices), data)
        if self.takes_key:
            return jax.value_and_grad(lambda p: self.loss_fn(p, batch, key))(params)
        return jax.value_and_grad(lambda p: self.loss_fn(p, batch))(params)


def _takes_key(fn: Callable) -> bool:
    """Whether fn accepts a third positional argument (the batch's PRNG key)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def _is_pytree_of_arrays(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(hasattr(x, "shape") for x in leaves)


def check_data(data: Any, name: str = "data") -> int:
    """The number of examples in `data` (a pytree of arrays sharing their leading axis); one line if not."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ConfigError(f"{name} holds no arrays; give arrays with one row per example, e.g. (X, y)")
    sizes = []
    for leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ConfigError(
                f"{name} holds a scalar; every array needs one row per example (a leading axis); a Python list "
                "is a pytree of its elements, so give numpy arrays, e.g. (np.asarray(X), np.asarray(y))"
            )
        sizes.append(shape[0])
    if len(set(sizes)) != 1:
        raise ConfigError(
            f"{name} arrays have different numbers of rows {sorted(set(sizes))}; give one row per example"
        )
    if sizes[0] < 1:
        raise ConfigError(f"{name} has no rows; give at least one example")
    return int(sizes[0])
