"""The compiled replay of a trace: (initial state, trace, data, rule) -> final state, deterministically.

State: the server (params, optimizer and rule state, version), every worker's local copy (the snapshot
it read, plus Downpour's local updates), its accumulated gradient and read version, and the server's
pending group. One jitted `step` takes C event slots: either a *wave* (events whose gradients are all
computable at once: one vmap) or a *chunk* of consecutive events (each gradient computed on the state the
previous events left), then performs each event's server operations in trace order: push, apply (the
shared `Server.apply`), fetch. A Python loop over chunks drives it (XLA:CPU compiles convolution
gradients inside while-loops slowly); `asgdjax.sim.sweep` vmaps the same step over configurations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from asgdjax.data import WorkerStream
from asgdjax.server import Server, ServerState
from asgdjax.sim.trace import Trace
from asgdjax.sim.waves import partition_waves, wave_arrays
from asgdjax.train.task import Task, batch_key


class SimState(NamedTuple):
    server: ServerState
    local: optax.Params  # (K, ...) each worker's working copy
    snap: optax.Params  # (K, ...) the copy as fetched (DC-ASGD's w_read) when local steps change `local`
    acc: optax.Params  # (K, ...) gradient accumulated since the last push (n_push > 1), else {}
    read_version: jax.Array  # int32[K]
    pend_grads: optax.Params  # (G, ...) pushed gradients of the current group
    pend_worker: jax.Array  # int32[G]
    pend_read: jax.Array  # int32[G]
    pend_fetch: jax.Array  # bool[G]
    pend_count: jax.Array  # int32


STRATEGIES = ("sequential", "waves")
LARGE_STATE_BYTES = 32 * 2**20  # stacked copies above this run one event per call on XLA:CPU


class Simulator:
    """Replays traces of `num_workers` workers; `make_server(hparams) -> Server` is shared with the runtime.

    local_updates: Downpour clients apply each gradient to their local copy with plain SGD at
    hparams['local_learning_rate'] (needed when n_fetch > 1 or n_push > 1).
    group_size: the largest group the server may apply at once (1 for plain A-SGD).
    ring_depth: 0 keeps one parameter copy per worker (K copies: any protocol). D > 0 keeps a ring of the
    last D server versions instead and reads each gradient's parameters from ring[v_read % D] (D copies:
    plain A-SGD with D > max staleness; the only memory that replays Dai et al.'s direct staleness model,
    and the smaller one when K is large but staleness is bounded).
    strategy: "waves" computes each wave's gradients in one vmap (fills a GPU); "sequential" runs chunks of
    consecutive events, each gradient then its server operations, unrolled in one program (fastest on
    XLA:CPU, whose grouped convolutions are slow, and on an H100 for the nets measured). "auto" = sequential.
    Both give the same result to float tolerance; each is deterministic.
    placement: an `asgdjax.parallel.Placement`; the whole state (server, K worker copies or the ring,
    pending group) is then sharded over its mesh by the parameters' rules, so a model too large for one
    device is simulated across several. None: JAX's default device.
    """

    def __init__(
        self,
        task: Task,
        make_server: Callable[[dict], Server],
        num_workers: int,
        group_size: int = 1,
        local_updates: bool = False,
        strategy: str = "auto",
        chunk: int = 0,
        ring_depth: int = 0,
        placement=None,
    ):
        self.task, self.make_server, self.K = task, make_server, num_workers
        self.placement = placement
        self.G, self.local_updates = group_size, local_updates
        self.D = ring_depth
        if ring_depth and (group_size > 1 or local_updates):
            raise ValueError("the version ring replays plain A-SGD only (group_size 1, n_fetch = n_push = 1)")
        if strategy == "auto":  # measured faster on XLA:CPU and on an H100 (experiments/results/)
            strategy = "sequential"
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.strategy = strategy
        # Events per compiled call: a wave holds at most one event per worker; a sequential chunk of about
        # ten events is where XLA:CPU's unrolled conv gradients run fastest (DESIGN.md).
        self.C = chunk or (min(num_workers, 256) if strategy == "waves" else self._auto_chunk(task))
        self.step = jax.jit(self._step, donate_argnums=0)
        self._sharded_step = None

    def _auto_chunk(self, task: Task) -> int:
        """10 events per call, except on XLA:CPU with large stacked copies: there a multi-event program
        copies the whole (K, ...) buffer once per event (measured: 6.8 ms per event for 38 MiB of copies
        at K = 1,024, 0.26 ms with one event per call), so one event per call wins."""
        abstract = jax.eval_shape(task.model.init, jax.random.key(0))
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract))
        copies = self.D or self.K
        return 1 if jax.default_backend() == "cpu" and copies * nbytes > LARGE_STATE_BYTES else 10

    # ----------------------------------------------------------------------------------------------- state
    def init(self, params, hparams: dict) -> SimState:
        """Every worker starts from `params` (version 0); `params` is copied, never donated."""
        if self.placement is not None:  # built under jit straight into its shards: no device holds it whole
            abstract = jax.eval_shape(self._init, params, hparams)
            init = jax.jit(self._init, out_shardings=self.placement.shardings(abstract))
            return init(self.placement.put(params), hparams)
        return self._init(params, hparams)

    def _init(self, params, hparams: dict) -> SimState:
        server = self.make_server(hparams).init(jax.tree.map(jnp.array, params))
        stack = lambda n: jax.tree.map(lambda p: jnp.broadcast_to(p, (n, *p.shape)).copy(), params)
        zeros = lambda n: jax.tree.map(lambda p: jnp.zeros((n, *p.shape), p.dtype), params)
        return SimState(
            server=server,
            local=stack(self.D or self.K),
            snap=stack(self.K) if self.local_updates else {},
            acc=zeros(self.K) if self.local_updates else {},
            read_version=jnp.zeros((self.K,), jnp.int32),
            pend_grads=zeros(self.G),
            pend_worker=jnp.zeros((self.G,), jnp.int32),
            pend_read=jnp.zeros((self.G,), jnp.int32),
            pend_fetch=jnp.zeros((self.G,), bool),
            pend_count=jnp.zeros((), jnp.int32),
        )

    # ------------------------------------------------------------------------------------------------ run
    def run(
        self,
        state: SimState,
        trace: Trace,
        data: dict,
        hparams: dict,
        streams: list[WorkerStream],
        data_key: jax.Array,
        start_event: int = 0,
        callback: Callable[[int, SimState, jax.Array], None] | None = None,
    ) -> SimState:
        """Replay events [start_event, len(trace)); `callback(events_done, state, losses)` after each wave.

        start_event must be a wave boundary (as checkpoints are), so a resumed replay is bit-identical.
        """
        bounds = self.boundaries(trace)
        if start_event not in set(bounds.tolist()):
            raise ValueError(f"start_event {start_event} is not a chunk boundary")
        hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
        step = self.step
        if self.placement is not None:
            data = jax.device_put(data, self.placement.replicated)
            step = self.sharded_step(state)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b <= start_event:
                continue
            chunk = wave_arrays(trace, int(a), int(b), self.C, batch_indices(trace, streams, int(a), int(b)))
            state, losses = step(state, data, chunk, hparams, data_key)
            if callback is not None:
                callback(int(b), state, losses)
        return state

    def sharded_step(self, state: SimState):
        """The step with the state's shardings declared as its outputs."""
        if self._sharded_step is None:  # a Simulator's state layout never changes
            out = (self.placement.shardings(state), self.placement.replicated)
            self._sharded_step = jax.jit(self._step, donate_argnums=0, out_shardings=out)
        return self._sharded_step

    def boundaries(self, trace: Trace) -> np.ndarray:
        """Event offsets where compiled calls start (and checkpoints may be taken), ending with len(trace)."""
        if self.strategy == "waves":
            return partition_waves(trace, self.C)
        return np.unique(np.append(np.arange(0, len(trace), self.C), len(trace)))

    # --------------------------------------------------------------------------------------- step (jit)
    def _step(self, state: SimState, data: dict, chunk: dict, hparams: dict, data_key):
        """One compiled call over C event slots (a wave, or a chunk of consecutive events)."""
        server = self.make_server(hparams)
        keys = jax.vmap(lambda w, s: batch_key(data_key, w, s))(chunk["worker"], chunk["step"])
        compute = chunk["valid"] & (chunk["step"] >= 0)
        grad = lambda p, j: self.task.grad(p, data, chunk["indices"][j], keys[j])
        events = {k: chunk[k] for k in ("worker", "push", "apply", "fetch", "v_read")} | {"compute": compute}
        if self.strategy == "waves":  # every slot's parameters are final at the wave's start
            slot_params = jax.tree.map(lambda x: x[self._slot(chunk["worker"], chunk["v_read"])], state.local)
            losses, grads = jax.vmap(grad)(slot_params, jnp.arange(self.C))
            if self.C <= 32:
                for j in range(self.C):
                    state = self._event(server, state, _index(events, j), _index(grads, j), hparams)
            else:  # large waves: a scan keeps the program small (no convolutions inside)
                body = lambda st, xs: (self._event(server, st, xs[0], xs[1], hparams), None)
                state, _ = jax.lax.scan(body, state, (events, grads))
        else:  # each gradient sees the state left by the events before it
            losses = []
            for j in range(self.C):
                ev = _index(events, j)
                loss, g = grad(_index(state.local, self._slot(ev["worker"], ev["v_read"])), j)
                state = self._event(server, state, ev, g, hparams)
                losses.append(loss)
            losses = jnp.stack(losses)
        return state, jnp.where(compute, losses, jnp.nan)

    def _slot(self, worker, v_read):
        """Where an event's parameters live: its worker's copy, or the ring slot of the version it read."""
        return v_read % self.D if self.D else worker

    def _event(self, server: Server, st: SimState, ev: dict, g, hparams: dict) -> SimState:
        """One trace event: local step -> push -> apply -> fetch, each masked by its flag."""
        if self.D:
            return self._event_ring(server, st, ev, g)
        if self.G == 1 and not self.local_updates:
            return self._event_plain(server, st, ev, g)
        w = ev["worker"]
        put = lambda tree, i, val, on: jax.tree.map(lambda x, v: x.at[i].set(jnp.where(on, v, x[i])), tree, val)

        # Local step (Downpour): apply the gradient to the local copy, accumulate it for the next push.
        if self.local_updates:
            llr = hparams["local_learning_rate"]
            new_local = sgd_step(_index(st.local, w), g, llr)
            new_acc = jax.tree.map(jnp.add, _index(st.acc, w), g)
            st = st._replace(local=put(st.local, w, new_local, ev["compute"]))
            st = st._replace(acc=put(st.acc, w, new_acc, ev["compute"]))
            pushed = _index(st.acc, w)
        else:
            pushed = g

        # Push: the gradient joins the server's pending group.
        push = ev["push"]
        slot = st.pend_count
        st = st._replace(
            pend_grads=put(st.pend_grads, slot, pushed, push),
            pend_worker=st.pend_worker.at[slot].set(jnp.where(push, w, st.pend_worker[slot])),
            pend_read=st.pend_read.at[slot].set(jnp.where(push, st.read_version[w], st.pend_read[slot])),
            pend_fetch=st.pend_fetch.at[slot].set(jnp.where(push, ev["fetch"] == 2, st.pend_fetch[slot])),
            pend_count=st.pend_count + push.astype(jnp.int32),
        )
        if self.local_updates:
            st = st._replace(acc=put(st.acc, w, jax.tree.map(jnp.zeros_like, pushed), push))

        # Apply: the shared server update over the pending group, then fetches of waiting members.
        st = jax.lax.cond(ev["apply"], functools.partial(self._apply, server), lambda s: s, st)

        # Fetch now (a fetch-only event — a restart or a late join — also drops unpushed local gradients).
        fetch_now = ev["fetch"] == 1
        params = st.server.params
        if self.local_updates:
            st = st._replace(acc=put(st.acc, w, jax.tree.map(jnp.zeros_like, params), fetch_now & ~ev["compute"]))
        st = st._replace(
            local=put(st.local, w, params, fetch_now),
            read_version=st.read_version.at[w].set(jnp.where(fetch_now, st.server.version, st.read_version[w])),
        )
        if self.local_updates:
            st = st._replace(snap=put(st.snap, w, params, fetch_now))
        return st

    def _event_plain(self, server: Server, st: SimState, ev: dict, g) -> SimState:
        """Plain A-SGD fast path (one gradient per update, no local steps): no pending buffer; every push is
        applied at once, so a fetch (now or on apply) reads the new version."""
        w = ev["worker"]
        local_w = _index(st.local, w)

        def apply(s):
            return server.apply_one(s, g, st.read_version[w], w, local_w)

        new_server = jax.lax.cond(ev["apply"] & ev["push"], apply, lambda s: s, st.server)
        on = ev["fetch"] > 0
        local = jax.tree.map(lambda x, p: x.at[w].set(jnp.where(on, p, x[w])), st.local, new_server.params)
        read = st.read_version.at[w].set(jnp.where(on, new_server.version, st.read_version[w]))
        return st._replace(server=new_server, local=local, read_version=read)

    def _event_ring(self, server: Server, st: SimState, ev: dict, g) -> SimState:
        """Version-ring memory: the gradient read ring[v_read % D]; the new version is written to its slot."""
        v = ev["v_read"]
        read_params = jax.tree.map(lambda x: x[v % self.D], st.local)
        applied = ev["apply"] & ev["push"]
        new_server = jax.lax.cond(
            applied, lambda s: server.apply_one(s, g, v, ev["worker"], read_params), lambda s: s, st.server
        )
        slot = new_server.version % self.D
        ring = jax.tree.map(lambda x, p: x.at[slot].set(jnp.where(applied, p, x[slot])), st.local, new_server.params)
        return st._replace(server=new_server, local=ring)

    def _apply(self, server: Server, st: SimState) -> SimState:
        read_params = jax.tree.map(lambda x: x[st.pend_worker], st.snap if self.local_updates else st.local)
        new_server = server.apply(st.server, st.pend_grads, st.pend_read, st.pend_worker, read_params, st.pend_count)
        params = new_server.params

        def fetch_member(j, s: SimState) -> SimState:
            on = (j < s.pend_count) & s.pend_fetch[j]
            w = s.pend_worker[j]
            put = lambda tree: jax.tree.map(lambda x, v: x.at[w].set(jnp.where(on, v, x[w])), tree, params)
            s = s._replace(
                local=put(s.local),
                read_version=s.read_version.at[w].set(jnp.where(on, new_server.version, s.read_version[w])),
            )
            return s._replace(snap=put(s.snap)) if self.local_updates else s

        st = st._replace(server=new_server)
        st = jax.lax.fori_loop(0, self.G, fetch_member, st) if self.G > 1 else fetch_member(0, st)
        return st._replace(pend_count=jnp.zeros((), jnp.int32))


def sgd_step(params, grads, lr):
    """params - lr * grads: Downpour's local step, the one formula of simulator, workers and Ray actors."""
    return jax.tree.map(lambda x, d: x - lr * d, params, grads)


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def batch_indices(trace: Trace, streams: list[WorkerStream], start: int, stop: int) -> np.ndarray:
    """Example indices of events [start, stop): worker w's step s batch (fetch-only events get zeros)."""
    batch = streams[0].batch_size
    out = np.zeros((stop - start, batch), np.int32)
    for i, e in enumerate(range(start, stop)):
        s = int(trace.step[e])
        if s >= 0:
            out[i] = streams[int(trace.worker[e])].batch(s)
    return out


def make_streams(num_examples: int, batch_size: int, seed: int, num_workers: int) -> list[WorkerStream]:
    return [WorkerStream(num_examples, batch_size, seed, w, num_workers) for w in range(num_workers)]
