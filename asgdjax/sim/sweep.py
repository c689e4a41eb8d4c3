"""Many configurations of one simulator program: each member brings its own schedule (delay parameters,
staleness bound, seed), hyperparameters (learning rate, momentum), initial parameters and data order.

  vmapped     `jax.vmap` of the simulator's step: all members in lockstep, one call per chunk of events
              (members with shorter schedules get empty chunks); fills an accelerator.
  sequential  one member after another through `Simulator.run` (XLA:CPU runs batched convolutions and
              matmuls slower than the same work one config at a time, so this is faster there).
  auto        vmapped on accelerators, sequential on the CPU (measured: experiments/bench/sweep.py).

Either way `on_cut(i, events, state, losses)` runs when member i reaches one of its cut events (its
evaluation points) and at its end, with the per-gradient losses since its previous cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.inputs import batch_inputs
from asgdjax.core.sampling import Sampler
from asgdjax.core.task import Params
from asgdjax.core.trace import Trace
from asgdjax.sim.engine import SimState, Simulator
from asgdjax.sim.waves import wave_arrays

STRATEGIES = ("auto", "vmapped", "sequential")
OnCut = Callable[[int, int, SimState, np.ndarray], None]


class Member(NamedTuple):
    params: Params
    trace: Trace
    hparams: dict[str, float]
    sampler: Sampler
    data_key: jax.Array
    cuts: np.ndarray | tuple = ()  # event offsets where a call must end (evaluations)


def sweep(
    sim: Simulator, members: list[Member], data: Any, *, strategy: str = "auto", on_cut: OnCut | None = None
) -> list[SimState]:
    """Replay every member; returns their final states (in order)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"sweep strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    for m in members:
        sim.check_replayable(m.trace)
    sim.plan(members[0].params, data, members[0].sampler.batch_size)
    if strategy == "auto":
        strategy = "sequential" if jax.default_backend() == "cpu" else "vmapped"
    if strategy == "sequential" or len(members) == 1:
        return [_one(sim, i, m, data, on_cut) for i, m in enumerate(members)]
    return _lockstep(sim, members, data, on_cut)


def _one(sim: Simulator, i: int, m: Member, data: Any, on_cut: OnCut | None) -> SimState:
    wanted = {int(c) for c in m.cuts} | {len(m.trace)}
    pending: list = []
    start = [0]

    def callback(end: int, state: SimState, losses: jax.Array) -> None:
        pending.append(_computed(m.trace, start[0], end, losses))
        start[0] = end
        if on_cut is not None and end in wanted:
            on_cut(i, end, state, _flatten(pending))
            pending.clear()

    state = sim.init(m.params, m.hparams)
    return sim.run(state, m.trace, data, m.hparams, m.sampler, m.data_key, cuts=m.cuts, callback=callback)


def _lockstep(sim: Simulator, members: list[Member], data: Any, on_cut: OnCut | None) -> list[SimState]:
    states = [sim.init(m.params, m.hparams) for m in members]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    names = members[0].hparams
    hp = {k: jnp.asarray([m.hparams[k] for m in members], jnp.float32) for k in names}
    keys = jnp.stack([m.data_key for m in members])
    bounds = [sim.boundaries(m.trace, cuts=m.cuts) for m in members]
    wanted = [{int(c) for c in m.cuts} | {len(m.trace)} for m in members]
    pending: list[list] = [[] for _ in members]
    step = _vmapped_step(sim)
    for c in range(max(len(b) - 1 for b in bounds)):
        spans = [
            (int(b[c]), int(b[c + 1])) if c + 1 < len(b) else (len(m.trace),) * 2
            for b, m in zip(bounds, members, strict=True)
        ]
        chunks = [
            wave_arrays(
                m.trace, lo, hi, sim.C, batch_inputs(sim.task, m.sampler, m.trace.worker[lo:hi], m.trace.step[lo:hi])
            )
            for m, (lo, hi) in zip(members, spans, strict=True)
        ]
        batch = {k: np.stack([ch[k] for ch in chunks]) for k in chunks[0]}
        state, losses = step(state, data, batch, hp, keys)
        for i, (lo, hi) in enumerate(spans):
            if hi == lo:
                continue
            pending[i].append(_computed(members[i].trace, lo, hi, losses[i]))
            if on_cut is not None and hi in wanted[i]:
                on_cut(i, hi, jax.tree.map(lambda x, i=i: x[i], state), _flatten(pending[i]))
                pending[i] = []
    return [jax.tree.map(lambda x, i=i: x[i], state) for i in range(len(members))]


def _computed(trace: Trace, lo: int, hi: int, losses: jax.Array) -> tuple[jax.Array, np.ndarray]:
    """A call's slot losses with the mask of the slots of events [lo, hi) that computed a gradient; kept on
    the device until a cut needs them (a host copy per call would stall the dispatch pipeline)."""
    return losses, trace.step[lo:hi] >= 0


def _flatten(pending: list[tuple[jax.Array, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(x)[: len(mask)][mask] for x, mask in pending])


_CACHE: dict[int, tuple[Simulator, Any]] = {}


def _vmapped_step(sim: Simulator) -> Any:
    """jit(vmap(step)) compiled once per simulator (kept with it, so the id cannot be reused)."""
    if id(sim) not in _CACHE:
        _CACHE[id(sim)] = (sim, jax.jit(jax.vmap(sim._step, in_axes=(0, None, 0, 0, 0)), donate_argnums=0))
    return _CACHE[id(sim)][1]
