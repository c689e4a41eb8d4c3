"""mode=async: the real runtime on local devices; the trace it records is saved for exact replay."""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import logging

from asgdjax.errors import ConfigError
from asgdjax.parallel import group_devices
from asgdjax.runtime import Coordinator
from asgdjax.sim.config import (
    expected_updates,
    group_size,
    hparams_from_config,
    parse_faults,
    protocol_from_config,
    server_factory,
)
from asgdjax.sim.engine import make_streams
from asgdjax.sim.trace import Trace
from asgdjax.train.loop import RunContext, crossed, log_and_eval
from asgdjax.train.outputs import write_json
from asgdjax.train.sim import rejection_summary


def run_async(ctx: RunContext) -> dict:
    """Train config.num_workers real asynchronous workers for config.steps gradients."""
    config = ctx.config
    devices = group_devices(config.num_workers, config.model_parallel, config.devices)
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
        server_device=ctx.placement,
        **backend_args(config),
    )
    params = ctx.task.model.init(jax.random.key(config.seed))
    server_state = resume(ctx, protocol, server_factory(config, total_updates)(hparams_from_config(config)), params)
    start = ctx.resumed_from
    bar = ctx.bar(config.steps, start)
    progress = {"grads": start, "checkpointed": start}

    def on_apply(done: int, server) -> None:
        prev = progress["grads"]
        progress["grads"] = done
        bar.update(done - prev)
        log_and_eval(ctx, done, server.params, [], prev=prev, updates=int(server.version))

    def on_arrival(done: int, server, proto) -> None:
        # Checkpoint between arrivals, outside softsync groups: the protocol's rows then match the server.
        if proto.pending or not crossed(progress["checkpointed"], done, config.checkpoint_every):
            return
        progress["checkpointed"] = done
        save_checkpoint(ctx, done, server, proto)

    try:
        server, trace, stats = coordinator.run(
            params,
            protocol,
            on_apply,
            faults=parse_faults(config.fail_at),
            worker_timeout=float(config.worker_timeout),
            max_failures=config.max_worker_failures,
            server_state=server_state,
            on_arrival=on_arrival,
        )
    finally:
        coordinator.shutdown()
    bar.close()
    trace.meta.update(_trace_meta(config), lr_schedule_updates=total_updates)
    trace.save(os.path.join(ctx.workdir, "trace.npz"))
    save_runtime_stats(os.path.join(ctx.workdir, "runtime_stats.json"), stats)
    if ctx.checkpoints.latest_step() != config.steps:
        save_checkpoint(ctx, config.steps, server, protocol)
    s = trace.stats()
    wait = (trace.t_apply - trace.t_arrive)[trace.push]
    summary = {
        "num_workers": config.num_workers,
        **rejection_summary(server.rejected),
        "worker_failures": trace.meta["failures"],
        "dropped_workers": sorted({f["worker"] for f in trace.meta["failures"] if f["dropped"]}),
        "devices": coordinator.devices,
        "backend": config.backend,
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


def save_runtime_stats(path: str, stats) -> None:
    """The coordinator's per-arrival timings (what `asgdjax-predict --calibrate_from` fits)."""
    write_json(
        path,
        {
            "step_seconds": [[int(w), float(t)] for w, t in stats.step_seconds],
            "notice_seconds": [float(t) for t in stats.notice_seconds],
            "service_seconds": [float(t) for t in stats.service_seconds],
            "wall_seconds": stats.wall_seconds,
        },
    )


def backend_args(config) -> dict:
    """Coordinator keywords of config.backend; backend=ray starts (or joins) Ray first."""
    if config.backend == "local":
        return {}
    import ray

    if not ray.is_initialized():
        if config.ray_address:
            ray.init(address=config.ray_address, include_dashboard=False)
        else:  # a local instance with a logical CPU for every worker actor (oversubscribing is fine)
            need = math.ceil(config.num_workers * config.ray_cpus_per_worker)
            ray.init(num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False)
    options = {
        "num_cpus": config.ray_cpus_per_worker,
        "num_gpus": config.ray_gpus_per_worker,
        "max_restarts": config.max_worker_failures,
    }
    return {"backend": "ray", "backend_options": options}


def _trace_meta(config) -> dict:
    return {
        "protocol": config.protocol,
        "softsync_n": config.softsync_n,
        "max_staleness": 0 if config.protocol == "sync" else config.max_staleness,
        "n_fetch": config.n_fetch,
        "n_push": config.n_push,
        "warm_start_steps": config.warm_start_steps,
    }


def save_checkpoint(ctx: RunContext, done: int, server, protocol) -> None:
    """The server state (orbax) and the protocol's snapshot (workdir/resume/STEP.npz): all a resume needs."""
    snap = protocol.snapshot()
    meta = {k: v for k, v in snap.items() if k != "rows"}
    path = os.path.join(ctx.workdir, "resume", f"{done}.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Trace.from_rows([tuple(r) for r in snap["rows"]], protocol.K, meta).save(path)
    ctx.save(done, {"server": server})


def resume(ctx: RunContext, protocol, server, params):
    """Restore the latest checkpoint into (server state, protocol); None when the workdir holds none.

    Gradients applied up to the checkpoint are kept; steps in flight then (and anything after it, if the
    run was killed) are recomputed, so nothing is lost or applied twice beyond the checkpoint boundary.
    """
    step = ctx.checkpoints.latest_step()
    if step is None:
        return None
    path = os.path.join(ctx.workdir, "resume", f"{step}.npz")
    if not os.path.exists(path):
        raise ConfigError(
            f"workdir {ctx.workdir!r} holds checkpoint {step} without its protocol snapshot {path!r}; "
            "use a new --workdir"
        )
    like = {"server": server.init(params)}
    state = ctx.checkpoints.restore(step, like)["server"]
    saved = Trace.load(path)
    rows = saved.rows()
    snap = {**saved.meta, "rows": rows}
    kept = saved.num_gradients
    protocol.resume(snap, max((r[8] for r in rows), default=0.0))
    ctx.resumed_from = kept
    ctx.writer.write(kept, event="resumed", from_update=int(snap["version"]), gradients_kept=kept, checkpoint=step)
    logging.warning(
        "resumed from checkpoint %d: update %d, %d gradients kept, every worker restarts from the server's "
        "parameters; steps after the checkpoint are recomputed",
        step,
        snap["version"],
        kept,
    )
    return state
