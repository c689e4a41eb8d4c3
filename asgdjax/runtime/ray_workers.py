"""Workers as Ray actors (multi-host): the coordinator, protocol, server, trace and fault handling are the
local backend's; only where gradients are computed changes.

Each actor imports and initialises JAX inside itself (after Ray has set its visible devices), holds the
dataset (one `ray.put`, zero-copy on a node) and its worker's stream, computes gradients with the same
jitted step as `LocalWorkers`, applies Downpour's local step to its own copy, and returns host numpy
pytrees (a jax.Array does not travel well through Ray). Parameters travel only after a fetch, as one
`ray.put` per server version shared by every worker fetching it. Downpour accumulators live with the
server. Arrival order comes from the actors' result futures; an actor that dies fails its in-flight step
and is restarted by Ray (max_restarts), after which the coordinator's restart row resends parameters.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.inputs import one_event
from asgdjax.core.local import sgd_step
from asgdjax.core.sampling import Sampler
from asgdjax.core.task import Task
from asgdjax.errors import ConfigError
from asgdjax.runtime.pool import Dispatched
from asgdjax.runtime.workers import grad_step

INLINE_BYTES = 100 * 1024  # Ray's own inlining threshold for task arguments is 100 KiB


class GradientWorker:
    """The actor's body (a plain class, so it is testable without Ray): one worker's copy and step."""

    def __init__(self, task: Task, data, sampler: Sampler, key_data, worker: int, local_updates: bool, llr):
        self.worker, self.sampler, self.local_updates = np.int32(worker), sampler, local_updates
        self.task = task
        self.data = jax.device_put(data)
        self._grad = jax.jit(grad_step(task, jax.random.wrap_key_data(key_data)))
        self._local = jax.jit(sgd_step)
        self.llr = jnp.float32(llr)
        self.params = None

    def step(self, params, s: int):
        """Gradient of step s on the copy (replaced first by `params` when the worker fetched)."""
        if params is not None:
            self.params = jax.device_put(params)
        if self.params is None:
            raise RuntimeError(f"worker {int(self.worker)} has no parameters (restarted without a fetch)")
        batch = one_event(self.task, self.sampler, int(self.worker), s)
        loss, g = self._grad(self.params, self.data, batch, self.worker, np.int32(s))
        if self.local_updates:
            self.params = self._local(self.params, g, self.llr)
        return jax.device_get((loss, g))

    def warm_up(self, params) -> None:
        """Compile and run this worker's programs once on `params` (results dropped), so its first step in
        the run's clock pays no compilation."""
        p = jax.device_put(params)
        batch = one_event(self.task, self.sampler, int(self.worker), 0)
        out = self._grad(p, self.data, batch, self.worker, np.int32(0))
        if self.local_updates:
            out = self._local(p, out[1], self.llr)
        jax.block_until_ready(out)

    def devices(self) -> str:
        import socket

        return f"{socket.gethostname()}:" + "+".join(str(d) for d in jax.devices())


class RayWorkers:
    """K GradientWorker actors; the same interface as `asgdjax.runtime.workers.LocalWorkers`."""

    def __init__(
        self,
        task: Task,
        num_workers: int,
        *,
        data,
        sampler: Sampler,
        data_key: jax.Array,
        local_updates: bool,
        local_lr: float,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_restarts: int = 3,
        placement_timeout: float = 300.0,
    ):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("the Ray backend needs ray.init() (or ray start) first")
        self.K, self.local_updates = num_workers, local_updates
        actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts)(GradientWorker)
        # Kept referenced: restarted actors rebuild from these constructor arguments.
        self._data_ref = data_ref = ray.put(jax.tree.map(np.asarray, data))
        key_data = np.asarray(jax.random.key_data(data_key))
        self.actors: list[Any] = [
            actor.remote(task, data_ref, sampler, key_data, w, local_updates, local_lr) for w in range(num_workers)
        ]
        try:
            self.devices = ray.get([a.devices.remote() for a in self.actors], timeout=placement_timeout)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise ConfigError(
                f"Ray could not start {num_workers} worker actors with num_cpus={num_cpus}, num_gpus={num_gpus} "
                f"within {placement_timeout:g} s; the cluster has {ray.cluster_resources()}; lower ray_cpus_per_worker / ray_gpus_per_worker or add nodes"
            ) from None
        self._add = jax.jit(lambda a, g: jax.tree.map(jnp.add, a, g))
        self._grads: dict[tuple[int, int], object] = {}
        self._next: dict[int, object] = {}
        self._ref: tuple[Any, Any] = (None, None)  # (version, ObjectRef) of the latest parameters sent
        self._warm = False

    def start(self, params, version: int) -> None:
        self._ref = (None, None)
        for w in range(self.K):
            self.fetch(w, params, version)
        zeros = jax.tree.map(jnp.zeros_like, params)
        self.acc = [zeros] * self.K if self.local_updates else [None] * self.K
        if not self._warm:  # every actor compiles before the run's clock starts (see LocalWorkers._warm_up)
            import ray

            host = jax.device_get(params)
            ray.get([a.warm_up.remote(host) for a in self.actors])
            self._warm = True

    def submit(self, w: int, s: int) -> Dispatched:
        """Call actor w's step; the future resolves (in Ray's callback thread) to the arrival time."""
        ref = self.actors[w].step.remote(self._next.pop(w, None), s)
        out: cf.Future = cf.Future()

        def arrived(f):
            try:
                self._grads[(w, s)] = f.result()
            except BaseException as e:  # noqa: BLE001 (a dead actor, an error inside the step)
                out.set_exception(e)
                return
            out.set_result(time.perf_counter())

        ref.future().add_done_callback(arrived)
        return Dispatched(out, time.perf_counter())

    def take(self, w: int, s: int):
        return self._grads.pop((w, s))

    def discard(self, w: int, s: int) -> None:
        self._grads.pop((w, s), None)

    def local_step(self, w: int, g) -> None:
        self.acc[w] = self._add(self.acc[w], g)  # the actor already moved its own copy

    def accumulated(self, w: int):
        return self.acc[w]

    def clear(self, w: int) -> None:
        self.acc[w] = jax.tree.map(jnp.zeros_like, self.acc[w])

    def fetch(self, w: int, params, version: int) -> None:
        """Worker w's next step carries the server's `params`: inline in the call when small (Ray ships
        small arguments with the task, skipping the object store), else one ray.put per version."""
        import ray

        if self._ref[0] != version:
            host = jax.device_get(params)
            small = sum(x.nbytes for x in jax.tree.leaves(host)) <= INLINE_BYTES
            self._ref = (version, host if small else ray.put(host))
        self._next[w] = self._ref[1]

    def close(self) -> None:
        self._next.clear()

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
