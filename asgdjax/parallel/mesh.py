"""Device groups and their meshes: a worker group of M devices is one (data, model) mesh."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from asgdjax.errors import ConfigError
from asgdjax.parallel.rules import DATA, MODEL


def group_mesh(devices, data_parallel: int = 1) -> Mesh:
    """A (data, model) mesh over `devices` (len divisible by data_parallel), with Auto axes.

    Auto (not JAX's new Explicit default) so that XLA's sharding propagation partitions convolutions
    from the parameters' annotations; Explicit axes reject sharded conv kernels without out_shardings.
    """
    devices = list(devices)
    if len(devices) % data_parallel:
        raise ValueError(f"{len(devices)} devices do not split into data_parallel={data_parallel} rows")
    grid = np.array(devices, dtype=object).reshape(data_parallel, len(devices) // data_parallel)
    return Mesh(grid, (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto))


def group_devices(num_workers: int, model_parallel: int = 1, spec: str = "") -> list[tuple]:
    """The devices of workers 0..K-1, `model_parallel` each.

    spec "" splits jax.devices() into consecutive groups of model_parallel and assigns them round-robin
    (several workers may share a group); otherwise spec lists K * model_parallel device ids, group by group.
    """
    devices = jax.devices()
    m = model_parallel
    if m > len(devices):
        raise ConfigError(
            f"model_parallel={m} is not allowed: this machine has {len(devices)} devices "
            f"(on CPU, set cpu_devices={m} or more); use 1..{len(devices)}"
        )
    if not spec:
        groups = [tuple(devices[g * m : (g + 1) * m]) for g in range(len(devices) // m)]
        return [groups[w % len(groups)] for w in range(num_workers)]
    try:
        ids = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"devices={spec!r} is not allowed; use comma-separated device ids") from None
    bad = [i for i in ids if not 0 <= i < len(devices)]
    if bad or len(ids) != num_workers * m:
        raise ConfigError(
            f"devices={spec!r} is not allowed; give {num_workers * m} ids in 0..{len(devices) - 1} "
            f"({m} per worker, worker by worker)"
        )
    return [tuple(devices[i] for i in ids[w * m : (w + 1) * m]) for w in range(num_workers)]
