"""The worker-pool interface: where the coordinator's workers compute.

The coordinator (arrival order, protocol rows, server updates, trace) is the same for every pool; a pool
only computes gradients and keeps each worker's parameter copy (and Downpour accumulator). `LocalWorkers`
(local devices or model-parallel device groups) and `RayWorkers` (Ray actors) implement it; so does the
timer-driven pool the tests use. mypy checks each against this protocol.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, NamedTuple, Protocol

from asgdjax.core.task import Params


class Dispatched(NamedTuple):
    """A submitted step: `future` resolves to the time (perf_counter) its gradient was ready; `at` is when
    the dispatch call returned (the step's start for timing: a lone local worker blocks inside submit)."""

    future: cf.Future[float]
    at: float
    steps: int = 1  # local steps the call computes (a Ray Downpour segment: its worker_timeout scales)


class WorkerPool(Protocol):
    @property
    def devices(self) -> list[str]:
        """One printable device (or device group) per worker."""
        ...

    def start(self, params: Params, version: int) -> None:
        """Every worker copies the server's `params` (of `version`); accumulators start at zero."""

    def submit(self, worker: int, step: int) -> Dispatched:
        """Start worker `worker`'s local step `step` on its copy."""
        ...

    def take(self, worker: int, step: int) -> tuple[Any, Params]:
        """(loss, gradient) of (worker, step), handed over once; a pool whose workers apply Downpour's local
        step themselves (Ray actors) may hand None for the gradient."""
        ...

    def discard(self, worker: int, step: int) -> None:
        """Forget a failed step's gradient, if any."""

    def local_step(self, worker: int, grads: Params) -> None:
        """Downpour: the worker's copy moves by -lr * grads and grads join its accumulator."""

    def accumulated(self, worker: int) -> Params:
        """The worker's accumulated gradient (what it pushes; asked only at a push)."""
        ...

    def clear(self, worker: int) -> None:
        """Zero the worker's accumulator (after a push, or a restart dropping unpushed gradients)."""

    def fetch(self, worker: int, params: Params, version: int) -> None:
        """The worker's copy becomes the server's `params`."""

    def close(self) -> None:
        """End of a run: stop waiting threads (the pool may run again after `start`)."""

    def shutdown(self) -> None:
        """Release the pool's resources for good (Ray actors are killed)."""


def done_future(value: float) -> cf.Future[float]:
    f: cf.Future[float] = cf.Future()
    f.set_result(value)
    return f


def failed_future(error: BaseException) -> cf.Future[float]:
    f: cf.Future[float] = cf.Future()
    f.set_exception(error)
    return f
