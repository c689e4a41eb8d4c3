"""Where a worker group's trees live: parameters (and anything shaped like them) sharded over its mesh.

One `Placement` per device group. Every tree the modes keep (parameters, gradients, optimizer and rule
state, the simulator's stacked worker copies) gets its shardings from the parameters' logical axes:
a leaf whose path ends with a parameter's path takes that parameter's spec, with a leading replicated
axis when it is a stack of them (K worker copies, a ring of versions); everything else is replicated.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from asgdjax.parallel.mesh import group_mesh
from asgdjax.parallel.rules import DATA, MODEL, mesh_spec


@dataclasses.dataclass(frozen=True, eq=False)
class Placement:
    """A mesh plus the mesh spec of every parameter (by path), as computed from the model's annotations."""

    mesh: Mesh
    param_specs: dict  # parameter path (tuple of key strings) -> (shape, mesh PartitionSpec)

    @classmethod
    def for_task(cls, task, devices, data_parallel: int = 1) -> Placement:
        """The placement of a task's (or model's) parameters on a (data, model) mesh over `devices`.

        `task.init(key)` gives the parameters' shapes; `task.partition_specs()`, where the task has it, their
        logical axes (a task without it, e.g. a plain loss over an array, is replicated on every device).
        """
        mesh = group_mesh(devices, data_parallel)
        shapes = jax.eval_shape(task.init, jax.random.key(0))
        specs_fn = getattr(task, "partition_specs", None)
        if specs_fn is None:
            return cls(mesh, {})
        logical = specs_fn()
        flat_shapes = dict(_flat(shapes))
        specs = {
            path: (flat_shapes[path].shape, mesh_spec(spec, flat_shapes[path].shape, mesh))
            for path, spec in _flat(logical, is_leaf=lambda x: isinstance(x, PartitionSpec))
        }
        return cls(mesh, specs)

    @property
    def devices(self) -> tuple:
        return tuple(self.mesh.devices.flat)

    @property
    def model_parallel(self) -> int:
        return self.mesh.shape[MODEL]

    @functools.cached_property
    def replicated(self) -> NamedSharding:
        """Whole arrays on every device of the group (datasets, scalars, counters)."""
        return NamedSharding(self.mesh, PartitionSpec())

    @functools.cached_property
    def batch(self) -> NamedSharding:
        """A batch of example indices split over the group's data axis."""
        return NamedSharding(self.mesh, PartitionSpec(DATA))

    def shardings(self, tree):
        """A NamedSharding per leaf of `tree` (concrete or abstract): parameter specs by path, else replicated."""
        lengths = sorted({len(p) for p in self.param_specs}, reverse=True)

        def one(path, leaf):
            keys = tuple(str(k) for k in path)
            shape = tuple(leaf.shape)
            for n in lengths:
                hit = self.param_specs.get(keys[-n:]) if len(keys) >= n else None
                if hit is None:
                    continue
                pshape, spec = hit
                if shape == pshape:
                    return NamedSharding(self.mesh, spec)
                if shape[1:] == pshape:  # a stack of copies: (K, *shape)
                    return NamedSharding(self.mesh, PartitionSpec(None, *spec))
            return self.replicated

        return jax.tree_util.tree_map_with_path(one, tree)

    def put(self, tree):
        """`tree` laid out on this group: sharded where it is shaped like the parameters."""
        return jax.device_put(tree, self.shardings(tree))

    def same_devices(self, other: Placement) -> bool:
        return self.mesh == other.mesh


def _flat(tree, is_leaf=None):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [(tuple(str(k) for k in path), leaf) for path, leaf in leaves]


def bytes_per_device(tree) -> dict[str, int]:
    """Bytes of `tree`'s arrays held by each device (shards counted where they live)."""
    held: dict[str, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            held[str(shard.device)] = held.get(str(shard.device), 0) + shard.data.nbytes
    return held
