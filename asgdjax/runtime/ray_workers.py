"""Workers as Ray actors (multi-host): the coordinator, protocol, server, trace and fault handling are the
local backend's; only where gradients are computed changes.

Each actor imports and initialises JAX inside itself (after Ray has set its visible devices), holds the
dataset (one `ray.put`, zero-copy on a node) and its worker's stream, computes gradients with the same
jitted step as `LocalWorkers`, and returns host numpy pytrees (a jax.Array does not travel well through
Ray). Parameters travel only after a fetch, inline when small, else as one `ray.put` per server version
shared by every worker fetching it. Arrival order comes from the actors' result futures; an actor that
dies fails its in-flight call and is restarted by Ray (max_restarts), after which the coordinator's
restart row resends parameters.

Downpour (n_fetch or n_push > 1): the local steps between two exchanges with the server touch only the
worker's own copy and accumulator, so one actor call runs all of them (a *segment*: up to the next push
or fetch) and returns their losses and, at a push, the accumulated gradient: one round trip and one
gradient transfer per push instead of per step (Dean et al. 2012's clients). The coordinator still
executes and records one trace row per local step; they arrive together when the call returns, which
changes no server-visible order, so the trace replays exactly. When the protocol ends a segment early
(the run's or the warm start's last step pushes), the actor rewinds: it recomputes the segment's first
steps from the copy it started with (the same programs on the same batches, hence the same values).
A call of n local steps gets n times the worker timeout (which is per local step).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.inputs import one_event
from asgdjax.core.local import local_sgd
from asgdjax.core.sampling import Sampler
from asgdjax.core.task import Task
from asgdjax.errors import ConfigError
from asgdjax.runtime.pool import Dispatched, done_future
from asgdjax.runtime.workers import grad_step

INLINE_BYTES = 100 * 1024  # Ray's own inlining threshold for task arguments is 100 KiB


class GradientWorker:
    """The actor's body (a plain class, so it is testable without Ray): one worker's copy and steps."""

    def __init__(self, task: Task, data, sampler: Sampler, key_data, worker: int, local_updates: bool, llr):
        self.worker, self.sampler, self.local_updates = np.int32(worker), sampler, local_updates
        self.task = task
        self.data = jax.device_put(data)
        self._grad = jax.jit(grad_step(task, jax.random.wrap_key_data(key_data)))
        self._local = jax.jit(local_sgd)
        self.llr = jnp.float32(llr)
        self.params: Any = None
        self.acc: Any = None
        self._segment: tuple[Any, Any, int, int] | None = None  # (copy, accumulator, first step, steps) at its start

    def step(self, params, s: int):
        """Plain A-SGD: the gradient of step s on the copy (replaced first by `params` when the worker fetched)."""
        self._receive(params, clear=False)
        loss, g = self._gradient(self.params, s)
        return jax.device_get((loss, g))

    def run(self, params, clear: bool, s: int, n: int, want_acc: bool):
        """Downpour: local steps s .. s+n-1 on the copy (after taking `params` when the worker fetched, and
        zeroing the accumulator when it pushed); returns their losses and, when the segment ends in a push,
        the accumulated gradient."""
        self._receive(params, clear)
        self._segment = (self.params, self.acc, s, n)
        losses = [self._local_step(s + i) for i in range(n)]
        return jax.device_get((jnp.stack(losses), self.acc if want_acc else None))

    def rewind(self, n: int):
        """Back to the state after the current segment's first n steps; returns the accumulator there."""
        if self._segment is None:
            raise RuntimeError(f"worker {int(self.worker)} has no segment to rewind (restarted?)")
        params, acc, s, length = self._segment
        if n < length:
            self.params, self.acc = params, acc
            for i in range(n):
                self._local_step(s + i)
            self._segment = (params, acc, s, n)
        return jax.device_get(self.acc)

    def _receive(self, params, clear: bool) -> None:
        if params is not None:
            self.params = jax.device_put(params)
        if self.params is None:
            raise RuntimeError(f"worker {int(self.worker)} has no parameters (restarted without a fetch)")
        if self.local_updates and (clear or self.acc is None):  # plain A-SGD keeps no accumulator
            self.acc = jax.tree.map(jnp.zeros_like, self.params)

    def _gradient(self, params, s: int):
        batch = one_event(self.task, self.sampler, int(self.worker), s)
        return self._grad(params, self.data, batch, self.worker, np.int32(s))

    def _local_step(self, s: int):
        loss, g = self._gradient(self.params, s)
        self.params, self.acc = self._local(self.params, self.acc, g, self.llr)
        return loss

    def warm_up(self, params) -> None:
        """Compile and run this worker's programs once on `params` (results dropped), so its first step in
        the run's clock pays no compilation."""
        p = jax.device_put(params)
        out = self._gradient(p, 0)
        if self.local_updates:
            out = self._local(p, jax.tree.map(jnp.zeros_like, p), out[1], self.llr)
        jax.block_until_ready(out)

    def devices(self) -> str:
        import socket

        return f"{socket.gethostname()}:" + "+".join(str(d) for d in jax.devices())


@dataclasses.dataclass
class Segment:
    """One actor call's local steps, as the pool hands them to the coordinator one at a time."""

    first: int
    steps: int
    losses: Any = None  # float32[steps] once the call returned
    acc: Any = None  # the accumulated gradient after the last step, when the call ended in a push
    taken: int = 0

    def holds(self, s: int) -> bool:
        return self.losses is not None and s == self.first + self.taken < self.first + self.steps


def segment_end(s: int, *, n_fetch: int, n_push: int) -> int:
    """The last local step of the segment starting at step s: the first one that pushes or fetches."""
    return min((s // n_push + 1) * n_push, (s // n_fetch + 1) * n_fetch) - 1


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
        n_fetch: int = 1,
        n_push: int = 1,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_restarts: int = 3,
        placement_timeout: float = 300.0,
    ):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("the Ray backend needs ray.init() (or ray start) first")
        self.K, self.local_updates = num_workers, local_updates
        self.n_fetch, self.n_push = n_fetch, n_push
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
        self._grads: dict[tuple[int, int], object] = {}
        self._segments: dict[int, Segment] = {}
        self._clear: set[int] = set()  # workers whose accumulator empties before their next local step
        self._next: dict[int, object] = {}
        self.calls = self.rewinds = 0  # actor calls that computed, and segments cut short (a benchmark reads them)
        self._ref: tuple[Any, Any] = (None, None)  # (version, ObjectRef) of the latest parameters sent
        self._warm = False

    def start(self, params, version: int) -> None:
        self._ref = (None, None)
        self._segments.clear()
        self._clear = set(range(self.K))
        for w in range(self.K):
            self.fetch(w, params, version)
        if not self._warm:  # every actor compiles before the run's clock starts (see LocalWorkers._warm_up)
            import ray

            host = jax.device_get(params)
            ray.get([a.warm_up.remote(host) for a in self.actors])
            self._warm = True

    def submit(self, w: int, s: int) -> Dispatched:
        """Call actor w's step (Downpour: its segment of local steps, or hand over the next step of the one
        already returned); the future resolves (in Ray's callback thread) to the arrival time."""
        if self.local_updates:
            seg = self._segments.get(w)
            if seg is not None and seg.holds(s):
                now = time.perf_counter()
                return Dispatched(done_future(now), now)
            seg = Segment(s, segment_end(s, n_fetch=self.n_fetch, n_push=self.n_push) - s + 1)
            self._segments[w] = seg
            self.calls += 1
            pushes = (seg.first + seg.steps) % self.n_push == 0
            ref = self.actors[w].run.remote(self._next.pop(w, None), w in self._clear, s, seg.steps, pushes)
            self._clear.discard(w)

            def keep(result):
                seg.losses, seg.acc = result

        else:
            self.calls += 1
            ref = self.actors[w].step.remote(self._next.pop(w, None), s)

            def keep(result):
                self._grads[(w, s)] = result

        out: cf.Future = cf.Future()

        def arrived(f):
            try:
                keep(f.result())
            except BaseException as e:  # noqa: BLE001 (a dead actor, an error inside the step)
                out.set_exception(e)
                return
            out.set_result(time.perf_counter())

        ref.future().add_done_callback(arrived)
        return Dispatched(out, time.perf_counter(), self._segments[w].steps if self.local_updates else 1)

    def take(self, w: int, s: int):
        """(loss, gradient); a Downpour step's gradient is None: the actor already applied it locally."""
        if not self.local_updates:
            return self._grads.pop((w, s))
        seg = self._segments[w]
        if not seg.holds(s):
            raise RuntimeError(f"worker {w} step {s} was not computed by its segment ({seg.first}+{seg.taken})")
        seg.taken += 1
        return seg.losses[s - seg.first], None

    def discard(self, w: int, s: int) -> None:
        self._grads.pop((w, s), None)
        self._segments.pop(w, None)  # the restart that follows resends parameters and empties the accumulator

    def local_step(self, w: int, g) -> None:
        """Nothing to do: the actor moved its own copy and accumulator."""

    def accumulated(self, w: int):
        """What worker w pushes: the segment's accumulator, or, when the protocol pushes before the segment's
        end, the accumulator after the steps handed over (the actor rewinds to there)."""
        seg = self._segments[w]
        if seg.taken < seg.steps or seg.acc is None:
            self._rewind(w, seg)
        return seg.acc

    def _rewind(self, w: int, seg: Segment) -> None:
        import ray

        self.rewinds += 1
        seg.acc = ray.get(self.actors[w].rewind.remote(seg.taken))
        seg.steps = seg.taken

    def clear(self, w: int) -> None:
        self._clear.add(w)

    def fetch(self, w: int, params, version: int) -> None:
        """Worker w's next step carries the server's `params`: inline in the call when small (Ray ships
        small arguments with the task, skipping the object store), else one ray.put per version."""
        import ray

        seg = self._segments.get(w)
        if seg is not None and seg.losses is not None and seg.taken < seg.steps:
            self._rewind(w, seg)  # the accumulator must not hold steps that were never handed over
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


def check_ray_address(address: str, *, timeout: float = 5.0) -> None:
    """The Ray cluster at `address` ("auto", "host:port" or "ray://host:port") answers a TCP connection
    within `timeout` seconds. ray.init retries an unreachable address for minutes without heeding Ctrl-C,
    so a run checks this before its workdir is touched."""
    import socket

    target = address
    if address == "auto":
        try:  # how ray.init itself resolves "auto": RAY_ADDRESS, else this host's running `ray start`
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError:
            raise ConfigError(
                "ray_address='auto' found no running Ray cluster on this host; start one with `ray start "
                "--head`, give its host:port, or leave ray_address empty to start Ray inside the run"
            ) from None
        except (ImportError, AttributeError):  # a Ray without that helper: let ray.init resolve it
            return
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address={address!r} is not allowed; use 'auto', host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"ray_address={address!r}: no Ray cluster answers at {host}:{port} within {timeout:g} s "
            f"({e.strerror or e}); start one with `ray start --head` there, or leave ray_address empty"
        ) from None
