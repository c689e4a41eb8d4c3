"""Delay models -> schedules: an event-driven simulation of K workers and a parameter server in virtual time.

The worker whose step finishes first arrives next; the protocol (`asgdjax.core.protocol`: Downpour
n_fetch / n_push, the SSP bound, n-softsync, sync, warm start) decides what each arrival does. A worker held
by the staleness bound waits in virtual time too. The same state machine drives the real runtime, so a
simulated schedule and a recorded one are the same kind of trace.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import jax
import numpy as np

from asgdjax.core.protocol import Protocol, ProtocolSpec
from asgdjax.core.trace import Row, Trace
from asgdjax.delays import DelayModel, StepTimes


def make_schedule(
    key: jax.Array,
    spec: ProtocolSpec,
    *,
    num_steps: int,
    delays: DelayModel = DelayModel(),
    failures: Iterable[tuple[int, int]] = (),
) -> Trace:
    """Simulate until `num_steps` gradients (local steps, all workers) are computed; return the trace."""
    if delays.kind == "uniform_staleness":
        return uniform_staleness_schedule(key, spec.num_workers, num_steps, delays.staleness_bound)
    machine = spec.machine(num_steps)
    rows = run_virtual_clock(machine, StepTimes(delays, key, spec.num_workers), failures)
    meta = {**spec.meta(), "delay": delays.kind, "source": "simulator", "failures": machine.failures}
    return Trace.from_rows(rows, spec.num_workers, meta)


def uniform_staleness_schedule(key: jax.Array, num_workers: int, num_steps: int, bound: int) -> Trace:
    """Dai et al. 2019's direct model: gradient i reads version max(0, i - tau_i), tau_i ~ U{0..bound}.

    No worker keeps a copy here (each gradient reads an arbitrary past version), so it replays with the
    version-ring memory of depth bound + 1.
    """
    tau = np.asarray(jax.random.randint(key, (num_steps,), 0, bound + 1))
    rows = []
    for i in range(num_steps):
        w = i % num_workers
        rows.append(Row(w, i // num_workers, True, True, 0, max(0, i - int(tau[i])), i, float(i), float(i)))
    meta = {
        "protocol": "async",
        "delay": "uniform_staleness",
        "staleness_bound": bound,
        "source": "simulator",
    }
    meta.update(n_fetch=1, n_push=1, max_staleness=bound, softsync_n=1, warm_start_steps=0, memory="ring")
    return Trace.from_rows(rows, num_workers, meta)


def run_virtual_clock(protocol: Protocol, times: StepTimes, failures: Iterable[tuple[int, int]] = ()) -> list[Row]:
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
        if (latency or service) and any(r.push or r.fetch for r in protocol.rows[first:]):
            done = free = max(t + latency, free) + service
        start(starts, done)
    if protocol.held:  # cannot happen: with nothing in flight every held push is releasable
        raise RuntimeError("schedule deadlock: held workers with nothing in flight")
    protocol.finish()
    return protocol.rows
