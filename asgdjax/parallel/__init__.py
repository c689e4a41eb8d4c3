"""Model parallelism: one rules table maps the models' logical axes to mesh axes; placements put trees there."""

from asgdjax.parallel.mesh import group_devices, group_mesh
from asgdjax.parallel.placement import Placement
from asgdjax.parallel.rules import LOGICAL_RULES, mesh_spec

__all__ = ["LOGICAL_RULES", "Placement", "group_devices", "group_mesh", "mesh_spec"]
