"""mode=async: the real runtime on local devices; the trace it records is saved for exact replay."""

from __future__ import annotations

import os

import jax
import numpy as np

from asgdjax.errors import ConfigError
from asgdjax.runtime import Coordinator, assign_devices
from asgdjax.sim.config import (
    expected_updates,
    group_size,
    hparams_from_config,
    parse_faults,
    protocol_from_config,
    server_factory,
)
from asgdjax.sim.engine import make_streams
from asgdjax.train.loop import RunContext, crossed, log_and_eval
from asgdjax.train.sim import rejection_summary


def run_async(ctx: RunContext) -> dict:
    """Train config.num_workers real asynchronous workers for config.steps gradients."""
    config = ctx.config
    if ctx.checkpoints.latest_step() is not None:
        raise ConfigError(
            f"workdir {ctx.workdir!r} holds an async run's checkpoints; async runs do not resume yet: "
            "use a new --workdir"
        )
    devices = assign_devices(config.num_workers, config.devices)
    protocol = protocol_from_config(config)
    # The number of updates is known only at the end in async mode; a cosine schedule spans the updates
    # this protocol makes when no worker waits (recorded in the trace so a replay uses the same schedule).
    total_updates = expected_updates(config)
    coordinator = Coordinator(
        ctx.task,
        server_factory(config, total_updates),
        hparams_from_config(config),
        devices,
        jax.tree.map(np.asarray, ctx.data),
        make_streams(ctx.dataset.num_train, config.batch_size, config.seed, config.num_workers),
        jax.random.key(config.seed + 1),
        group_size=group_size(config),
        local_updates=config.n_fetch > 1 or config.n_push > 1,
    )
    bar = ctx.bar(config.steps)
    progress = {"grads": 0}

    def on_apply(done: int, server) -> None:
        prev = progress["grads"]
        progress["grads"] = done
        bar.update(done - prev)
        log_and_eval(ctx, done, server.params, [], prev=prev, updates=int(server.version))
        if crossed(prev, done, config.checkpoint_every):
            ctx.save(done, {"params": server.params, "opt_state": server.opt_state, "version": server.version})

    params = ctx.task.model.init(jax.random.key(config.seed))
    server, trace, stats = coordinator.run(
        params,
        protocol,
        on_apply,
        faults=parse_faults(config.fail_at),
        worker_timeout=float(config.worker_timeout),
        max_failures=config.max_worker_failures,
    )
    bar.close()
    trace.meta.update(_trace_meta(config), lr_schedule_updates=total_updates)
    trace.save(os.path.join(ctx.workdir, "trace.npz"))
    ctx.save(config.steps, {"params": server.params, "opt_state": server.opt_state, "version": server.version})
    s = trace.stats()
    wait = (trace.t_apply - trace.t_arrive)[trace.push]
    summary = {
        "num_workers": config.num_workers,
        **rejection_summary(server.rejected),
        "worker_failures": trace.meta["failures"],
        "dropped_workers": sorted({f["worker"] for f in trace.meta["failures"] if f["dropped"]}),
        "devices": [str(d) for d in devices],
        "protocol": config.protocol,
        "rule": config.rule,
        "staleness_mean": s["staleness_mean"],
        "staleness_max": s["staleness_max"],
        "staleness_hist": s["staleness_hist"],
        "worker_steps_per_second": (stats.steps / stats.wall_seconds).tolist(),
        "worker_busy_fraction": (stats.busy_seconds / stats.wall_seconds).tolist(),
        "gradient_wait_ms_mean": float(wait.mean() * 1e3) if len(wait) else 0.0,
        "apply_latency_ms_mean": float(np.mean(stats.apply_seconds) * 1e3) if stats.apply_seconds else 0.0,
        "runtime_wall_seconds": stats.wall_seconds,
        "trace": os.path.join(os.path.abspath(ctx.workdir), "trace.npz"),
    }
    for f in trace.meta["failures"]:
        fields = {("seconds_into_run" if k == "time" else k): v for k, v in f.items() if k != "step"}
        ctx.writer.write(f["step"], event="worker_failure", **fields)
    ctx.writer.write(config.steps, **{k: v for k, v in summary.items() if k not in ("trace", "devices")})
    return {
        "params": server.params,
        "updates": int(server.version),
        "gradients": trace.num_gradients,
        "summary": summary,
    }


def _trace_meta(config) -> dict:
    return {
        "protocol": config.protocol,
        "softsync_n": config.softsync_n,
        "max_staleness": 0 if config.protocol == "sync" else config.max_staleness,
        "n_fetch": config.n_fetch,
        "n_push": config.n_push,
        "warm_start_steps": config.warm_start_steps,
    }
