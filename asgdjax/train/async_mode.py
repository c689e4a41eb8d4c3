"""mode=async: the real runtime on local devices; the trace it records is saved for exact replay."""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import logging

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.trace import COLUMNS, Row, Trace
from asgdjax.errors import ConfigError
from asgdjax.parallel import group_devices
from asgdjax.runtime import Applied, Coordinator, RunOptions
from asgdjax.train.build import (
    hparams_from_config,
    keys,
    parse_faults,
    sampler_from_config,
    server_factory,
)
from asgdjax.train.loop import RunContext, crossed, log_and_eval
from asgdjax.train.outputs import write_json
from asgdjax.train.sim import record_inputs, rejection_summary


def run_async(ctx: RunContext) -> dict:
    """Train config.num_workers real asynchronous workers for config.steps gradients."""
    config = ctx.config
    spec = ProtocolSpec.from_config(config)
    run_keys = keys(config)
    # The number of updates is known only at the end in async mode; a cosine schedule spans the updates
    # this protocol makes when no worker waits (recorded in the trace so a replay uses the same schedule).
    total_updates = spec.expected_updates(config.steps)
    make_server = server_factory(config, total_updates)
    coordinator = make_coordinator(ctx, spec, make_server)
    protocol = spec.machine(config.steps)
    params = ctx.task.init(run_keys.init)
    server_state = resume(ctx, protocol, make_server(hparams_from_config(config)), params)
    start = ctx.resumed_from
    bar = ctx.bar(config.steps, start)
    progress = {"grads": start, "checkpointed": start}
    losses: list = []
    staleness: list = []  # of the gradients applied since the last evaluation

    def on_apply(a: Applied) -> None:
        prev, done, server = progress["grads"], a.gradients, a.server
        progress["grads"] = done
        losses.extend(a.losses)
        staleness.extend(a.staleness)
        a.losses.clear()
        a.staleness.clear()
        bar.update(done - prev)
        rejected = int(np.asarray(server.rejected).sum())
        log_and_eval(
            ctx,
            done,
            server.params,
            losses,
            prev=prev,
            rejected=rejected,
            staleness=staleness,
            updates=int(server.version),
        )

    def on_arrival(done: int, server, proto) -> None:
        # Checkpoint between arrivals, outside softsync groups: the protocol's rows then match the server.
        if proto.pending or not crossed(progress["checkpointed"], done, config.checkpoint_every):
            return
        progress["checkpointed"] = done
        save_checkpoint(ctx, done, server, proto)

    options = RunOptions(
        worker_timeout=float(config.worker_timeout),
        max_failures=config.max_worker_failures,
        faults=parse_faults(config.fail_at),
    )
    try:
        server, trace, stats = coordinator.run(
            params, protocol, options=options, server_state=server_state, on_apply=on_apply, on_arrival=on_arrival
        )
    finally:
        coordinator.shutdown()
    bar.close()
    trace.meta.update(lr_schedule_updates=total_updates)
    record_inputs(trace, config)
    trace.save(os.path.join(ctx.workdir, "trace.npz"))
    save_runtime_stats(os.path.join(ctx.workdir, "runtime_stats.json"), stats)
    if ctx.checkpoints.latest_step() != config.steps:
        save_checkpoint(ctx, config.steps, server, protocol)
    summary = async_summary(config, trace, stats, server, coordinator.devices, ctx.workdir)
    for f in trace.meta["failures"]:
        fields = {("seconds_into_run" if k == "time" else k): v for k, v in f.items() if k != "step"}
        ctx.write(f["step"], event="worker_failure", **fields)
    return {
        "params": server.params,
        "updates": int(server.version),
        "gradients": trace.num_gradients,
        "summary": summary,
    }


def make_coordinator(ctx: RunContext, spec: ProtocolSpec, make_server) -> Coordinator:
    """The config's coordinator: its worker devices or device groups, host copies of the data, the backend."""
    config = ctx.config
    return Coordinator(
        ctx.task,
        make_server,
        hparams_from_config(config),
        spec,
        devices=group_devices(config.num_workers, config.model_parallel, config.devices),
        data=jax.tree.map(np.asarray, ctx.data),
        sampler=sampler_from_config(config, ctx.dataset.num_train),
        data_key=keys(config).data,
        server_device=ctx.placement,
        **backend_args(config),
    )


def async_summary(config, trace: Trace, stats, server, devices: list, workdir: str) -> dict:
    """What an async run reports: protocol, staleness, rejections, failures, per-worker speed and timing."""
    s = trace.stats()
    wait = (trace.t_apply - trace.t_arrive)[trace.push]
    return {
        "num_workers": config.num_workers,
        **rejection_summary(server.rejected),
        "worker_failures": trace.meta["failures"],
        "dropped_workers": sorted({f["worker"] for f in trace.meta["failures"] if f["dropped"]}),
        "devices": devices,
        "backend": config.backend,
        "protocol": config.protocol,
        "rule": config.rule,
        "staleness_mean": s.staleness_mean,
        "staleness_max": s.staleness_max,
        "staleness_hist": s.staleness_hist,
        "worker_steps_per_second": (stats.steps / stats.wall_seconds).tolist(),
        "worker_busy_fraction": (stats.busy_seconds / stats.wall_seconds).tolist(),
        "gradient_wait_ms_mean": float(wait.mean() * 1e3) if len(wait) else 0.0,
        "apply_latency_ms_mean": float(np.mean(stats.apply_seconds) * 1e3) if stats.apply_seconds else 0.0,
        "runtime_wall_seconds": stats.wall_seconds,
        "trace": os.path.join(os.path.abspath(workdir), "trace.npz"),
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


def save_checkpoint(ctx: RunContext, done: int, server, protocol) -> None:
    """The server state and the protocol's snapshot (rows, counters, failures) in one orbax checkpoint, so
    they are written, kept and removed together: all a resume needs."""
    snap = protocol.snapshot()
    rows = Trace.from_rows(snap.pop("rows"), protocol.K)
    snap["rows"] = {name: getattr(rows, name).tolist() for name in COLUMNS}
    ctx.save(done, {"server": server}, meta=snap)


def resume(ctx: RunContext, protocol, server, params):
    """Restore the latest checkpoint into (server state, protocol); None when the workdir holds none.

    Gradients applied up to the checkpoint are kept; steps in flight then (and anything after it, if the
    run was killed) are recomputed, so nothing is lost or applied twice beyond the checkpoint boundary.
    """
    got = ctx.checkpoints.restore_latest({"server": server.init(params)}, with_meta=True)
    if got is None:
        return None
    step, (state, snap) = got
    try:
        cols = snap["rows"]
        rows = [Row(*r) for r in zip(*(cols[name] for name in COLUMNS), strict=True)]
        snap = {**snap, "rows": rows}
        kept = sum(1 for r in rows if r.step >= 0)
        protocol.resume(snap, max((r.t_apply for r in rows), default=0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"checkpoint {step} in {ctx.checkpoints.directory!r} holds a damaged protocol snapshot ({e}); "
            "move it away to resume from an earlier one, or use a new --workdir"
        ) from None
    ctx.resumed_from = kept
    ctx.truncate_after(kept)
    ctx.write(kept, event="resumed", from_update=int(snap["version"]), gradients_kept=kept, checkpoint=step)
    logging.warning(
        "resumed from checkpoint %d: update %d, %d gradients kept, every worker restarts from the server's "
        "parameters; steps after the checkpoint are recomputed",
        step,
        snap["version"],
        kept,
    )
    return state["server"]
