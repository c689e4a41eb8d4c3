"""The real asynchronous runtime: a host-side coordinator over devices.

Each worker owns a device, or a group of devices holding one model-parallel replica (several workers may
share one), its deterministic batches and a parameter copy, and runs jitted gradient steps there through
JAX's asynchronous dispatch (a `WorkerPool`: local devices, or Ray actors). The coordinator waits for
whichever gradient is ready first, feeds that arrival to the same `Protocol` the simulator's virtual clock
drives, and executes the trace rows it produces with the simulator's arithmetic (`_Run.execute` beside
`Simulator._event`): Downpour local step, push, the shared `Server.apply`, fetch. The rows it records are
the run's trace, so the simulator replays the run exactly. Every (worker, step) is executed once; a second
execution raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.protocol import Protocol, ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.server import Server, ServerState
from asgdjax.core.task import Params, Task
from asgdjax.core.trace import Trace
from asgdjax.parallel import Placement
from asgdjax.runtime.pool import WorkerPool
from asgdjax.runtime.run_state import ActiveRun, Applied, RunOptions, RuntimeStats
from asgdjax.runtime.workers import LocalWorkers

__all__ = ["Applied", "Coordinator", "RunOptions", "RuntimeStats", "placements_for"]


def placements_for(task: Task, groups: list) -> list[Placement]:
    """One Placement per worker from its device or device group; workers sharing devices share it."""
    made: dict[tuple, Placement] = {}
    out = []
    for g in groups:
        if isinstance(g, Placement):
            out.append(made.setdefault(g.devices, g))
            continue
        devs = tuple(g) if isinstance(g, (tuple, list)) else (g,)
        if devs not in made:
            made[devs] = Placement.for_task(task, devs)
        out.append(made[devs])
    return out


@dataclasses.dataclass(frozen=True)
class ServerPrograms:
    """The server's jitted programs on its placement (no buffer donation: workers' snapshots, DC-ASGD's
    read params, are references to past server versions)."""

    placement: Placement
    params_sharding: Any
    state_sharding: Any
    init: Callable
    apply_one: Callable
    apply: Callable

    @classmethod
    def build(cls, task: Task, make_server: Callable[[dict], Server], hparams: dict, placement: Placement):
        abstract = jax.eval_shape(task.init, jax.random.key(0))
        state_sh = placement.shardings(jax.eval_shape(lambda p: make_server(hparams).init(p), abstract))
        return cls(
            placement=placement,
            params_sharding=placement.shardings(abstract),
            state_sharding=state_sh,
            init=jax.jit(lambda p, hp: make_server(hp).init(p), out_shardings=state_sh),
            apply_one=jax.jit(
                lambda st, g, rv, w, rp, hp: make_server(hp).apply_one(st, g, rv, w, rp), out_shardings=state_sh
            ),
            apply=jax.jit(
                lambda st, g, rv, w, rp, n, hp: make_server(hp).apply(st, g, rv, w, rp, n), out_shardings=state_sh
            ),
        )

    def warm_up(self, state: ServerState, hparams: dict, *, group_size: int, one: bool) -> None:
        """Compile and run the server update the run will use once on zero gradients (result dropped; the
        update is a pure function), so the first arrival's service time holds no compilation."""
        zeros = jax.tree.map(jnp.zeros_like, state.params)
        if one:
            out = self.apply_one(state, zeros, np.int32(0), np.int32(0), state.params, hparams)
        else:
            stack = lambda t: jax.tree.map(lambda a: jnp.stack([a] * group_size), t)
            z = np.zeros(group_size, np.int32)
            out = self.apply(state, stack(zeros), z, z, stack(state.params), np.int32(1), hparams)
        jax.block_until_ready(out)


class Coordinator:
    """Runs the workers of `spec` against one server.

    devices: one entry per worker: a device, a tuple of devices (one model-parallel group: parameters,
    gradients and the worker's copy sharded over it by `asgdjax.parallel`'s rules) or a Placement. The
    server's state is sharded the same way over `server_device` (default: worker 0's group).
    make_server(hparams) -> Server is the simulator's factory. backend: "local" (the devices above), "ray"
    (Ray actors; `devices` then only counts the workers; backend_options go to RayWorkers), or a
    `WorkerPool` object (tests use a timer-driven one).
    """

    def __init__(
        self,
        task: Task,
        make_server: Callable[[dict], Server],
        hparams: dict,
        spec: ProtocolSpec,
        *,
        devices: list,
        data: Any,
        sampler: Sampler,
        data_key: jax.Array,
        server_device: Any = None,
        backend: str | WorkerPool = "local",
        backend_options: dict | None = None,
    ):
        if len(devices) != spec.num_workers:
            raise ValueError(f"{len(devices)} device entries for {spec.num_workers} workers")
        self.task, self.spec, self.K = task, spec, spec.num_workers
        self.hparams = {k: np.float32(v) for k, v in hparams.items()}
        llr = float(hparams.get("local_learning_rate", hparams.get("learning_rate", 0.0)))
        self.workers: WorkerPool
        if backend == "local":
            srv_entry = server_device if server_device is not None else devices[0]
            *placements, srv = placements_for(task, [*devices, srv_entry])
            self.workers = LocalWorkers(
                task,
                placements,
                srv,
                data=data,
                sampler=sampler,
                data_key=data_key,
                local_updates=spec.local_updates,
                local_lr=llr,
            )
        else:  # workers elsewhere (`devices` only counts them): the server on its own device
            srv_entry = server_device if server_device is not None else jax.devices()[0]
            (srv,) = placements_for(task, [srv_entry])
            if backend == "ray":
                from asgdjax.runtime.ray_workers import RayWorkers

                self.workers = RayWorkers(
                    task,
                    self.K,
                    data=data,
                    sampler=sampler,
                    data_key=data_key,
                    local_updates=spec.local_updates,
                    local_lr=llr,
                    n_fetch=spec.n_fetch,
                    n_push=spec.n_push,
                    **(backend_options or {}),
                )
            elif not isinstance(backend, str):
                self.workers = backend
            else:
                raise ValueError(f"backend {backend!r}; allowed: local, ray")
        self.devices = self.workers.devices
        self.programs = ServerPrograms.build(task, make_server, self.hparams, srv)

    @property
    def server_placement(self) -> Placement:
        return self.programs.placement

    def shutdown(self) -> None:
        """Release the workers (Ray actors are killed; local workers hold nothing to release)."""
        self.workers.shutdown()

    def run(
        self,
        params: Params,
        protocol: Protocol,
        *,
        options: RunOptions = RunOptions(),
        server_state: ServerState | None = None,
        on_apply: Callable[[Applied], None] | None = None,
        on_arrival: Callable[[int, ServerState, Protocol], None] | None = None,
    ) -> tuple[ServerState, Trace, RuntimeStats]:
        """Train until the protocol's step budget is spent; returns (server state, trace, stats).

        on_apply(Applied) runs after every applied update (logging, eval; it takes the losses and staleness
        values gathered since the previous call);
        on_arrival(gradients, server_state, protocol) after each arrival's rows are executed (a consistent
        point for checkpoints). server_state and a `protocol.resume()`d protocol continue a checkpointed
        run: every worker starts from the server's parameters, and the steps already in the protocol's
        rows are never recomputed. `options`: failures, timeouts and injected faults (see RunOptions).
        """
        if server_state is None:
            state = self.programs.init(jax.device_put(params, self.programs.params_sharding), self.hparams)
        else:
            state = jax.device_put(server_state, self.programs.state_sharding)
        run = ActiveRun(self, protocol, state, options, on_apply=on_apply, on_arrival=on_arrival)
        try:
            run.loop()
        finally:
            self.workers.close()
        return run.server, run.trace(), run.stats
