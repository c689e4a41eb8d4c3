"""The compiled replay of a trace: (initial state, trace, data, rule) -> final state, deterministically.

State: the server (params, optimizer and rule state, version), every worker's local copy (the snapshot
it read, plus Downpour's local updates), its accumulated gradient and read version, and the server's
pending group. One jitted `step` takes C event slots and, for each event in trace order, computes its
gradient on the worker's copy and performs the event's server operations: local step, push, apply (the
shared `Server.apply`), fetch. How the C gradients are computed is the strategy:
  sequential  an unrolled chunk of consecutive events (XLA:CPU compiles convolution gradients inside
              loops slowly, so conv nets run unrolled chunks of about ten events);
  scan        a `lax.scan` over a long chunk (hundreds of events per call: small problems, whose cost is
              the per-call overhead, run at the speed of the arithmetic);
  waves       events whose gradients are all computable at once, as one vmap (fills a GPU).
A Python loop over chunks drives it; `asgdjax.sim.sweep` vmaps the same step over configurations.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.inputs import batch_inputs
from asgdjax.core.local import sgd_step
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.server import Server, ServerState
from asgdjax.core.task import Params, Task, batch_key
from asgdjax.core.trace import Fetch, Trace
from asgdjax.errors import TraceMismatch
from asgdjax.sim.waves import partition_waves, wave_arrays


class SimState(NamedTuple):
    server: ServerState
    local: Params  # (K, ...) each worker's working copy (or (D, ...): the version ring)
    snap: Params  # (K, ...) the copy as fetched (DC-ASGD's w_read) when local steps change `local`
    acc: Params  # (K, ...) gradient accumulated since the last push (n_push > 1), else {}
    read_version: jax.Array  # int32[K]
    pend_grads: Params  # (G, ...) pushed gradients of the current group
    pend_worker: jax.Array  # int32[G]
    pend_read: jax.Array  # int32[G]
    pend_fetch: jax.Array  # bool[G]
    pend_count: jax.Array  # int32


STRATEGIES = ("auto", "sequential", "scan", "waves")
LARGE_STATE_BYTES = 32 * 2**20  # stacked copies above this run one event per call on XLA:CPU
SCAN_CALL_SECONDS = 0.02  # a scan chunk holds about this much arithmetic (per-call overhead ~0.1 ms)
MAX_SCAN_CHUNK = 1024


class Simulator:
    """Replays traces of the protocol `spec`; `make_server(hparams) -> Server` is shared with the runtime.

    spec: its group size (the widest group one update may apply) and whether Downpour clients step their
    own copy at hparams['local_learning_rate'] (n_fetch or n_push > 1) shape the state; a trace this
    simulator cannot replay is refused with one line (`TraceMismatch`).
    ring_depth: 0 keeps one parameter copy per worker (K copies: any protocol). D > 0 keeps a ring of the
    last D server versions instead and reads each gradient's parameters from ring[v_read % D] (D copies:
    plain A-SGD with D > max staleness; the only memory that replays Dai et al.'s direct staleness model,
    and the smaller one when K is large but staleness is bounded).
    strategy: see the module docstring; "auto" measures: convolutional or costly steps run unrolled
    chunks of 10 (1 on XLA:CPU when the stacked copies exceed 32 MiB), cheap ones scan chunks sized from
    the measured gradient time. Every strategy is deterministic; they agree to float tolerance.
    placement: an `asgdjax.parallel.Placement`; the whole state is then sharded over its mesh by the
    parameters' rules, so a model too large for one device is simulated across several.
    """

    def __init__(
        self,
        task: Task,
        make_server: Callable[[dict], Server],
        spec: ProtocolSpec,
        *,
        strategy: str = "auto",
        chunk: int = 0,
        ring_depth: int = 0,
        placement: Any = None,
    ):
        self.task, self.make_server, self.spec = task, make_server, spec
        self.K, self.G, self.local_updates = spec.num_workers, spec.group_size, spec.local_updates
        self.placement, self.D = placement, ring_depth
        if ring_depth and (self.G > 1 or self.local_updates):
            raise TraceMismatch("the version ring replays plain A-SGD only (group size 1, n_fetch = n_push = 1)")
        if strategy not in STRATEGIES:
            raise TraceMismatch(f"unknown sim strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.strategy, self._chunk = strategy, chunk
        self.C = chunk if chunk and strategy != "auto" else 0  # set by `_choose` on first use
        self.step = jax.jit(self._step, donate_argnums=0)
        self._init_program = jax.jit(self._init)  # one dispatch, not one per copy (a planner builds hundreds)
        self._sharded_step: Any = None

    # ----------------------------------------------------------------------------------------------- state
    def init(self, params: Params, hparams: dict) -> SimState:
        """Every worker starts from `params` (version 0); `params` is copied, never donated."""
        if self.placement is not None:  # built under jit straight into its shards: no device holds it whole
            abstract = jax.eval_shape(self._init, params, hparams)
            init = jax.jit(self._init, out_shardings=self.placement.shardings(abstract))
            return init(self.placement.put(params), hparams)
        return self._init_program(params, hparams)

    def _init(self, params: Params, hparams: dict) -> SimState:
        server = self.make_server(hparams).init(jax.tree.map(jnp.array, params))
        stack = lambda n: jax.tree.map(lambda p: jnp.broadcast_to(p, (n, *jnp.shape(p))).copy(), params)
        zeros = lambda n: jax.tree.map(lambda p: jnp.zeros((n, *jnp.shape(p)), jnp.asarray(p).dtype), params)
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
        data: Any,
        hparams: dict,
        sampler: Sampler,
        data_key: jax.Array,
        *,
        start_event: int = 0,
        cuts: tuple[int, ...] | np.ndarray = (),
        callback: Callable[[int, SimState, jax.Array], None] | None = None,
    ) -> SimState:
        """Replay events [start_event, len(trace)); `callback(events_done, state, losses)` after each call.

        cuts: event offsets where a call must end (logging, evaluation, checkpoints); start_event is one.
        Calls end at the same offsets for the same cuts, so a resumed replay is bit-identical.
        """
        self.check_replayable(trace)
        self.plan(state.server.params, data, sampler.batch_size)
        bounds = self.boundaries(trace, cuts=(*tuple(cuts), start_event))
        hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
        step = self.step
        if self.placement is not None:
            data = jax.device_put(data, self.placement.replicated)
            step = self.sharded_step(state)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b <= start_event:
                continue
            inputs = batch_inputs(self.task, sampler, trace.worker[a:b], trace.step[a:b])
            chunk = wave_arrays(trace, int(a), int(b), self.C, inputs)
            state, losses = step(state, data, chunk, hparams, data_key)
            if callback is not None:
                callback(int(b), state, losses)
        return state

    def check_replayable(self, trace: Trace) -> None:
        """Refuse (one line) a trace whose events this simulator's state cannot express."""
        what = f"trace recorded with {_describe(trace.meta)}" if trace.meta.get("protocol") else "trace"
        if trace.num_workers != self.K:
            raise TraceMismatch(f"{what} has {trace.num_workers} workers; this simulator has {self.K}")
        sizes = trace.group_sizes()
        widest = int(sizes.max()) if len(sizes) else 1
        if widest > self.G:
            raise TraceMismatch(
                f"{what} applies groups of up to {widest} gradients; this simulator's protocol "
                f"({_describe(self.spec.meta())}) applies at most {self.G}; use the protocol it was recorded with"
            )
        computed = trace.step >= 0
        local = computed & (~trace.push | (trace.fetch == Fetch.NONE))
        if local.any() and not self.local_updates and not self.D:  # the ring reads by version, not by copy
            raise TraceMismatch(
                f"{what} has Downpour local steps (a gradient kept or a fetch skipped); this simulator has "
                "n_fetch = n_push = 1: set n_fetch / n_push as recorded"
            )
        if self.D and len(trace) and int(trace.staleness.max(initial=0)) >= self.D:
            raise TraceMismatch(
                f"{what} has staleness up to {int(trace.staleness.max())}; the version ring holds {self.D} versions"
            )

    def sharded_step(self, state: SimState):
        """The step with the state's shardings declared as its outputs."""
        if self._sharded_step is None:  # a Simulator's state layout never changes
            out = (self.placement.shardings(state), self.placement.replicated)
            self._sharded_step = jax.jit(self._step, donate_argnums=0, out_shardings=out)
        return self._sharded_step

    def boundaries(self, trace: Trace, *, cuts: tuple[int, ...] | np.ndarray = ()) -> np.ndarray:
        """Event offsets where compiled calls start (and checkpoints may be taken), ending with len(trace)."""
        if not self.C:
            raise RuntimeError("Simulator.plan (or run) fixes the events per call before boundaries")
        n = len(trace)
        extra = [int(c) for c in cuts if 0 < int(c) < n]
        base = partition_waves(trace, self.C) if self.strategy == "waves" else np.arange(0, n, self.C)
        return np.unique(np.concatenate([base, extra, [0, n]]).astype(np.int64))

    # ------------------------------------------------------------------------------------ strategy choice
    def plan(self, params: Params, data: Any, batch_size: int) -> None:
        """Fix the strategy and the events per call from the task and the state size (once; `run` calls it)."""
        if self.C:
            return
        if self.strategy == "waves":
            self.C = self._chunk or min(self.K, 256)
            return
        nbytes = sum(jnp.asarray(x).size * jnp.asarray(x).dtype.itemsize for x in jax.tree.leaves(params))
        big = jax.default_backend() == "cpu" and (self.D or self.K) * nbytes > LARGE_STATE_BYTES
        if self.strategy == "auto":  # large stacked copies: a scan would copy them per event too
            cost = None if big else _gradient_seconds(self.task, params, data, batch_size)
            if cost is not None and cost * 10 < SCAN_CALL_SECONDS:
                self.strategy = "scan"
                self.C = self._chunk or int(np.clip(SCAN_CALL_SECONDS / max(cost, 1e-7), 10, MAX_SCAN_CHUNK))
                return
            self.strategy = "sequential"
        if self.strategy == "scan":
            self.C = self._chunk or 256
            return
        # Unrolled chunks. XLA:CPU: one event per call (measured, small CNN on digits, K = 16: 3.56 ms per
        # event and 3.2 s to compile, against 3.49 ms and 15 s for ten unrolled events; with large stacked
        # copies a multi-event program also copies the whole (K, ...) buffer once per event). Accelerators:
        # ten events per call amortise the dispatch.
        self.C = self._chunk or (1 if jax.default_backend() == "cpu" else 10)

    # --------------------------------------------------------------------------------------- step (jit)
    def _step(self, state: SimState, data: Any, chunk: dict, hparams: dict, data_key: jax.Array):
        """One compiled call over C event slots (a wave, or a chunk of consecutive events)."""
        server = self.make_server(hparams)
        keys = jax.vmap(lambda w, s: batch_key(data_key, w, s))(chunk["worker"], chunk["step"])
        compute = chunk["valid"] & (chunk["step"] >= 0)
        events = {k: chunk[k] for k in ("worker", "push", "apply", "fetch", "v_read")} | {"compute": compute}

        def grad(p, idx, key):
            return self.task.grad(p, data, idx, key)

        if self.strategy == "waves":  # every slot's parameters are final at the wave's start
            slot_params = jax.tree.map(lambda x: x[self._slot(chunk["worker"], chunk["v_read"])], state.local)
            losses, grads = jax.vmap(grad)(slot_params, chunk["inputs"], keys)
            body = lambda st, xs: (self._event(server, st, xs[0], xs[1], hparams), None)
            state, _ = jax.lax.scan(body, state, (events, grads), unroll=self.C <= 32)
        elif self.strategy == "scan":

            def event(st, ev, idx, key):
                slot = self._slot(ev["worker"], ev["v_read"])
                # Fetch-only slots skip the gradient; the worker's copy is read only by the one that runs.
                skip = lambda: (jnp.zeros((), jnp.float32), jax.tree.map(lambda x: jnp.zeros_like(x[0]), st.local))
                loss, g = jax.lax.cond(ev["compute"], lambda: grad(_index(st.local, slot), idx, key), skip)
                return self._event(server, st, ev, g, hparams), loss

            def body(st, xs):
                # Padding slots (a chunk cut short by an evaluation) must cost almost nothing. Plain A-SGD's
                # do (about 5-15 us on the MNIST MLP: its writes are conditional); Downpour's cost 210 us each,
                # so on XLA:CPU the other events (grouped, Downpour, the version ring) run only in a conditional
                # on the slot being real (which would add 5-15% to each of plain A-SGD's events; measured).
                ev, idx, key = xs
                if self.plain or jax.default_backend() != "cpu":
                    return event(st, ev, idx, key)
                idle = lambda st, *_: (st, jnp.zeros((), jnp.float32))
                return jax.lax.cond(ev["valid"], event, idle, st, ev, idx, key)

            events["valid"] = chunk["valid"]
            state, losses = jax.lax.scan(body, state, (events, chunk["inputs"], keys))
        else:  # unrolled: each gradient sees the state left by the events before it
            out = []
            for j in range(self.C):
                ev = _index(events, j)
                loss, g = grad(
                    _index(state.local, self._slot(ev["worker"], ev["v_read"])), _index(chunk["inputs"], j), keys[j]
                )
                state = self._event(server, state, ev, g, hparams)
                out.append(loss)
            losses = jnp.stack(out)
        return state, jnp.where(compute, losses, jnp.nan)

    @property
    def plain(self) -> bool:
        """Plain A-SGD on per-worker copies: one gradient per update, no local steps (`_event_plain`)."""
        return self.G == 1 and not self.local_updates and not self.D

    def _slot(self, worker, v_read):
        """Where an event's parameters live: its worker's copy, or the ring slot of the version it read."""
        return v_read % self.D if self.D else worker

    def _event(self, server: Server, st: SimState, ev: dict, g, hparams: dict) -> SimState:
        """One trace event: local step -> push -> apply -> fetch, each masked by its flag."""
        if self.D:
            return self._event_ring(server, st, ev, g)
        if self.plain:
            return self._event_plain(server, st, ev, g)
        w = ev["worker"]
        if self.local_updates:  # Downpour: the local copy moves, the gradient joins the next push
            st = st._replace(
                local=_put(
                    st.local, w, sgd_step(_index(st.local, w), g, hparams["local_learning_rate"]), ev["compute"]
                ),
                acc=_put(st.acc, w, jax.tree.map(jnp.add, _index(st.acc, w), g), ev["compute"]),
            )

        def exchange(st):
            pushed = _index(st.acc, w) if self.local_updates else g
            st = self._push(st, ev, pushed)
            st = jax.lax.cond(ev["apply"], functools.partial(self._apply, server), lambda s: s, st)
            return self._fetch_now(st, ev)

        if self.spec.n_push > 1 and jax.default_backend() == "cpu":
            # Most Downpour events only step locally: one conditional skips the exchange's masked writes
            # (measured, MNIST MLP: 0.87 -> 0.72 ms an event at K = 2, 1.03 -> 0.73 at K = 8, n_push = 4; the
            # same results bit for bit). Where every event pushes (softsync) it would cost 6%.
            talks = ev["push"] | ev["apply"] | (ev["fetch"] == Fetch.NOW)
            return jax.lax.cond(talks, exchange, lambda s: s, st)
        return exchange(st)

    def _push(self, st: SimState, ev: dict, pushed) -> SimState:
        """The gradient joins the server's pending group (and the worker's accumulator empties)."""
        w, push, slot = ev["worker"], ev["push"], st.pend_count
        st = st._replace(
            pend_grads=_put(st.pend_grads, slot, pushed, push),
            pend_worker=st.pend_worker.at[slot].set(jnp.where(push, w, st.pend_worker[slot])),
            pend_read=st.pend_read.at[slot].set(jnp.where(push, st.read_version[w], st.pend_read[slot])),
            pend_fetch=st.pend_fetch.at[slot].set(jnp.where(push, ev["fetch"] == Fetch.ON_APPLY, st.pend_fetch[slot])),
            pend_count=st.pend_count + push.astype(jnp.int32),
        )
        if self.local_updates:
            st = st._replace(acc=_put(st.acc, w, jax.tree.map(jnp.zeros_like, pushed), push))
        return st

    def _fetch_now(self, st: SimState, ev: dict) -> SimState:
        """Fetch now (a fetch-only event, a restart or a late join, also drops unpushed local gradients)."""
        w, fetch_now = ev["worker"], ev["fetch"] == Fetch.NOW
        params = st.server.params
        if self.local_updates:
            zeros = jax.tree.map(jnp.zeros_like, params)
            st = st._replace(
                acc=_put(st.acc, w, zeros, fetch_now & ~ev["compute"]), snap=_put(st.snap, w, params, fetch_now)
            )
        return st._replace(
            local=_put(st.local, w, params, fetch_now),
            read_version=st.read_version.at[w].set(jnp.where(fetch_now, st.server.version, st.read_version[w])),
        )

    def _event_plain(self, server: Server, st: SimState, ev: dict, g) -> SimState:
        """Plain A-SGD fast path (one gradient per update, no local steps): no pending buffer; every push is
        applied at once, so a fetch (now or on apply) reads the new version."""
        w = ev["worker"]

        def apply(s):  # the worker's copy is read only here (a padded slot does not copy it)
            return server.apply_one(s, g, st.read_version[w], w, _index(st.local, w))

        new_server = jax.lax.cond(ev["apply"] & ev["push"], apply, lambda s: s, st.server)
        on = ev["fetch"] > 0
        read = st.read_version.at[w].set(jnp.where(on, new_server.version, st.read_version[w]))
        return st._replace(server=new_server, local=_put(st.local, w, new_server.params, on), read_version=read)

    def _event_ring(self, server: Server, st: SimState, ev: dict, g) -> SimState:
        """Version-ring memory: the gradient read ring[v_read % D]; the new version is written to its slot."""
        v = ev["v_read"]
        read_params = jax.tree.map(lambda x: x[v % self.D], st.local)
        applied = ev["apply"] & ev["push"]
        new_server = jax.lax.cond(
            applied, lambda s: server.apply_one(s, g, v, ev["worker"], read_params), lambda s: s, st.server
        )
        ring = _put(st.local, new_server.version % self.D, new_server.params, applied)
        return st._replace(server=new_server, local=ring)

    def _apply(self, server: Server, st: SimState) -> SimState:
        read_params = jax.tree.map(lambda x: x[st.pend_worker], st.snap if self.local_updates else st.local)
        new_server = server.apply(st.server, st.pend_grads, st.pend_read, st.pend_worker, read_params, st.pend_count)
        params = new_server.params

        def fetch_member(j, s: SimState) -> SimState:
            on = (j < s.pend_count) & s.pend_fetch[j]
            w = s.pend_worker[j]
            s = s._replace(
                local=_put(s.local, w, params, on),
                read_version=s.read_version.at[w].set(jnp.where(on, new_server.version, s.read_version[w])),
            )
            return s._replace(snap=_put(s.snap, w, params, on)) if self.local_updates else s

        st = st._replace(server=new_server)
        st = jax.lax.fori_loop(0, self.G, fetch_member, st) if self.G > 1 else fetch_member(0, st)
        return st._replace(pend_count=jnp.zeros((), jnp.int32))


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _put(tree, i, value, on):
    """tree[i] = value where `on`, else unchanged (stacked leaves). XLA:CPU: a conditional around the write
    (in place; the select read and rewrote the slice every event: 15-25% of an MNIST MLP event, K = 8).
    Accelerators: the select (their conditional would read its predicate back to the host)."""
    write = lambda: jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)
    if jax.default_backend() == "cpu":
        return jax.lax.cond(on, write, lambda: tree)
    return jax.tree.map(lambda x, v: x.at[i].set(jnp.where(on, v, x[i])), tree, value)


def _describe(meta: dict) -> str:
    keys = ("protocol", "softsync_n", "max_staleness", "n_fetch", "n_push")
    return ", ".join(f"{k}={meta[k]}" for k in keys if k in meta)


def _gradient_seconds(task: Task, params: Params, data: Any, batch_size: int) -> float | None:
    """Seconds one gradient takes on this backend, measured inside one compiled loop of 16 (so a call's
    dispatch overhead, which a scan chunk pays once, is not counted); best of 3 after compiling. None for
    convolutional tasks on XLA:CPU, which must not run inside a scan there (its loop-body conv emitter is
    slow), and for tasks loading batches on the host."""
    if hasattr(task, "load"):  # batches come from a host loader: the step is not cheap
        return None
    idx = jnp.zeros((batch_size,), jnp.int32)
    key = jax.random.key(0)
    if jax.default_backend() == "cpu":
        jaxpr = jax.make_jaxpr(lambda p, d: task.grad(p, d, idx, key))(params, data)
        if "conv_general_dilated" in str(jaxpr):
            return None
    reps = 16

    def loop(p, d):
        body = lambda i, acc: acc + task.grad(p, d, idx + i, jax.random.fold_in(key, i))[0]
        return jax.lax.fori_loop(0, reps, body, jnp.zeros((), jnp.float32))

    fn = jax.jit(loop)
    jax.block_until_ready(fn(params, data))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(fn(params, data))
        best = min(best, time.perf_counter() - t)
    return best / reps
