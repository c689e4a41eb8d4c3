"""What each event's gradient receives as its batch: the example indices (tasks whose data lives on the
device and gather there), or, for a task with a host-side `load(indices, seeds)` (data too large for
memory, e.g. ILSVRC-2012 JPEGs decoded and cropped per batch), the loaded batch itself. One function for
the simulator, the local workers and the Ray actors, so a replay feeds every gradient the same bytes."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from asgdjax.core.sampling import Sampler, event_seeds
from asgdjax.core.task import Task


def batch_inputs(task: Task, sampler: Sampler, workers: np.ndarray, steps: np.ndarray) -> Any:
    """Inputs of events (worker, step), stacked on a leading axis; fetch-only events (step < 0) get zeros."""
    steps = np.asarray(steps)
    workers = np.asarray(workers)
    computed = steps >= 0
    idx = np.zeros((len(steps), sampler.batch_size), np.int32)
    if computed.any():
        idx[computed] = sampler.indices(workers[computed], steps[computed])
    load = getattr(task, "load", None)
    if load is None:
        return idx
    seeds = event_seeds(getattr(sampler, "seed", 0), workers[computed], steps[computed])
    loaded = load(idx[computed], seeds)
    out = jax.tree.map(lambda x: np.zeros((len(steps), *x.shape[1:]), x.dtype), loaded)
    for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(loaded), strict=True):
        o[computed] = x
    return out


def one_event(task: Task, sampler: Sampler, worker: int, step: int) -> Any:
    """The inputs of a single (worker, step), without the leading axis."""
    return jax.tree.map(lambda x: x[0], batch_inputs(task, sampler, np.asarray([worker]), np.asarray([step])))
