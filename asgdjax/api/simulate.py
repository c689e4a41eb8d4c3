"""`asgdjax.simulate`: what asynchrony does to *your* training, as one compiled, deterministic simulation.

    import jax.numpy as jnp, optax, asgdjax
    result = asgdjax.simulate(lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), jnp.zeros(d), (X, y),
                              optimizer=optax.sgd(0.01), num_workers=40, steps=32_000)
    result.history.train_loss, result.stats.staleness_mean, result.trace

The same call with `asgdjax.run_async` trains with real asynchronous workers; its `result.trace` passed
back here as `trace=` replays that run exactly.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from asgdjax.api import arguments
from asgdjax.api.problem import check_replay_inputs, finish, problem_of_call
from asgdjax.api.result import Result, as_metrics
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.sim import Simulator, make_schedule
from asgdjax.sim.engine import STRATEGIES


def simulate(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    steps: int | None = None,
    num_workers: int | None = None,
    batch_size: int | None = None,
    protocol: str | ProtocolSpec | None = None,
    local_learning_rate: float | None = None,
    rule: str | optax.GradientTransformationExtraArgs = "none",
    delays: DelayModel = DelayModel(),
    sampler: str | Sampler = "shards",
    staleness_cap: int = -1,
    key: int | jax.Array = 0,
    trace: Trace | None = None,
    eval_fn: Callable[[Any], dict | float] | None = None,
    eval_every: int = 0,
    log_every: int = 0,
    max_loss: float = math.inf,
    strategy: str = "auto",
) -> Result:
    """Simulate `num_workers` asynchronous workers training `loss_fn(params, batch[, key])` on `data`.

    Every worker computes gradients on its own copy of the parameters; the server applies them with
    `rule` (a name from asgdjax.rules.RULES or any optax GradientTransformationExtraArgs) then `optimizer`
    (any optax optimizer) as they arrive under `protocol`: "async" (plain A-SGD), "softsync", "sync", or
    an `asgdjax.ProtocolSpec` for the rest (SSP bound `max_staleness`, n-softsync `softsync_n`, Downpour
    `n_fetch` / `n_push` > 1, whose clients step their own copy at `local_learning_rate`, a warm start). Arrival order comes from `delays` (step-time model per worker,
    virtual seconds) or a given `trace` (e.g. `run_async(...).trace`: an exact replay). `sampler`:
    "shards" (without replacement, each worker its 1/K of every epoch), "replacement", or a sampler object
    (e.g. `asgdjax.ShardSampler`) built for this data and these workers. `batch_size`: examples per
    gradient (default 32, or the given sampler's). Every random
    stream derives from `key`. `eval_fn(params)` runs every `eval_every` gradients (and at the end).
    Returns a `Result`; a run whose loss is NaN/Inf, above `max_loss` or 1,000x its value on the initial
    parameters, or whose gradients were mostly rejected, has status "diverged"; one whose loss ended no lower
    than on the initial parameters, "collapsed" (nothing raises).
    """
    t0 = time.perf_counter()
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not allowed; use one of {', '.join(STRATEGIES)}")
    trace = arguments.replay(trace, delays)
    p = problem_of_call(locals(), trace=trace)
    if trace is None:
        delays.check_workers(p.spec.num_workers)
        trace = make_schedule(p.keys.schedule, p.spec, num_steps=p.steps, delays=delays)
    else:
        check_replay_inputs(trace, p)
    # A trace of Dai et al.'s direct staleness model reads arbitrary past versions: a ring of them.
    ring = int(trace.staleness.max(initial=0)) + 1 if trace.meta.get("memory") == "ring" else 0
    program = (loss_fn, optimizer, rule, staleness_cap, p.sampler.batch_size, _shapes((params, p.data)))
    sim = _simulator(p, (*program, ring), strategy=strategy, ring_depth=ring)
    sim.check_replayable(trace)
    state = sim.init(p.task.init(p.keys.init), p.hparams)
    grads_done = np.cumsum(trace.step >= 0)
    chunks: list = []
    evals: list = []
    cuts = _eval_events(grads_done, p.eval_every) if eval_fn is not None else np.zeros(0, np.int64)
    wanted = set(cuts.tolist()) | {len(trace)}

    def on_chunk(event: int, st, losses) -> None:
        chunks.append((event, losses))
        if eval_fn is not None and event in wanted:
            evals.append((int(grads_done[event - 1]), as_metrics(eval_fn(st.server.params))))

    state = sim.run(state, trace, p.data, p.hparams, p.sampler, p.keys.data, cuts=cuts, callback=on_chunk)
    losses = gradient_losses(trace, chunks)
    server = state.server
    return finish(
        p, params=server.params, losses=losses, evals=evals, trace=trace, server=server, t0=t0, source="simulator"
    )


CACHED_SIMULATORS = 8
_simulators: collections.OrderedDict = collections.OrderedDict()


def _simulator(p: Any, program: tuple, *, strategy: str, ring_depth: int = 0) -> Simulator:
    """The Simulator of this call's program, reused from one of the last CACHED_SIMULATORS calls whose loss
    function, optimizer and rule (the same objects), staleness cap, strategy, batch size, protocol and
    parameter and data shapes were the same: a loop of calls (seeds, replays, delay models) compiles once.
    The cache holds the objects themselves, so an identity is never reused while it is cached."""
    key = (*program, p.spec, strategy)
    try:
        hash(key)
    except TypeError:  # an unhashable optimizer or rule: no reuse
        return Simulator(p.task, p.make_server, p.spec, strategy=strategy, ring_depth=ring_depth)
    if key in _simulators:
        _simulators.move_to_end(key)
        return _simulators[key]
    sim = _simulators[key] = Simulator(p.task, p.make_server, p.spec, strategy=strategy, ring_depth=ring_depth)
    while len(_simulators) > CACHED_SIMULATORS:
        _simulators.popitem(last=False)
    return sim


def _shapes(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", None) or np.result_type(x))) for x in leaves)


def _eval_events(grads_done: np.ndarray, every: int) -> np.ndarray:
    if not every:
        return np.zeros(0, np.int64)
    prev = np.concatenate([[0], grads_done[:-1]])
    return np.flatnonzero(grads_done // every > prev // every) + 1


def gradient_losses(trace: Trace, chunks: list[tuple[int, Any]]) -> np.ndarray:
    """Per-gradient training losses in trace order from the per-call (end event, slot losses) records; a
    diverged gradient's NaN is kept, padding and fetch-only slots are dropped."""
    out, start = [], 0
    for end, losses in chunks:
        slots = np.asarray(losses)[: end - start]
        out.append(slots[trace.step[start:end] >= 0])
        start = end
    return np.concatenate(out) if out else np.zeros(0)
