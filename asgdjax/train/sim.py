"""mode=sim: generate the schedule from the delay model, replay it in the compiled simulator."""

from __future__ import annotations

import os

import jax
import numpy as np

from asgdjax.errors import ConfigError
from asgdjax.sim.config import group_size, hparams_from_config, memory, schedule_from_config, server_factory
from asgdjax.sim.engine import Simulator, make_streams
from asgdjax.sim.trace import Trace
from asgdjax.train.loop import RunContext, crossed, log_and_eval, logging_due


def run_sim(ctx: RunContext) -> dict:
    """Simulate config.num_workers asynchronous workers for config.steps gradients (resumable)."""
    config = ctx.config
    trace = load_trace(config) if config.trace else schedule_from_config(config)
    trace.save(os.path.join(ctx.workdir, "trace.npz"))
    local_updates = config.n_fetch > 1 or config.n_push > 1
    sim = Simulator(
        ctx.task,
        server_factory(config, int(trace.meta.get("lr_schedule_updates", trace.num_updates))),
        config.num_workers,
        group_size=group_size(config),
        local_updates=local_updates,
        strategy=config.sim_strategy,
        chunk=config.sim_chunk,
        ring_depth=int(trace.staleness.max()) + 1 if memory(config) == "ring" else 0,
        placement=ctx.placement if config.model_parallel > 1 else None,
    )
    hparams = hparams_from_config(config)
    state = sim.init(ctx.task.model.init(jax.random.key(config.seed)), hparams)
    restored = ctx.restore({"sim": state, "event": np.asarray(0, np.int64)})
    state, start_event = restored["sim"], int(restored["event"])
    grads_done = np.cumsum(trace.step >= 0)  # gradients computed after each event
    bounds = sim.boundaries(trace)
    start = int(grads_done[start_event - 1]) if start_event else 0
    bar = ctx.bar(config.steps, start)
    losses: list = []
    progress = {"grads": start, "event": start_event}

    def on_wave(event: int, st, wave_losses) -> None:
        prev, done = progress["grads"], int(grads_done[event - 1])
        progress.update(grads=done, event=event)
        losses.append(wave_losses)
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
            updates=int(st.server.version),
            staleness_mean=stats["staleness_mean"],
            staleness_max=stats["staleness_max"],
            virtual_time=stats["virtual_time"],
        )
        if crossed(prev, done, config.checkpoint_every) or event == len(trace):
            ctx.save(done, {"sim": st, "event": np.asarray(event, np.int64)})

    streams = make_streams(ctx.dataset.num_train, config.batch_size, config.seed, config.num_workers)
    state = sim.run(state, trace, ctx.data, hparams, streams, jax.random.key(config.seed + 1), start_event, on_wave)
    bar.close()
    stats = trace.stats()
    return {
        "params": state.server.params,
        "updates": int(state.server.version),
        "gradients": trace.num_gradients,
        "summary": {
            "num_workers": config.num_workers,
            "protocol": config.protocol,
            "rule": config.rule,
            "staleness_mean": stats["staleness_mean"],
            "staleness_max": stats["staleness_max"],
            "staleness_hist": stats["staleness_hist"],
            "virtual_time": stats["virtual_time"],
            **rejection_summary(state.server.rejected),
            "sim_strategy": sim.strategy,
            "sim_memory": f"ring of {sim.D} versions" if sim.D else f"{config.num_workers} worker copies",
            "compiled_calls": len(bounds) - 1,
            "trace": os.path.join(os.path.abspath(ctx.workdir), "trace.npz"),
        },
    }


def rejection_summary(rejected) -> dict:
    """Totals and per-worker counts of gradients the server's guards rejected."""
    r = np.asarray(rejected)
    return {
        "rejected_nonfinite": int(r[:, 0].sum()),
        "rejected_stale": int(r[:, 1].sum()),
        "rejected_per_worker": r.tolist(),
    }


def load_trace(config) -> Trace:
    """A recorded trace (e.g. a runtime's trace.npz) to replay instead of generating a schedule."""
    if not os.path.exists(config.trace):
        raise ConfigError(f"trace={config.trace!r} does not exist; give a trace.npz written by a run")
    trace = Trace.load(config.trace)
    if trace.num_workers != config.num_workers or trace.num_gradients != config.steps:
        raise ConfigError(
            f"trace={config.trace!r} has {trace.num_workers} workers and {trace.num_gradients} gradients; "
            f"set num_workers={trace.num_workers} and steps={trace.num_gradients} (the recorded run's values)"
        )
    for key in ("n_fetch", "n_push"):
        if key in trace.meta and trace.meta[key] != config[key]:
            raise ConfigError(f"trace={config.trace!r} was recorded with {key}={trace.meta[key]}; set the same")
    return trace
