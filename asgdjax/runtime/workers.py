"""`LocalWorkers`: the worker pool on local devices or model-parallel device groups.

Jitted steps run through JAX's asynchronous dispatch; a thread per in-flight step blocks on its result
(releasing the GIL), so the coordinator can wait for whichever finishes first. One worker alone blocks on
its gradient directly (no thread hop).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.inputs import one_event
from asgdjax.core.local import local_sgd
from asgdjax.core.sampling import Sampler
from asgdjax.core.task import Params, Task, batch_key
from asgdjax.parallel import Placement
from asgdjax.runtime.pool import Dispatched, done_future


def grad_step(task: Task, data_key: jax.Array):
    """(params, data, indices, worker, step) -> (loss, grad); the batch key is derived inside the program."""

    def grad(p, d, idx, w, s):
        return task.grad(p, d, idx, batch_key(data_key, w, s))

    return grad


class LocalWorkers:
    """Workers on local devices; `placements[w]` is worker w's device group (shared objects when shared)."""

    def __init__(
        self,
        task: Task,
        placements: list[Placement],
        server: Placement,
        *,
        data: Any,
        sampler: Sampler,
        data_key: jax.Array,
        local_updates: bool,
        local_lr: float,
    ):
        self.K, self.placements, self.server = len(placements), placements, server
        self.sampler, self.local_updates, self.llr = sampler, local_updates, jnp.float32(local_lr)
        abstract = jax.eval_shape(task.init, jax.random.key(0))
        self._data: dict[Placement, Any] = {}
        self._grad: dict[Placement, Any] = {}
        self.param_shardings: dict[Placement, Any] = {}
        grad = grad_step(task, data_key)
        for pl in {id(p): p for p in [*placements, server]}.values():
            self._data[pl] = jax.device_put(data, pl.replicated)
            self.param_shardings[pl] = sh = pl.shardings(abstract)
            rep = pl.replicated
            # One program per group with declared shardings: params/gradients split by the rules table.
            self._grad[pl] = jax.jit(grad, in_shardings=(sh, rep, pl.batch, rep, rep), out_shardings=(rep, sh))
        self._local_step = jax.jit(local_sgd)
        self.task, self._loads = task, hasattr(task, "load")
        self._prefetch: dict[tuple[int, int], cf.Future] = {}
        self._loader = (
            cf.ThreadPoolExecutor(max_workers=self.K, thread_name_prefix="asgd-load") if self._loads else None
        )
        self._grads: dict[tuple[int, int], tuple[Any, Params]] = {}
        self._pool: cf.ThreadPoolExecutor | None = None
        self._warm = False
        self.local: list[Params] = [None] * self.K
        self.acc: list[Params] = [None] * self.K

    @property
    def devices(self) -> list[str]:
        return ["+".join(str(d) for d in p.devices) for p in self.placements]

    def start(self, params: Params, version: int) -> None:
        for w in range(self.K):
            self.fetch(w, params, version)
        self.acc = [jax.tree.map(jnp.zeros_like, p) for p in self.local] if self.local_updates else [None] * self.K
        if not self._warm:
            self._warm_up()
        # One worker: block on its gradient directly. Several: a thread per in-flight gradient blocks on it.
        self._pool = cf.ThreadPoolExecutor(max_workers=self.K, thread_name_prefix="asgd-wait") if self.K > 1 else None

    def _warm_up(self) -> None:
        """Compile and run each device group's programs once (results dropped) before the run's clock starts,
        so no worker's first step, a worker joining after a warm start included, pays compilation in the
        trace: the simulator's clock has no compile term, and calibration would otherwise fit it."""
        first = {id(pl): w for w, pl in reversed(list(enumerate(self.placements)))}
        for w in first.values():
            pl = self.placements[w]
            batch = one_event(self.task, self.sampler, w, 0)
            out = self._grad[pl](self.local[w], self._data[pl], batch, np.int32(w), np.int32(0))
            if self.local_updates:
                out = self._local_step(self.local[w], self.acc[w], out[1], self.llr)
            jax.block_until_ready(out)
        self._warm = True

    def submit(self, worker: int, step: int) -> Dispatched:
        pl = self.placements[worker]
        batch = self._inputs(worker, step)
        # numpy arguments follow the committed parameters onto the worker's devices
        loss, g = self._grad[pl](self.local[worker], self._data[pl], batch, np.int32(worker), np.int32(step))
        self._grads[(worker, step)] = (loss, g)
        at = time.perf_counter()
        future = done_future(_ready_at(g)) if self._pool is None else self._pool.submit(_ready_at, g)
        return Dispatched(future, at)

    def _inputs(self, worker: int, step: int) -> Any:
        """This step's batch; a task with a host loader gets the next one loaded meanwhile (a thread)."""
        if self._loader is None:
            return one_event(self.task, self.sampler, worker, step)
        ready = self._prefetch.pop((worker, step), None)
        batch = ready.result() if ready is not None else one_event(self.task, self.sampler, worker, step)
        self._prefetch[(worker, step + 1)] = self._loader.submit(one_event, self.task, self.sampler, worker, step + 1)
        return batch

    def take(self, worker: int, step: int) -> tuple[Any, Params]:
        return self._grads.pop((worker, step))

    def discard(self, worker: int, step: int) -> None:
        self._grads.pop((worker, step), None)

    def local_step(self, worker: int, grads: Params) -> None:
        self.local[worker], self.acc[worker] = self._local_step(self.local[worker], self.acc[worker], grads, self.llr)

    def accumulated(self, worker: int) -> Params:
        return self.acc[worker]

    def clear(self, worker: int) -> None:
        self.acc[worker] = jax.tree.map(jnp.zeros_like, self.acc[worker])

    def fetch(self, worker: int, params: Params, version: int) -> None:
        """No copy when the worker lives on the server's devices."""
        pl = self.placements[worker]
        same = pl.same_devices(self.server)
        self.local[worker] = params if same else jax.device_put(params, self.param_shardings[pl])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._prefetch.clear()

    def shutdown(self) -> None:
        self.close()
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)


def _ready_at(x: Any) -> float:
    jax.block_until_ready(x)
    return time.perf_counter()
