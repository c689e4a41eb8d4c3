"""The one table from logical parameter axes to mesh axes, and its application to concrete shapes.

Output channels of convolutions, hidden units of dense layers and the classes of the classifier are split
over the `model` mesh axis (column-parallel layers: each device computes a slice of every layer's outputs,
and XLA gathers activations where the next layer needs all of them). Input axes stay whole. A dimension
that the mesh axis does not divide (10 classes over 4 devices) stays replicated rather than padded.
"""

from __future__ import annotations

from jax.sharding import Mesh, PartitionSpec

from asgdjax.core.axes import CLASSES, CONV_IN, CONV_OUT, EMBED, HIDDEN

MODEL, DATA = "model", "data"

LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    (CONV_OUT, MODEL),
    (HIDDEN, MODEL),
    (CLASSES, MODEL),
    (CONV_IN, None),
    (EMBED, None),
)


def mesh_spec(logical: PartitionSpec | tuple, shape: tuple[int, ...], mesh: Mesh, rules=LOGICAL_RULES) -> PartitionSpec:
    """The mesh PartitionSpec of an array of `shape` annotated `logical`; indivisible dims stay replicated."""
    table = dict(rules)
    axes = []
    for name, size in zip(tuple(logical) + (None,) * (len(shape) - len(logical)), shape, strict=True):
        axis = table.get(name) if name is not None else None
        if axis is not None and (mesh.shape[axis] == 1 or size % mesh.shape[axis]):
            axis = None
        axes.append(axis)
    while axes and axes[-1] is None:
        axes.pop()
    return PartitionSpec(*axes)
