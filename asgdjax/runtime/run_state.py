"""One coordinator run as an explicit state object: dispatch steps, take the first arrival, execute the
protocol's rows, apply pending groups, handle failures.

`execute(row)` reads beside the simulator's `Simulator._event` for the same row: local step -> push ->
apply -> fetch. Each is the same arithmetic on the same values, which is why a recorded trace replays
exactly.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from asgdjax.core.protocol import Protocol
from asgdjax.core.server import ServerState
from asgdjax.core.task import Params
from asgdjax.core.trace import Fetch, Row, Trace
from asgdjax.runtime.pool import failed_future

if TYPE_CHECKING:
    from asgdjax.runtime.coordinator import Coordinator


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run treats slow and failing workers.

    A worker step that raises, or runs past `worker_timeout` seconds (0: no limit), is a failure: nothing of
    it is applied, the failure is logged and recorded in the trace, and the worker restarts from the
    server's parameters (retrying the same step) until it has failed `max_failures` times, then it is
    dropped. `faults` {(worker, step): "raise" | "hang"} injects failures (tests, drills). Every
    `measure_every`-th apply is timed to completion (apply latency); the others stay asynchronous.
    """

    worker_timeout: float = 0.0
    max_failures: int = 3
    faults: dict = dataclasses.field(default_factory=dict)
    measure_every: int = 20


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


class Applied(NamedTuple):
    """What `on_apply` gets after each update: gradients executed so far, the server state, and the training
    losses and staleness values of the gradients since the callback last took them (it clears them)."""

    gradients: int
    server: ServerState
    losses: list
    staleness: list


class Pending(NamedTuple):
    """A pushed gradient waiting in the server's current group."""

    grads: Params
    read_version: int
    worker: int
    fetch_on_apply: bool


class ActiveRun:
    """The mutable state of one run; `loop()` drives it to the end of the protocol's step budget."""

    def __init__(
        self,
        co: Coordinator,
        protocol: Protocol,
        server: ServerState,
        options: RunOptions,
        *,
        on_apply: Callable[[Applied], None] | None,
        on_arrival: Callable[[int, ServerState, Protocol], None] | None,
    ):
        self.co, self.protocol, self.server, self.options = co, protocol, server, options
        self.pool, self.programs, self.hparams = co.workers, co.programs, co.hparams
        self.on_apply, self.on_arrival = on_apply, on_arrival
        self.faults = dict(options.faults)
        k = co.K
        self.version = int(server.version)
        self.snap: list[Params] = [server.params] * k  # the parameters each worker computes on (as fetched)
        self.read_version = [self.version] * k
        self.pending: list[Pending] = []
        self.in_flight: dict[tuple[int, int], cf.Future] = {}
        self.started_at: dict[tuple[int, int], float] = {}
        self.deadline: dict[tuple[int, int], float] = {}  # when an in-flight call counts as hung
        self.executed = {(r.worker, r.step) for r in protocol.rows if r.step >= 0}
        self.gradients = len(self.executed)
        self.losses: list = []  # training losses of the gradients executed since on_apply last took them
        self.staleness: list[int] = []  # and the staleness of each gradient applied since
        self.failures = [0] * k
        self.stats = RuntimeStats(np.zeros(k, np.int64), np.zeros(k))
        # Plain async: each update applies one gradient (`apply_one`); groups and Downpour pushes go through
        # the padded group update (`apply`). The warm-up compiles the one the run uses.
        self.one_at_a_time = co.spec.group_size == 1 and not co.spec.local_updates
        self.t0 = time.perf_counter()
        self.t_base = max((float(r.t_apply) for r in protocol.rows), default=0.0)  # a resumed run's clock goes on

    # ---------------------------------------------------------------------------------------------- loop
    def loop(self) -> None:
        self.pool.start(self.server.params, self.version)  # compiles the workers' programs (once per pool)
        self.co.programs.warm_up(
            self.server,
            self.hparams,
            group_size=self.co.spec.group_size,
            one=self.one_at_a_time,
        )
        self.t0 = time.perf_counter()  # the run's clock starts with everything compiled
        self.dispatch(self.protocol.begin())
        while self.in_flight:
            ready = self.wait()
            if ready is None:
                continue
            self.arrive(*ready)
        self.protocol.finish()
        if self.pending:
            self.apply_pending()
        jax.block_until_ready(self.server.params)
        if self.gradients < self.protocol.num_steps:
            raise RuntimeError(
                f"all {self.co.K} workers failed more than max_failures={self.options.max_failures} times; "
                f"{self.gradients} of {self.protocol.num_steps} gradients were applied"
            )
        self.stats.wall_seconds = time.perf_counter() - self.t0

    def dispatch(self, starts: list[tuple[int, int]]) -> None:
        for w, s in starts:
            fault = self.faults.pop((w, s), None)
            try:
                if fault == "raise":
                    raise RuntimeError(f"injected failure of worker {w} at step {s}")
                future, at, steps = self.pool.submit(w, s)
            except Exception as e:  # noqa: BLE001 (any worker error is a worker failure)
                future, at, steps = failed_future(e), time.perf_counter(), 1
            # A hung step never completes: only the timeout ends it.
            self.in_flight[(w, s)] = cf.Future() if fault == "hang" else future
            # From the end of the (asynchronous) dispatch call: its host time is the coordinator's service
            # time, the step time is what the worker then takes (calibration keeps them apart).
            self.started_at[(w, s)] = at
            # worker_timeout is per local step: a call computing several (a Ray Downpour segment) gets each's.
            self.deadline[(w, s)] = at + self.options.worker_timeout * steps

    def wait(self) -> tuple[float, int, int] | None:
        """Block until a step finishes, fails or times out; the first finished (time, worker, step) or None."""
        timeout = self.options.worker_timeout
        if not any(f.done() for f in self.in_flight.values()):
            wait = None
            if timeout:
                wait = max(0.0, min(self.deadline[k] for k in self.in_flight) - time.perf_counter())
            cf.wait(list(self.in_flight.values()), timeout=wait, return_when=cf.FIRST_COMPLETED)
        now = time.perf_counter()
        for key in [k for k, f in self.in_flight.items() if not f.done() and timeout]:
            if now > self.deadline[key]:
                limit = self.deadline[key] - self.started_at[key]
                self.fail(key, TimeoutError(f"no gradient after {limit:g} s"), now)
        failed = [(k, f.exception()) for k, f in self.in_flight.items() if f.done()]
        for key, error in failed:
            if error is not None:
                self.fail(key, error, now)
        ready = [(f.result(), w, s) for (w, s), f in self.in_flight.items() if f.done()]
        return min(ready) if ready else None

    def arrive(self, t_done: float, w: int, s: int) -> None:
        t_taken = time.perf_counter()
        del self.in_flight[(w, s)]
        took = t_done - self.started_at.pop((w, s))
        self.deadline.pop((w, s), None)
        self.stats.steps[w] += 1
        self.stats.busy_seconds[w] += took
        self.stats.step_seconds.append((w, took))
        self.stats.notice_seconds.append(max(0.0, t_taken - t_done))
        starts = self.run_rows(lambda: self.protocol.arrive(w, s, t_done - self.t0 + self.t_base))
        if self.on_arrival is not None:
            self.on_arrival(self.gradients, self.server, self.protocol)
        self.dispatch(starts)
        # Service ends when the last step started here was dispatched (a lone worker's submit blocks until
        # its gradient is ready; that wait is step time, not service).
        ends = [self.started_at[key] for key in starts if key in self.started_at]
        self.stats.service_seconds.append((max(ends) if ends else time.perf_counter()) - t_taken)

    def fail(self, key: tuple[int, int], error: BaseException, t: float) -> None:
        w, s = key
        del self.in_flight[key]
        self.pool.discard(w, s)
        self.started_at.pop(key, None)
        self.deadline.pop(key, None)
        self.failures[w] += 1
        limit = self.options.max_failures
        drop = self.failures[w] > limit
        then = "dropped" if drop else f"restarting from version {self.version} (failure {self.failures[w]}/{limit})"
        logging.warning("worker %d failed at step %d (%s); %s", w, s, error, then)
        starts = self.run_rows(lambda: self.protocol.fail(w, s, t - self.t0 + self.t_base, str(error), drop))
        self.dispatch(starts)

    def run_rows(self, step: Callable[[], list[tuple[int, int]]]) -> list[tuple[int, int]]:
        """Advance the protocol and execute the rows it appended; returns the steps to start."""
        first = len(self.protocol.rows)
        starts = step()
        for row in self.protocol.rows[first:]:
            self.execute(row)
        return starts

    # ------------------------------------------------------------------------------------ one trace row
    def execute(self, row: Row) -> None:
        """Local step -> push -> apply -> fetch, as `Simulator._event` does for the same row."""
        w, s = row.worker, row.step
        pushed = None
        if s >= 0:
            if (w, s) in self.executed:
                raise RuntimeError(f"gradient of worker {w} step {s} would be applied twice")
            self.executed.add((w, s))
            loss, g = self.pool.take(w, s)
            self.losses.append(loss)
            if self.co.spec.local_updates:
                self.pool.local_step(w, g)
            pushed = g
            self.gradients += 1
        if row.push:
            if self.co.spec.local_updates:  # asked only when pushed: a Ray actor keeps it until then
                pushed = self.pool.accumulated(w)
            grads = jax.device_put(pushed, self.programs.params_sharding)
            self.pending.append(Pending(grads, self.read_version[w], w, row.fetch == Fetch.ON_APPLY))
            if self.co.spec.local_updates:
                self.pool.clear(w)
        if row.apply:
            self.apply_pending()  # members flagged fetch-on-apply fetch inside
        if row.fetch == Fetch.NOW:
            self.fetch(w)
            if s < 0 and self.co.spec.local_updates:  # a restart (or a join) drops unpushed local gradients
                self.pool.clear(w)

    def apply_pending(self) -> None:
        t = time.perf_counter()
        p, hp = self.programs, self.hparams
        if self.one_at_a_time:
            g, rv, w, _ = self.pending[0]
            self.server = p.apply_one(self.server, g, np.int32(rv), np.int32(w), self.snap[w], hp)
        else:
            grads, reads, workers, reads_params, n = self._stacked_group()
            self.server = p.apply(self.server, grads, reads, workers, reads_params, np.int32(n), hp)
        self.version += 1
        every = self.options.measure_every
        if every and self.version % every == 0:
            jax.block_until_ready(self.server.params)
            self.stats.apply_seconds.append(time.perf_counter() - t)
        members, self.pending = self.pending, []
        self.staleness.extend(self.version - 1 - m.read_version for m in members)
        for m in members:
            if m.fetch_on_apply:
                self.fetch(m.worker)
        if self.on_apply is not None:
            self.on_apply(Applied(self.gradients, self.server, self.losses, self.staleness))
        else:
            self.losses.clear()
            self.staleness.clear()

    def _stacked_group(self) -> tuple[Any, np.ndarray, np.ndarray, Any, int]:
        """The pending group padded to the server's group width, as the simulator's pending buffer is."""
        n, pad = len(self.pending), self.co.spec.group_size - len(self.pending)
        first = self.pending[0]
        gs = [m.grads for m in self.pending] + [jax.tree.map(jnp.zeros_like, first.grads)] * pad
        rps = [self.snap[m.worker] for m in self.pending] + [self.snap[first.worker]] * pad
        stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
        reads = np.asarray([m.read_version for m in self.pending] + [0] * pad, np.int32)
        workers = np.asarray([m.worker for m in self.pending] + [0] * pad, np.int32)
        return stack(gs), reads, workers, stack(rps), n

    def fetch(self, w: int) -> None:
        self.snap[w] = self.server.params
        self.pool.fetch(w, self.server.params, self.version)
        self.read_version[w] = self.version

    def trace(self) -> Trace:
        meta = {**self.co.spec.meta(), "source": "runtime", "failures": self.protocol.failures}
        return Trace.from_rows(self.protocol.rows, self.co.K, meta)
