"""Delay models -> schedules: an event-driven simulation of K workers and a parameter server in virtual time.

The worker whose step finishes first arrives next; the protocol (`asgdjax.core.protocol`: Downpour
n_fetch / n_push, the SSP bound, n-softsync, sync, warm start) decides what each arrival does. A worker held
by the staleness bound waits in virtual time too. The same state machine drives the real runtime, so a
simulated schedule and a recorded one are the same kind of trace.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import numpy as np

from asgdjax.core.protocol import Protocol, ProtocolSpec
from asgdjax.core.trace import Row, Trace
from asgdjax.delays import DelayModel, StepTimes
from asgdjax.sim.clock import VirtualClock


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


def continue_schedule(
    key: jax.Array,
    spec: ProtocolSpec,
    done: Trace,
    *,
    num_steps: int,
    delays: DelayModel = DelayModel(),
    failures: Iterable[tuple[int, int]] = (),
) -> Trace:
    """`done` (the events a checkpoint holds) followed by the schedule of the rest, up to `num_steps`
    gradients, continued as the real runtime resumes (`Protocol.resume`): every worker fetches the server's
    parameters when the last of `done` was applied and computes from its next step, at the step times the
    delay model draws for those (worker, step)s.

    A run's schedule for more steps is not its own schedule extended: near the end workers stop starting
    steps and the last ones drain, so the longer schedule differs from `done` in its last events. Extending
    a finished simulated run needs this continuation, so that the trace says what was computed.
    """
    if done.group_sizes().sum() != int(done.push.sum()):  # pushes not yet applied: a softsync group is open
        raise ValueError("the events end inside a server group; continue from a completed update")
    machine = spec.machine(num_steps)
    k, computed = spec.num_workers, done.step >= 0
    failed = list(done.meta.get("failures", []))
    started, t = int(computed.sum()), float(done.t_apply.max(initial=0.0))
    machine.resume(
        {
            "rows": done.rows(),
            "version": done.num_updates,
            "read": [0] * k,
            "next_step": [int(done.step[computed & (done.worker == w)].max(initial=-1)) + 1 for w in range(k)],
            "started": started,
            "limit": machine.limit if started < machine.warm else num_steps,
            "dropped": sorted({int(f["worker"]) for f in failed if f.get("dropped")}),
            "failures": failed,
        },
        t,
    )
    rows = VirtualClock(machine, StepTimes(delays, key, k), failures).run(start=t)
    meta = {**spec.meta(), "delay": delays.kind, "source": "simulator", "failures": machine.failures}
    return Trace.from_rows(rows, k, {**meta, "continued_at_event": len(done)})


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
    """Drive `protocol` in virtual time (`asgdjax.sim.clock.VirtualClock`: compute, the server's queue,
    and the communication links). failures: (worker, step) pairs whose first attempt fails when it would
    have finished (the worker restarts and retries), the simulator's counterpart of injected faults."""
    return VirtualClock(protocol, times, failures).run()
