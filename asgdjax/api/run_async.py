"""`asgdjax.run_async`: the same call as `asgdjax.simulate`, trained by real asynchronous workers.

Workers run on local devices (round-robin over `jax.devices()`, several per device allowed) or as Ray
actors (`backend="ray"`); the coordinator applies their gradients with the same server update the
simulator uses and records the order it saw, so `asgdjax.simulate(..., trace=result.trace)` replays the
run exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from asgdjax.api import arguments
from asgdjax.api.problem import Problem, finish, problem_of_call
from asgdjax.api.result import Result, as_metrics
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.errors import ConfigError
from asgdjax.parallel import group_devices
from asgdjax.runtime import Applied, Coordinator, RunOptions


def run_async(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    num_workers: int | None = None,
    batch_size: int | None = None,
    protocol: str | ProtocolSpec | None = None,
    local_learning_rate: float | None = None,
    rule: str | optax.GradientTransformationExtraArgs = "none",
    sampler: str | Sampler = "shards",
    staleness_cap: int = -1,
    key: int | jax.Array = 0,
    eval_fn: Callable[[Any], dict | float] | None = None,
    eval_every: int = 0,
    log_every: int = 0,
    max_loss: float = math.inf,
    devices: list | None = None,
    backend: str = "local",
    worker_timeout: float = 0.0,
    max_worker_failures: int = 3,
) -> Result:
    """Train with real asynchronous workers; arguments as `asgdjax.simulate` (no delay model: the
    hardware is the clock), plus where the workers run: `devices` (one entry per worker; default
    round-robin over jax.devices()) or `backend="ray"` (Ray actors; call `ray.init()` first), and how
    failing workers are treated (`worker_timeout` seconds, `max_worker_failures` restarts)."""
    t0 = time.perf_counter()
    worker_timeout = arguments.number("worker_timeout", worker_timeout, lowest=0, allowed="seconds >= 0 (0: no limit)")
    max_worker_failures = arguments.integer("max_worker_failures", max_worker_failures, 0, "an integer >= 0")
    p = problem_of_call(locals(), trace=None)
    coordinator = _coordinator(p, devices, backend)
    losses: list = []
    evals: list = []
    progress = {"grads": 0}

    def on_apply(a: Applied) -> None:
        done, server = a.gradients, a.server
        losses.extend(a.losses)
        a.losses.clear()
        a.staleness.clear()
        prev, progress["grads"] = progress["grads"], done
        if eval_fn is not None and p.eval_every and done // p.eval_every > prev // p.eval_every:
            evals.append((done, as_metrics(eval_fn(server.params))))

    options = RunOptions(worker_timeout=worker_timeout, max_failures=max_worker_failures)
    try:
        server, trace, _ = coordinator.run(
            p.task.init(p.keys.init), p.spec.machine(p.steps), options=options, on_apply=on_apply
        )
    finally:
        coordinator.shutdown()
    if eval_fn is not None and (not evals or evals[-1][0] != trace.num_gradients):
        evals.append((trace.num_gradients, as_metrics(eval_fn(server.params))))
    losses_ = np.asarray([float(x) for x in losses])
    return finish(
        p, params=server.params, losses=losses_, evals=evals, trace=trace, server=server, t0=t0, source="runtime"
    )


def _coordinator(p: Problem, devices: list | None, backend: str) -> Coordinator:
    """Workers on `devices` (default: round-robin over jax.devices()) or Ray actors, fed host copies of the data."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; allowed: local, ray")
    if devices is not None:
        _check_devices(devices, p.spec.num_workers)
    entries = devices if devices is not None else group_devices(p.spec.num_workers)
    return Coordinator(
        p.task,
        p.make_server,
        p.hparams,
        p.spec,
        devices=entries,
        data=jax.tree.map(np.asarray, p.data),
        sampler=p.sampler,
        data_key=p.keys.data,
        backend=backend,
    )


def _check_devices(devices: Any, num_workers: int) -> None:
    """One entry per worker, each a jax.Device or a tuple of them (a model-parallel group)."""
    entries = list(devices) if isinstance(devices, list | tuple) else None
    groups = [e if isinstance(e, list | tuple) else (e,) for e in entries or []]
    if (
        entries is None
        or len(entries) != num_workers
        or not all(g and all(isinstance(d, jax.Device) for d in g) for g in groups)
    ):
        raise ConfigError(
            f"devices={devices!r} is not allowed; give {num_workers} entries (one per worker), each a jax.Device "
            "(e.g. jax.devices()[i]) or a tuple of them, or leave it out (round-robin over jax.devices())"
        )
