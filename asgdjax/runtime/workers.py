"""Worker pools: where the coordinator's workers compute. The coordinator (arrival order, protocol rows,
server updates, trace) is the same for every pool; a pool only computes gradients and keeps each worker's
parameter copy (and Downpour accumulator).

`LocalWorkers` runs jitted steps on local devices or model-parallel device groups through JAX's
asynchronous dispatch; a thread per in-flight step blocks on its result (releasing the GIL), so the
coordinator can wait for whichever finishes first. `asgdjax.runtime.ray_workers.RayWorkers` is the same
interface over Ray actors.
"""

from __future__ import annotations

import concurrent.futures as cf
import time

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.data import WorkerStream
from asgdjax.parallel import Placement
from asgdjax.sim.engine import sgd_step
from asgdjax.train.task import Task, batch_key


def grad_step(task: Task, data_key: jax.Array):
    """(params, data, indices, worker, step) -> (loss, grad); the batch key is derived inside the program."""

    def grad(p, d, idx, w, s):
        return task.grad(p, d, idx, batch_key(data_key, w, s))

    return grad


def local_sgd(p, acc, g, llr):
    """Downpour's local step: the worker's copy moves by -llr * g; g joins the accumulator of its next push."""
    return sgd_step(p, g, llr), jax.tree.map(jnp.add, acc, g)


class LocalWorkers:
    """Workers on local devices; `placements[w]` is worker w's device group (shared objects when shared)."""

    def __init__(
        self,
        task: Task,
        placements: list[Placement],
        server: Placement,
        data: dict,
        streams: list[WorkerStream],
        data_key: jax.Array,
        local_updates: bool,
        local_lr: float,
    ):
        self.K, self.placements, self.server = len(placements), placements, server
        self.streams, self.local_updates, self.llr = streams, local_updates, jnp.float32(local_lr)
        abstract = jax.eval_shape(task.model.init, jax.random.key(0))
        self._data, self._grad, self.param_shardings = {}, {}, {}
        grad = grad_step(task, data_key)
        for pl in {id(p): p for p in [*placements, server]}.values():
            self._data[pl] = jax.device_put(data, pl.replicated)
            self.param_shardings[pl] = sh = pl.shardings(abstract)
            rep = pl.replicated
            # One program per group with declared shardings: params/gradients split by the rules table.
            self._grad[pl] = jax.jit(grad, in_shardings=(sh, rep, pl.batch, rep, rep), out_shardings=(rep, sh))
        self._local_step = jax.jit(local_sgd)
        self._grads: dict[tuple[int, int], object] = {}
        self._pool = None

    @property
    def devices(self) -> list:
        return ["+".join(str(d) for d in p.devices) for p in self.placements]

    def start(self, params, version: int) -> None:
        """Every worker copies the server's `params` (of `version`); accumulators start at zero."""
        self.local = [None] * self.K
        for w in range(self.K):
            self.fetch(w, params, version)
        self.acc = [jax.tree.map(jnp.zeros_like, p) for p in self.local] if self.local_updates else [None] * self.K
        # One worker: block on its gradient directly. Several: a thread per in-flight gradient blocks on it.
        self._pool = cf.ThreadPoolExecutor(max_workers=self.K, thread_name_prefix="asgd-wait") if self.K > 1 else None

    def submit(self, w: int, s: int) -> cf.Future:
        """Start worker w's step s on its copy; the future resolves to the time its gradient was ready."""
        pl = self.placements[w]
        # numpy arguments follow the committed parameters onto the worker's devices
        _, g = self._grad[pl](self.local[w], self._data[pl], self.streams[w].batch(s), np.int32(w), np.int32(s))
        self._grads[(w, s)] = g
        dispatched = time.perf_counter()
        future = _done(_ready_at(g)) if self._pool is None else self._pool.submit(_ready_at, g)
        future.dispatched = dispatched  # the step's start for its timing (the lone worker blocks above)
        return future

    def take(self, w: int, s: int):
        """The gradient of (w, s), handed over once."""
        return self._grads.pop((w, s))

    def discard(self, w: int, s: int) -> None:
        self._grads.pop((w, s), None)

    def local_step(self, w: int, g) -> None:
        self.local[w], self.acc[w] = self._local_step(self.local[w], self.acc[w], g, self.llr)

    def accumulated(self, w: int):
        return self.acc[w]

    def clear(self, w: int) -> None:
        """Zero worker w's accumulator (after a push, or a restart dropping unpushed local gradients)."""
        self.acc[w] = jax.tree.map(jnp.zeros_like, self.acc[w])

    def fetch(self, w: int, params, version: int) -> None:
        """Worker w's copy becomes the server's `params` (no copy when it lives on the server's devices)."""
        pl = self.placements[w]
        same = pl.same_devices(self.server)
        self.local[w] = params if same else jax.device_put(params, self.param_shardings[pl])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _done(value) -> cf.Future:
    f = cf.Future()
    f.set_result(value)
    return f


def _ready_at(x) -> float:
    jax.block_until_ready(x)
    return time.perf_counter()
