"""Delay models -> schedules: an event-driven simulation of K workers and a parameter server in virtual time.

The worker whose step finishes first arrives next. Downpour clients (Dean et al. 2012) fetch the server's
parameters every `n_fetch` local steps and push their accumulated gradient every `n_push` steps. Protocols:
  async     every push is applied on arrival (plain A-SGD), unless the SSP bound says wait (below);
  softsync  Zhang et al. 2016's n-softsync: the server applies every c = floor(K / n) pushes; learners do
            not wait for the update;
  sync      the staleness bound s = 0 below: every round's K gradients are averaged into one update, which
            is minibatch SGD with batch K * B.
Staleness bound s (SSP, `max_staleness`): a push is applied only if no other unfinished gradient would then
exceed staleness s; otherwise its worker waits (in virtual time too). Workers that block each other are
released together as one averaged update, so every applied gradient has staleness <= s.
Held pushes are written to the trace at their apply time: a waiting worker's parameters do not change
while it waits, so its gradient is the same wherever in the wait it is computed.
"""

from __future__ import annotations

import heapq

import jax
import numpy as np

from asgdjax.delays import DelayModel, StepTimes
from asgdjax.errors import ConfigError
from asgdjax.sim.trace import Trace

PROTOCOLS = ("async", "softsync", "sync")


def make_schedule(
    key: jax.Array,
    num_workers: int,
    num_steps: int,
    delays: DelayModel = DelayModel(),
    protocol: str = "async",
    softsync_n: int = 1,
    max_staleness: int = -1,
    n_fetch: int = 1,
    n_push: int = 1,
    warm_start_steps: int = 0,
) -> Trace:
    """Simulate until `num_steps` gradients (local steps, all workers) are computed; return the trace."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    if delays.kind == "uniform_staleness":
        return uniform_staleness_schedule(key, num_workers, num_steps, delays.staleness_bound)
    if protocol == "sync":
        max_staleness = 0
    group = max(1, num_workers // softsync_n) if protocol == "softsync" else 1
    sim = _EventSim(StepTimes(delays, key, num_workers), num_workers, num_steps, group, max_staleness, n_fetch, n_push)
    trace = sim.run(warm_start_steps)
    meta = {
        "protocol": protocol,
        "softsync_n": softsync_n,
        "max_staleness": max_staleness,
        "n_fetch": n_fetch,
        "n_push": n_push,
        "warm_start_steps": warm_start_steps,
        "delay": delays.kind,
        "source": "simulator",
    }
    return Trace.from_rows(trace, num_workers, meta)


def uniform_staleness_schedule(key: jax.Array, num_workers: int, num_steps: int, bound: int) -> Trace:
    """Dai et al. 2019's direct model: gradient i reads version max(0, i - tau_i), tau_i ~ U{0..bound}.

    No worker keeps a copy here (each gradient reads an arbitrary past version), so it replays with the
    version-ring memory of depth bound + 1.
    """
    tau = np.asarray(jax.random.randint(key, (num_steps,), 0, bound + 1))
    rows = []
    for i in range(num_steps):
        w = i % num_workers
        rows.append((w, i // num_workers, True, True, 0, max(0, i - int(tau[i])), i, float(i), float(i)))
    meta = {
        "protocol": "async",
        "delay": "uniform_staleness",
        "staleness_bound": bound,
        "source": "simulator",
    }
    meta.update(n_fetch=1, n_push=1, max_staleness=bound, softsync_n=1, warm_start_steps=0, memory="ring")
    return Trace.from_rows(rows, num_workers, meta)


class _EventSim:
    """The event loop behind make_schedule (host-side Python; about a microsecond-scale cost per event)."""

    def __init__(self, times, num_workers, num_steps, group, max_staleness, n_fetch, n_push):
        self.times, self.K, self.num_steps = times, num_workers, num_steps
        self.group, self.s, self.n_fetch, self.n_push = group, max_staleness, n_fetch, n_push
        self.version = 0
        self.read = [0] * num_workers  # version each worker's local copy was fetched at
        self.next_step = [0] * num_workers
        self.started = 0
        self.heap: list[tuple[float, int, int]] = []  # (t_end, worker, step) of computing workers
        self.held: dict[int, tuple[float, int]] = {}  # worker -> (t_arrive, step): pushed, waiting
        self.pending: list[int] = []  # softsync: row indices of pushes in the current group
        self.rows: list[list] = []

    def run(self, warm_start_steps: int) -> list[tuple]:
        warm = min(warm_start_steps, self.num_steps) if self.K > 1 else 0
        self._start(0, 0.0, limit=warm or None)
        if warm:  # worker 0 trains alone, then the others fetch its parameters and join
            while self.heap or self.held:
                self._advance(limit=warm)
            t_join = self.rows[-1][8] if self.rows else 0.0
            for w in range(1, self.K):
                self.read[w] = self.version
                self.rows.append([w, -1, False, False, 1, self.version, -1, t_join, t_join])
            for w in range(self.K):
                self._start(w, t_join)
        else:
            for w in range(1, self.K):
                self._start(w, 0.0)
        while self.heap or self.held:
            self._advance(limit=self.num_steps)
        self._flush_softsync()
        return [tuple(r) for r in self.rows]

    def _start(self, w: int, t: float, limit: int | None = None) -> None:
        if self.started >= (self.num_steps if limit is None else limit):
            return
        s = self.next_step[w]
        self.next_step[w] += 1
        self.started += 1
        heapq.heappush(self.heap, (t + self.times.time(w, s), w, s))

    def _advance(self, limit: int) -> None:
        if not self.heap:
            self._release(float(self.rows[-1][8]) if self.rows else 0.0, limit)
            if self.held:  # nothing computing and nothing releasable cannot happen; guard against loops
                raise RuntimeError("schedule deadlock: held workers with nothing in flight")
            return
        t, w, s = heapq.heappop(self.heap)
        last = self.started >= limit
        push = (s + 1) % self.n_push == 0 or last
        fetch_due = (s + 1) % self.n_fetch == 0
        if not push:
            if fetch_due:
                self.read[w] = self.version
            self.rows.append([w, s, False, False, 1 if fetch_due else 0, self.read[w], -1, t, t])
            self._start(w, t, limit)
            return
        if self.group > 1:  # softsync: join the group, fetch now, keep going
            self.pending.append(len(self.rows))
            self.rows.append([w, s, True, False, 1 if fetch_due else 0, self.read[w], -1, t, t])
            if len(self.pending) == self.group:
                self._apply_pending(t)
            if fetch_due:
                self.read[w] = self.version
            self._start(w, t, limit)
            return
        self.held[w] = (t, s)
        self._release(t, limit)

    def _release(self, t: float, limit: int) -> None:
        """Apply held pushes the staleness bound allows (alone, or mutually blocking ones together)."""
        while self.held:
            if self.s < 0:
                self._apply_group([min(self.held, key=lambda w: self.held[w])], t, limit)
                continue
            unfinished = set(self.held) | {w for _, w, _ in self.heap}
            old = {j for j in unfinished if self.read[j] <= self.version - self.s}
            if old and old <= set(self.held):
                self._apply_group(sorted(old, key=lambda w: self.held[w]), t, limit)
                continue
            free = [w for w in sorted(self.held, key=lambda w: self.held[w]) if not (old - {w})]
            if not free:
                return
            self._apply_group(free[:1], t, limit)

    def _apply_group(self, workers: list[int], t: float, limit: int) -> None:
        fetching = []
        for i, w in enumerate(workers):
            t_arrive, s = self.held.pop(w)
            fetch_due = (s + 1) % self.n_fetch == 0
            last = i == len(workers) - 1
            self.rows.append([w, s, True, last, 2 if fetch_due else 0, self.read[w], self.version, t_arrive, t])
            if fetch_due:
                fetching.append(w)
        self.version += 1
        for w in fetching:
            self.read[w] = self.version
        for w in workers:
            self._start(w, t, limit)

    def _apply_pending(self, t: float) -> None:
        for r in self.pending:
            self.rows[r][6] = self.version
            self.rows[r][8] = t
        self.rows[self.pending[-1]][3] = True
        self.version += 1
        self.pending = []

    def _flush_softsync(self) -> None:
        if self.pending:
            self._apply_pending(self.rows[self.pending[-1]][7])
