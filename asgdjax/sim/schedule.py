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
from asgdjax.sim.protocol import Protocol
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
    failures=(),
) -> Trace:
    """Simulate until `num_steps` gradients (local steps, all workers) are computed; return the trace."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    if delays.kind == "uniform_staleness":
        return uniform_staleness_schedule(key, num_workers, num_steps, delays.staleness_bound)
    if protocol == "sync":
        max_staleness = 0
    group = max(1, num_workers // softsync_n) if protocol == "softsync" else 1
    machine = Protocol(num_workers, num_steps, group, max_staleness, n_fetch, n_push, warm_start_steps)
    trace = run_virtual_clock(machine, StepTimes(delays, key, num_workers), failures)
    meta = {
        "protocol": protocol,
        "softsync_n": softsync_n,
        "max_staleness": max_staleness,
        "n_fetch": n_fetch,
        "n_push": n_push,
        "warm_start_steps": warm_start_steps,
        "delay": delays.kind,
        "source": "simulator",
        "failures": machine.failures,
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


def run_virtual_clock(protocol: Protocol, times: StepTimes, failures=()) -> list[tuple]:
    """Drive `protocol` in virtual time: the in-flight step that ends first arrives next.

    With the delay model's `latency` and `service` > 0 the server is a single FIFO queue, as the real
    coordinator is: an arrival that communicates (pushes or fetches) at t is taken at max(t + latency,
    server free), holds the server for `service` seconds, and the steps it starts begin when it is done
    (so many fast workers saturate it). Downpour's purely local steps (n_fetch, n_push > 1) do not wait.
    failures: (worker, step) pairs whose first attempt fails when it would have finished (the worker
    restarts and retries), the simulator's counterpart of the runtime's injected faults.
    """
    heap: list[tuple[float, int, int]] = []
    pending_failures = set(failures)
    latency, service = times.model.latency, times.model.service
    free = 0.0

    def start(starts, t):
        for w, s in starts:
            heapq.heappush(heap, (t + times.time(w, s), w, s))

    start(protocol.begin(), 0.0)
    while heap:
        t, w, s = heapq.heappop(heap)
        first = len(protocol.rows)
        if (w, s) in pending_failures:
            pending_failures.discard((w, s))
            starts = protocol.fail(w, s, t, "injected failure")
        else:
            starts = protocol.arrive(w, s, t)
        done = t
        if (latency or service) and any(r[2] or r[4] for r in protocol.rows[first:]):
            done = free = max(t + latency, free) + service
        start(starts, done)
    if protocol.held:  # cannot happen: with nothing in flight every held push is releasable
        raise RuntimeError("schedule deadlock: held workers with nothing in flight")
    protocol.finish()
    return [tuple(r) for r in protocol.rows]
