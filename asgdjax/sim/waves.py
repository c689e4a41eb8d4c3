"""Wavefronts: cut a trace into waves whose gradients can all be computed at once.

A worker's gradient depends only on its own local copy, so events of distinct workers whose copies do not
change inside the wave are independent: compute their gradients together (one vmap), then apply the
server operations one by one in trace order. A wave closes when a worker would appear twice, when a worker
fetched inside the wave would compute again, or when it holds `wave_size` events. Equal-speed A-SGD gives
waves of exactly K; synchronous SGD is one wave per update.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from asgdjax.core.trace import Trace


def partition_waves(trace: Trace, wave_size: int) -> np.ndarray:
    """Start offsets of the waves (int64, ends with len(trace)), so wave i is events [b[i], b[i+1])."""
    bounds = [0]
    touched: set[int] = set()
    group_fetch: list[int] = []  # workers of the current server group that fetch when it is applied
    for e in range(len(trace)):
        w = int(trace.worker[e])
        if w in touched or e - bounds[-1] >= wave_size:
            bounds.append(e)
            touched = set()
        touched.add(w)
        if trace.push[e] and trace.fetch[e] == 2:
            group_fetch.append(w)
        if trace.apply[e]:
            touched.update(group_fetch)
            group_fetch = []
    bounds.append(len(trace))
    return np.asarray(sorted(set(bounds)), np.int64)


def wave_arrays(trace: Trace, start: int, stop: int, wave_size: int, inputs: Any) -> dict:
    """Padded per-slot arrays for events [start, stop): the input of one compiled call.

    `inputs` holds those events' batch inputs (example indices, or a loaded batch), leading axis
    stop - start (asgdjax.core.inputs.batch_inputs).
    """
    n = stop - start
    pad = wave_size - n

    def col(a, fill=0):
        return np.concatenate([a[start:stop], np.full(pad, fill, a.dtype)])

    return {
        "valid": np.arange(wave_size) < n,
        "worker": col(trace.worker),
        "step": col(trace.step),
        "push": col(trace.push, False),
        "apply": col(trace.apply, False),
        "fetch": col(trace.fetch),
        "v_read": col(trace.v_read),
        "inputs": jax.tree.map(lambda x: np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), inputs),
    }
