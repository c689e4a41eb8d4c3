"""The real asynchronous runtime: a host-side coordinator over devices.

Each worker owns a device, or a group of devices holding one model-parallel replica (several workers may
share one), its deterministic data stream and a parameter copy, and runs jitted gradient steps there
through JAX's asynchronous dispatch. The coordinator waits for
whichever gradient is ready first (a thread per in-flight step blocks on it, releasing the GIL), feeds
that arrival to the same `Protocol` the simulator's virtual clock drives, and executes the trace rows it
produces with the same arithmetic as the simulator: Downpour local steps, pushes, the shared
`Server.apply` (jitted on the server device), fetches. The rows it records are the run's trace, so the
simulator replays the run exactly. Every (worker, step) is executed once; a second execution raises.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from asgdjax.data import WorkerStream
from asgdjax.parallel import Placement
from asgdjax.runtime.workers import LocalWorkers
from asgdjax.server import Server, ServerState
from asgdjax.sim.protocol import Protocol
from asgdjax.sim.trace import Trace
from asgdjax.train.task import Task


@dataclasses.dataclass
class RuntimeStats:
    """What the coordinator measured: per-worker step counts and busy time, apply latency samples, and per
    arrival: the worker's step time (dispatch -> gradient ready), the time until the coordinator took it
    (notice) and how long the coordinator then held it (service: rows, apply dispatch, fetch, next step).
    These are what `asgdjax.predict` calibrates the virtual clock from."""

    steps: np.ndarray
    busy_seconds: np.ndarray
    apply_seconds: list = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0
    step_seconds: list = dataclasses.field(default_factory=list)  # (worker, seconds) per arrival
    notice_seconds: list = dataclasses.field(default_factory=list)
    service_seconds: list = dataclasses.field(default_factory=list)


def placements_for(model, groups: list) -> list[Placement]:
    """One Placement per worker from its device or device group; workers sharing devices share it."""
    made: dict[tuple, Placement] = {}
    out = []
    for g in groups:
        if isinstance(g, Placement):
            out.append(made.setdefault(g.devices, g))
            continue
        devs = tuple(g) if isinstance(g, (tuple, list)) else (g,)
        if devs not in made:
            made[devs] = Placement.for_model(model, devs)
        out.append(made[devs])
    return out


class Coordinator:
    """Runs `num_workers` asynchronous workers on `devices` (one entry per worker) against one server.

    Each entry of `devices` is a device, a tuple of devices (one model-parallel group: parameters,
    gradients and the worker's copy sharded over it by `asgdjax.parallel`'s rules) or a Placement. The
    server's parameters, optimizer and rule state are sharded the same way over `server_device` (default:
    worker 0's group). make_server(hparams) -> Server is the simulator's factory; group_size and
    local_updates mean what they mean for `asgdjax.sim.Simulator`. backend: "local" (the devices above),
    "ray" (Ray actors; `devices` then only counts the workers; backend_options go to RayWorkers), or any
    object with the `LocalWorkers` interface (tests use a timer-driven one).
    """

    def __init__(
        self,
        task: Task,
        make_server: Callable[[dict], Server],
        hparams: dict,
        devices: list,
        data: dict,
        streams: list[WorkerStream],
        data_key: jax.Array,
        group_size: int = 1,
        local_updates: bool = False,
        server_device=None,
        backend="local",
        backend_options: dict | None = None,
    ):
        self.task, self.K = task, len(devices)
        self.G, self.local_updates = group_size, local_updates
        self.hparams = {k: jnp.float32(v) for k, v in hparams.items()}
        self.make_server = make_server
        llr = float(hparams.get("local_learning_rate", hparams.get("learning_rate", 0.0)))
        if backend == "local":
            srv_entry = server_device if server_device is not None else devices[0]
            *placements, self.server_placement = placements_for(task.model, [*devices, srv_entry])
            self.workers = LocalWorkers(
                task, placements, self.server_placement, data, streams, data_key, local_updates, llr
            )
        else:  # workers elsewhere (`devices` only counts them): the server on its own device
            srv_entry = server_device if server_device is not None else jax.devices()[0]
            (self.server_placement,) = placements_for(task.model, [srv_entry])
            if backend == "ray":
                from asgdjax.runtime.ray_workers import RayWorkers

                self.workers = RayWorkers(
                    task, self.K, data, streams, data_key, local_updates, llr, **(backend_options or {})
                )
            elif not isinstance(backend, str):  # a worker pool object (the LocalWorkers interface)
                self.workers = backend
            else:
                raise ValueError(f"backend {backend!r}; allowed: local, ray")
        self.devices = self.workers.devices
        srv = self.server_placement
        abstract = jax.eval_shape(task.model.init, jax.random.key(0))
        self._srv_params = srv.shardings(abstract)
        state_sh = srv.shardings(jax.eval_shape(lambda p: make_server(self.hparams).init(p), abstract))
        self._server_init = jax.jit(lambda p, hp: make_server(hp).init(p), out_shardings=state_sh)
        # No buffer donation: workers' snapshots (DC-ASGD read params) are references to past server versions.
        self._apply_one = jax.jit(
            lambda st, g, rv, w, rp, hp: make_server(hp).apply_one(st, g, rv, w, rp), out_shardings=state_sh
        )
        self._apply = jax.jit(
            lambda st, g, rv, w, rp, n, hp: make_server(hp).apply(st, g, rv, w, rp, n), out_shardings=state_sh
        )
        self._server_sh = state_sh

    def shutdown(self) -> None:
        """Release the workers (Ray actors are killed; local workers hold nothing to release)."""
        if hasattr(self.workers, "shutdown"):
            self.workers.shutdown()

    def run(
        self,
        params,
        protocol: Protocol,
        on_apply: Callable[[int, ServerState], None] | None = None,
        measure_every: int = 20,
        faults: dict[tuple[int, int], str] | None = None,
        worker_timeout: float = 0.0,
        max_failures: int = 3,
        server_state: ServerState | None = None,
        on_arrival: Callable[[int, ServerState, Protocol], None] | None = None,
    ) -> tuple[ServerState, Trace, RuntimeStats]:
        """Train until the protocol's step budget is spent; returns (server state, trace, stats).

        on_apply(gradients_executed, server_state) runs after every applied update (logging, eval).
        Every `measure_every`-th apply is timed to completion (apply latency); the others stay async.
        A worker step that raises, or runs past `worker_timeout` seconds (0: no limit), is a failure:
        nothing of it is applied, the failure is logged and recorded in the trace, and the worker restarts
        from the server's parameters (retrying the same step) until it has failed `max_failures` times,
        then it is dropped. faults {(worker, step): "raise" | "hang"} injects failures (tests, drills).
        server_state and a `protocol.resume()`d protocol continue a checkpointed run: every worker starts
        from the server's parameters, and the steps already in the protocol's rows are never recomputed.
        on_arrival(gradients, server_state, protocol) runs after each arrival's rows are executed (a
        consistent point for checkpoints).
        """
        faults = dict(faults or {})
        srv_params = self._srv_params
        if server_state is None:
            server = self._server_init(jax.device_put(params, srv_params), self.hparams)
        else:
            server = jax.device_put(server_state, self._server_sh)
        workers = self.workers
        workers.start(server.params, int(server.version))
        snap = [server.params] * self.K
        read_version = [int(server.version)] * self.K
        pending: list[tuple] = []
        futures: dict[tuple[int, int], cf.Future] = {}
        executed = {(int(r[0]), int(r[1])) for r in protocol.rows if r[1] >= 0}
        stats = RuntimeStats(np.zeros(self.K, np.int64), np.zeros(self.K))
        started_at: dict[tuple[int, int], float] = {}
        gradients = len(executed)
        failures = [0] * self.K
        t0 = time.perf_counter()
        t_base = max((float(r[8]) for r in protocol.rows), default=0.0)  # a resumed run's clock continues

        def dispatch(starts):
            for w, s in starts:
                fault = faults.pop((w, s), None)
                try:
                    if fault == "raise":
                        raise RuntimeError(f"injected failure of worker {w} at step {s}")
                    future = workers.submit(w, s)
                except Exception as e:  # noqa: BLE001 (any worker error is a worker failure)
                    future = cf.Future()
                    future.set_exception(e)
                # A hung step never completes: only the timeout ends it.
                futures[(w, s)] = cf.Future() if fault == "hang" else future
                # From the end of the (asynchronous) dispatch call: its host time is the coordinator's
                # service time, the step time is what the worker then takes (calibration keeps them apart).
                started_at[(w, s)] = getattr(future, "dispatched", None) or time.perf_counter()

        def fail(key, error, t):
            w, s = key
            del futures[key]
            workers.discard(w, s)
            started_at.pop(key, None)
            failures[w] += 1
            drop = failures[w] > max_failures
            logging.warning(
                "worker %d failed at step %d (%s); %s",
                w,
                s,
                error,
                "dropped" if drop else f"restarting from version {version} (failure {failures[w]}/{max_failures})",
            )
            first_row = len(protocol.rows)
            starts = protocol.fail(w, s, t - t0 + t_base, str(error), drop)
            for row in protocol.rows[first_row:]:
                execute(row)
            dispatch(starts)

        def fetch(w):
            snap[w] = server.params
            workers.fetch(w, server.params, version)
            read_version[w] = int(version)

        def apply_pending():
            nonlocal server, version, pending
            t = time.perf_counter()
            if self.G == 1 and not self.local_updates:
                g, rv, w, _ = pending[0]
                server = self._apply_one(server, g, np.int32(rv), np.int32(w), snap[w], self.hparams)
            else:
                n = len(pending)
                pad = self.G - n
                gs = [p[0] for p in pending] + [jax.tree.map(jnp.zeros_like, pending[0][0])] * pad
                rps = [snap[p[2]] for p in pending] + [snap[pending[0][2]]] * pad
                stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
                reads = np.asarray([p[1] for p in pending] + [0] * pad, np.int32)
                workers = np.asarray([p[2] for p in pending] + [0] * pad, np.int32)
                server = self._apply(server, stack(gs), reads, workers, stack(rps), np.int32(n), self.hparams)
            version += 1
            if measure_every and version % measure_every == 0:
                jax.block_until_ready(server.params)
                stats.apply_seconds.append(time.perf_counter() - t)
            for _, _, m, fetch_on_apply in pending:
                if fetch_on_apply:
                    fetch(m)
            pending = []
            if on_apply is not None:
                on_apply(gradients, server)

        def execute(row):
            nonlocal gradients
            w, s, push, apply, fetch_flag = row[0], row[1], row[2], row[3], row[4]
            if s >= 0:
                if (w, s) in executed:
                    raise RuntimeError(f"gradient of worker {w} step {s} would be applied twice")
                executed.add((w, s))
                g = workers.take(w, s)
                if self.local_updates:
                    workers.local_step(w, g)
                    pushed = workers.accumulated(w)
                else:
                    pushed = g
                gradients += 1
            if push:
                pending.append((jax.device_put(pushed, srv_params), read_version[w], w, fetch_flag == 2))
                if self.local_updates:
                    workers.clear(w)
            if apply:
                apply_pending()  # members flagged fetch-on-apply (2) fetch inside
            if fetch_flag == 1:
                fetch(w)
                if s < 0 and self.local_updates:  # a restart (or a join) drops unpushed local gradients
                    workers.clear(w)

        version = int(server.version)
        try:
            dispatch(protocol.begin())
            while futures:
                if not any(f.done() for f in futures.values()):
                    wait = None
                    if worker_timeout:
                        wait = max(0.0, min(started_at[k] for k in futures) + worker_timeout - time.perf_counter())
                    cf.wait(list(futures.values()), timeout=wait, return_when=cf.FIRST_COMPLETED)
                now = time.perf_counter()
                for key in [k for k, f in futures.items() if not f.done() and worker_timeout]:
                    if now - started_at[key] > worker_timeout:
                        fail(key, TimeoutError(f"no gradient after {worker_timeout:g} s"), now)
                errors = [(k, f.exception()) for k, f in futures.items() if f.done() and f.exception()]
                for key, error in errors:
                    fail(key, error, now)
                ready = [(f.result(), k) for k, f in futures.items() if f.done()]
                if not ready:
                    continue
                t_done, (w, s) = min(ready, key=lambda x: (x[0], x[1][0]))
                t_taken = time.perf_counter()
                del futures[(w, s)]
                stats.steps[w] += 1
                took = t_done - started_at.pop((w, s))
                stats.busy_seconds[w] += took
                stats.step_seconds.append((w, took))
                stats.notice_seconds.append(max(0.0, t_taken - t_done))
                first_row = len(protocol.rows)
                starts = protocol.arrive(w, s, t_done - t0 + t_base)
                for row in protocol.rows[first_row:]:
                    execute(row)
                if on_arrival is not None:
                    on_arrival(gradients, server, protocol)
                dispatch(starts)
                # Service ends when the last step started here was dispatched (a lone worker's submit blocks
                # until its gradient is ready; that wait is step time, not service).
                ends = [started_at[key] for key in starts if key in started_at]
                stats.service_seconds.append((max(ends) if ends else time.perf_counter()) - t_taken)
            protocol.finish()
            if pending:
                apply_pending()
            jax.block_until_ready(server.params)
            if gradients < protocol.num_steps:
                raise RuntimeError(
                    f"all {self.K} workers failed more than max_failures={max_failures} times; "
                    f"{gradients} of {protocol.num_steps} gradients were applied"
                )
        finally:
            workers.close()
        stats.wall_seconds = time.perf_counter() - t0
        meta = {"source": "runtime", "failures": protocol.failures}
        trace = Trace.from_rows([tuple(r) for r in protocol.rows], self.K, meta)
        return server, trace, stats
