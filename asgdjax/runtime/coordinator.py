"""The real asynchronous runtime: a host-side coordinator over devices.

Each worker owns a device (several may share one), its deterministic data stream and a parameter copy,
and runs jitted gradient steps there through JAX's asynchronous dispatch. The coordinator waits for
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

from asgdjax.data import WorkerStream
from asgdjax.server import Server, ServerState
from asgdjax.sim.protocol import Protocol
from asgdjax.sim.trace import Trace
from asgdjax.train.task import Task, batch_key


@dataclasses.dataclass
class RuntimeStats:
    """What the coordinator measured: per-worker step counts and busy time, apply latency samples."""

    steps: np.ndarray
    busy_seconds: np.ndarray
    apply_seconds: list = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0


class Coordinator:
    """Runs `num_workers` asynchronous workers on `devices` (one entry per worker) against one server.

    make_server(hparams) -> Server is the simulator's factory; group_size and local_updates mean what they
    mean for `asgdjax.sim.Simulator`.
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
    ):
        self.task, self.K = task, len(devices)
        self.devices = devices
        self.server_device = server_device or devices[0]
        self.G, self.local_updates = group_size, local_updates
        self.streams, self.data_key = streams, data_key
        self.hparams = {k: jnp.float32(v) for k, v in hparams.items()}
        self.make_server = make_server
        self._data = {}
        for d in {*devices, self.server_device}:
            self._data[d] = jax.device_put(data, d)
        # The batch key is derived inside the step from (worker, step): no eager PRNG ops on the host path.
        self._grad = jax.jit(lambda p, d, idx, w, s: task.grad(p, d, idx, batch_key(data_key, w, s)))
        self._local_step = jax.jit(
            lambda p, acc, g, llr: (jax.tree.map(lambda x, d: x - llr * d, p, g), jax.tree.map(jnp.add, acc, g))
        )
        # No buffer donation: workers' snapshots (DC-ASGD read params) are references to past server versions.
        self._apply_one = jax.jit(lambda st, g, rv, w, rp, hp: make_server(hp).apply_one(st, g, rv, w, rp))
        self._apply = jax.jit(lambda st, g, rv, w, rp, n, hp: make_server(hp).apply(st, g, rv, w, rp, n))

    def data_on(self, device) -> dict:
        return self._data[device]

    def run(
        self,
        params,
        protocol: Protocol,
        on_apply: Callable[[int, ServerState], None] | None = None,
        measure_every: int = 20,
    ) -> tuple[ServerState, Trace, RuntimeStats]:
        """Train until the protocol's step budget is spent; returns (server state, trace, stats).

        on_apply(gradients_executed, server_state) runs after every applied update (logging, eval).
        Every `measure_every`-th apply is timed to completion (apply latency); the others stay async.
        """
        srv = self.server_device
        server = self.make_server(self.hparams).init(jax.device_put(jax.tree.map(jnp.array, params), srv))
        local = [jax.device_put(server.params, d) for d in self.devices]
        snap = [server.params] * self.K
        acc = [jax.tree.map(jnp.zeros_like, p) for p in local] if self.local_updates else [None] * self.K
        read_version = [0] * self.K
        pending: list[tuple] = []
        grads: dict[tuple[int, int], object] = {}
        futures: dict[tuple[int, int], cf.Future] = {}
        executed: set[tuple[int, int]] = set()
        stats = RuntimeStats(np.zeros(self.K, np.int64), np.zeros(self.K))
        started_at: dict[tuple[int, int], float] = {}
        gradients = 0
        t0 = time.perf_counter()
        # One worker: block on its gradient directly. Several: a thread per in-flight gradient blocks on it
        # (releasing the GIL) so the coordinator can take whichever finishes first.
        pool = cf.ThreadPoolExecutor(max_workers=self.K, thread_name_prefix="asgd-wait") if self.K > 1 else None

        def dispatch(starts):
            for w, s in starts:
                dev = self.devices[w]
                started_at[(w, s)] = time.perf_counter()
                # numpy arguments follow the committed parameters onto the worker's device
                loss, g = self._grad(local[w], self._data[dev], self.streams[w].batch(s), np.int32(w), np.int32(s))
                grads[(w, s)] = g
                futures[(w, s)] = pool.submit(_ready_at, g) if pool else _Done(_ready_at(g))

        def fetch(w):
            snap[w] = server.params
            dev = self.devices[w]
            local[w] = server.params if dev == srv else jax.device_put(server.params, dev)
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
                g = grads.pop((w, s))
                if self.local_updates:
                    local[w], acc[w] = self._local_step(local[w], acc[w], g, self.hparams["local_learning_rate"])
                    pushed = acc[w]
                else:
                    pushed = g
                gradients += 1
            if push:
                pending.append((jax.device_put(pushed, srv), read_version[w], w, fetch_flag == 2))
                if self.local_updates:
                    acc[w] = jax.tree.map(jnp.zeros_like, acc[w])
            if apply:
                apply_pending()  # members flagged fetch-on-apply (2) fetch inside
            if fetch_flag == 1:
                fetch(w)

        version = 0
        try:
            dispatch(protocol.begin())
            while futures:
                if pool:
                    cf.wait(list(futures.values()), return_when=cf.FIRST_COMPLETED)
                ready = [(f.result(), k) for k, f in futures.items() if f.done()]
                t_done, (w, s) = min(ready, key=lambda x: (x[0], x[1][0]))
                del futures[(w, s)]
                stats.steps[w] += 1
                stats.busy_seconds[w] += t_done - started_at.pop((w, s))
                first_row = len(protocol.rows)
                starts = protocol.arrive(w, s, t_done - t0)
                for row in protocol.rows[first_row:]:
                    execute(row)
                dispatch(starts)
            protocol.finish()
            if pending:
                apply_pending()
            jax.block_until_ready(server.params)
        finally:
            if pool:
                pool.shutdown(wait=False, cancel_futures=True)
        stats.wall_seconds = time.perf_counter() - t0
        trace = Trace.from_rows([tuple(r) for r in protocol.rows], self.K, {"source": "runtime"})
        return server, trace, stats


class _Done:
    """A finished future (the single-worker path blocks in the coordinator thread itself)."""

    def __init__(self, value):
        self.value = value

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


def _ready_at(x) -> float:
    jax.block_until_ready(x)
    return time.perf_counter()
