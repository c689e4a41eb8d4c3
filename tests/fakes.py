"""Worker pools for tests, type-checked against the `WorkerPool` protocol (mypy runs on this file in CI)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import Any

import jax
import numpy as np

from asgdjax.core.task import Params
from asgdjax.runtime.pool import Dispatched, WorkerPool


class SleepWorkers:
    """A worker pool whose steps take known times (timers) and return zero gradients, so calibration has a
    ground truth."""

    def __init__(self, params: Params, times: list[np.ndarray], *, steps_per_call: int = 1):
        self.K, self.times, self.steps_per_call = len(times), times, steps_per_call
        self.zeros = jax.tree.map(np.zeros_like, params)

    @property
    def devices(self) -> list[str]:
        return [f"sleep:{w}" for w in range(self.K)]

    def start(self, params: Params, version: int) -> None:
        pass

    def submit(self, worker: int, step: int) -> Dispatched:
        f: cf.Future[float] = cf.Future()
        threading.Timer(float(self.times[worker][step]), lambda: f.set_result(time.perf_counter())).start()
        return Dispatched(f, time.perf_counter(), self.steps_per_call)  # a call as long as that many steps

    def take(self, worker: int, step: int) -> tuple[Any, Params]:
        return np.float32(0.0), self.zeros

    def discard(self, worker: int, step: int) -> None:
        pass

    def local_step(self, worker: int, grads: Params) -> None:
        pass

    def accumulated(self, worker: int) -> Params:
        return self.zeros

    def clear(self, worker: int) -> None:
        pass

    def fetch(self, worker: int, params: Params, version: int) -> None:
        pass

    def close(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _implements_the_protocol(pool: SleepWorkers) -> WorkerPool:
    return pool  # mypy fails here if SleepWorkers drifts from WorkerPool
