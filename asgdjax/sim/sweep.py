"""Whole sweeps as one compiled program: `jax.vmap` of the simulator's step over configurations.

Each configuration brings its own schedule (delay parameters, staleness bound, seed), learning rate,
initial parameters and data order; they run in lockstep, one vmapped call per chunk of events. Schedules
of different lengths are padded with empty chunks (no events: the state passes through unchanged).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.sampling import Sampler
from asgdjax.core.trace import Trace
from asgdjax.sim.engine import SimState, Simulator, batch_indices
from asgdjax.sim.waves import wave_arrays


def sweep(
    sim: Simulator,
    params: list,
    traces: list[Trace],
    data: dict,
    hparams: list[dict],
    samplers: list[Sampler],
    data_keys: list[jax.Array],
) -> SimState:
    """Replay N configurations at once; returns the N final states stacked on a leading axis."""
    n = len(traces)
    if not (len(params) == len(hparams) == len(samplers) == len(data_keys) == n):
        raise ValueError("sweep needs one params, hparams, sampler and data key per trace")
    for t in traces:
        sim.check_replayable(t)
    sim.plan(params[0], data, samplers[0].batch_size)
    states = [sim.init(p, h) for p, h in zip(params, hparams, strict=True)]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    hp = {k: jnp.asarray([h[k] for h in hparams], jnp.float32) for k in hparams[0]}
    keys = jnp.stack(data_keys)
    bounds = [sim.boundaries(t) for t in traces]
    num_chunks = max(len(b) - 1 for b in bounds)
    step = _vmapped_step(sim)
    for c in range(num_chunks):
        chunks = []
        for t, b, st in zip(traces, bounds, samplers, strict=True):
            lo, hi = (int(b[c]), int(b[c + 1])) if c + 1 < len(b) else (len(t), len(t))
            chunks.append(wave_arrays(t, lo, hi, sim.C, _indices(t, st, lo, hi)))
        batch = {k: np.stack([ch[k] for ch in chunks]) for k in chunks[0]}
        state, _ = step(state, data, batch, hp, keys)
    return state


def _indices(trace, sampler, lo, hi):
    if hi > lo:
        return batch_indices(trace, sampler, lo, hi)
    return np.zeros((0, sampler.batch_size), np.int32)


_CACHE: dict[int, tuple[Simulator, Any]] = {}


def _vmapped_step(sim: Simulator):
    """jit(vmap(step)) compiled once per simulator (kept with it, so the id cannot be reused)."""
    if id(sim) not in _CACHE:
        _CACHE[id(sim)] = (sim, jax.jit(jax.vmap(sim._step, in_axes=(0, None, 0, 0, 0)), donate_argnums=0))
    return _CACHE[id(sim)][1]
