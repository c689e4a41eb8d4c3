"""mode=sim: generate the schedule from the delay model (or load a recorded trace), replay it in the
compiled simulator, resumably."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.trace import COLUMNS, Trace
from asgdjax.errors import ConfigError
from asgdjax.sim import Simulator
from asgdjax.train.build import (
    continued_schedule,
    hparams_from_config,
    keys,
    memory,
    sampler_from_config,
    schedule_from_config,
    server_factory,
)
from asgdjax.train.loop import RunContext, crossed, log_and_eval, logging_due


def run_sim(ctx: RunContext) -> dict:
    """Simulate config.num_workers asynchronous workers for config.steps gradients (resumable)."""
    config = ctx.config
    spec = ProtocolSpec.from_config(config)
    hparams = hparams_from_config(config)
    run_keys = keys(config)
    trace, sim, state, start_event = prepare(ctx, spec, hparams, run_keys)
    grads_done = np.cumsum(trace.step >= 0)  # gradients computed after each event
    start = int(grads_done[start_event - 1]) if start_event else 0
    bar = ctx.bar(config.steps, start)
    losses: list = []
    staleness: list = []  # of the gradients applied since the last evaluation
    progress = {"grads": start, "event": start_event, "calls": 0}

    def on_chunk(event: int, st, chunk_losses) -> None:
        prev, done = progress["grads"], int(grads_done[event - 1])
        first = progress["event"]
        progress.update(grads=done, event=event, calls=progress["calls"] + 1)
        if done == prev:  # fetch-only events (late joins, restarts): nothing to log
            if event == len(trace) and ctx.checkpoints.latest_step() != done:
                ctx.save(done, {"sim": st, "event": np.asarray(event, np.int64)})
            return
        losses.append((chunk_losses, trace.step[first:event] >= 0))  # the slots that computed a gradient
        pushed = trace.push[first:event]
        staleness.extend((trace.v_apply[first:event] - trace.v_read[first:event])[pushed].tolist())
        bar.update(done - prev)
        # Only touch device values when a record is due: a sync per chunk would stall the dispatch pipeline.
        if not (logging_due(config, prev, done) or event == len(trace)):
            return
        stats = trace.slice(event).stats()
        log_and_eval(
            ctx,
            done,
            st.server.params,
            losses,
            prev=prev,
            rejected=int(np.asarray(st.server.rejected).sum()),
            staleness=staleness,
            updates=int(st.server.version),
            staleness_mean=stats.staleness_mean,
            staleness_max=stats.staleness_max,
            virtual_seconds=stats.virtual_time,
        )
        if crossed(prev, done, config.checkpoint_every) or event == len(trace):
            ctx.save(done, {"sim": st, "event": np.asarray(event, np.int64)})

    sampler = sampler_from_config(config, ctx.dataset.num_train)
    state = sim.run(
        state,
        trace,
        ctx.data,
        hparams,
        sampler,
        run_keys.data,
        start_event=start_event,
        cuts=record_events(config, grads_done),
        callback=on_chunk,
    )
    bar.close()
    return {
        "params": state.server.params,
        "updates": int(state.server.version),
        "gradients": trace.num_gradients,
        "summary": summary(ctx, trace, sim, state, calls=progress["calls"]),
    }


class Replay(NamedTuple):
    """What run_sim replays: the trace, its simulator, and the state and event it starts from."""

    trace: Trace
    sim: Simulator
    state: Any
    start_event: int


def prepare(ctx: RunContext, spec: ProtocolSpec, hparams: dict, run_keys: Any) -> Replay:
    """The trace to replay (the workdir's own when resuming; continued when the steps were raised past its
    drained end), its simulator, and the state restored from the latest checkpoint; the trace is saved."""
    config = ctx.config
    saved = saved_trace(ctx)
    trace = load_trace(config) if config.trace else schedule_from_config(config)
    if saved is not None and saved.num_gradients == trace.num_gradients:
        trace = saved  # the run being resumed, as it was replayed (an extended run's continuation included)
    sim = make_simulator(ctx, trace, spec)
    state = sim.init(ctx.task.init(run_keys.init), hparams)
    restored = ctx.restore({"sim": state, "event": np.asarray(0, np.int64)})
    state, start_event = restored["sim"], int(restored["event"])
    if saved is not None and not same_prefix(saved, trace, start_event):  # steps raised past the drain
        trace = continued_schedule(config, saved.slice(start_event))
        depth = sim.D
        sim = make_simulator(ctx, trace, spec)
        if depth != sim.D:
            raise ConfigError(
                f"steps={config.steps} continues this workdir's run with staleness up to {sim.D - 1}, past its "
                f"version ring of {depth}; give the steps it was run with, or a new --workdir"
            )
    record_inputs(trace, config)
    trace.save(os.path.join(ctx.workdir, "trace.npz"))
    return Replay(trace, sim, state, start_event)


def saved_trace(ctx: RunContext) -> Trace | None:
    """The workdir's trace when this run resumes a generated schedule; None for a new run or a given trace."""
    path = os.path.join(ctx.workdir, "trace.npz")
    if ctx.config.trace or ctx.checkpoints.latest_step() is None or not os.path.exists(path):
        return None
    return Trace.load(path)


def same_prefix(a: Trace, b: Trace, events: int) -> bool:
    """Whether two traces agree on their first `events` events (every column)."""
    if min(len(a), len(b)) < events:
        return False
    return all(np.array_equal(getattr(a, n)[:events], getattr(b, n)[:events]) for n in COLUMNS)


def make_simulator(ctx: RunContext, trace, spec: ProtocolSpec) -> Simulator:
    """The config's simulator for `trace` (a version ring deep enough for its staleness when memory asks
    for one; sharded over the model-parallel placement), refusing a trace it cannot replay."""
    config = ctx.config
    sim = Simulator(
        ctx.task,
        server_factory(config, int(trace.meta.get("lr_schedule_updates", trace.num_updates))),
        spec,
        strategy=config.sim_strategy,
        chunk=config.sim_chunk,
        ring_depth=int(trace.staleness.max(initial=0)) + 1 if memory(config) == "ring" else 0,
        placement=ctx.placement if config.model_parallel > 1 else None,
    )
    sim.check_replayable(trace)
    return sim


def summary(ctx: RunContext, trace, sim: Simulator, state, *, calls: int) -> dict:
    """summary.json's simulator fields: staleness, virtual time, rejections, how the replay ran."""
    config, stats = ctx.config, trace.stats()
    return {
        "num_workers": config.num_workers,
        "protocol": config.protocol,
        "rule": config.rule,
        "staleness_mean": stats.staleness_mean,
        "staleness_max": stats.staleness_max,
        "staleness_hist": stats.staleness_hist,
        "virtual_seconds": stats.virtual_time,
        **rejection_summary(state.server.rejected),
        "sim_strategy": sim.strategy,
        "sim_events_per_call": sim.C,
        "sim_memory": f"ring of {sim.D} versions" if sim.D else f"{config.num_workers} worker copies",
        "compiled_calls": calls,
        "trace": os.path.join(os.path.abspath(ctx.workdir), "trace.npz"),
    }


def record_events(config, grads_done: np.ndarray) -> np.ndarray:
    """Event offsets after which a log, an evaluation or a checkpoint is due, so compiled calls end there."""
    every = [config.log_every, config.eval_every, config.checkpoint_every]
    due = np.zeros(len(grads_done), bool)
    prev = np.concatenate([[0], grads_done[:-1]])
    for n in every:
        due |= grads_done // n > prev // n
    return np.flatnonzero(due) + 1


def rejection_summary(rejected) -> dict:
    """Totals and per-worker counts of gradients the server's guards rejected."""
    r = np.asarray(rejected)
    return {
        "rejected_nonfinite": int(r[:, 0].sum()),
        "rejected_stale": int(r[:, 1].sum()),
        "rejected_per_worker": r.tolist(),
    }


def load_trace(config) -> Trace:
    """A recorded trace (e.g. a runtime's trace.npz) to replay instead of generating a schedule; checked
    against the config before anything runs."""
    trace = Trace.load(config.trace)
    if trace.num_workers != config.num_workers or trace.num_gradients != config.steps:
        raise ConfigError(
            f"trace={config.trace!r} has {trace.num_workers} workers and {trace.num_gradients} gradients; "
            f"set num_workers={trace.num_workers} and steps={trace.num_gradients} (the recorded run's values)"
        )
    for key in ("protocol", "n_fetch", "n_push", "softsync_n"):
        if key in trace.meta and trace.meta[key] != config[key]:
            raise ConfigError(f"trace={config.trace!r} was recorded with {key}={trace.meta[key]!r}; set the same")
    for key, value in trace.meta.get(INPUTS, {}).items():  # traces written before the record: as they are
        if config.get(key) != value:
            raise ConfigError(
                f"trace={config.trace!r} was recorded with {key}={value!r} (this config: {config.get(key)!r}); an "
                f"exact replay computes the same batches: set --config.{key}={value}"
            )
    return trace


INPUTS = "config_inputs"  # trace.meta's record of what the trainer's gradients were computed on
INPUT_KEYS = ("dataset", "batch_size", "sampler", "seed")  # the batches (and keys) of each (worker, step)


def record_inputs(trace: Trace, config) -> None:
    """Note in the trace what its gradients were computed on, so a replay on other batches is refused."""
    trace.meta[INPUTS] = {k: config[k] for k in INPUT_KEYS}
