"""The front door's arguments resolved once into the core's types, shared by `simulate` and `run_async` so
the same call shape means the same run in both."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from asgdjax.api import arguments
from asgdjax.api.loss_task import LossTask, check_data
from asgdjax.api.result import Result, history_from_losses, rejections
from asgdjax.core import health
from asgdjax.core.keys import RunKeys, run_keys
from asgdjax.core.protocol import KINDS, ProtocolSpec
from asgdjax.core.sampling import Sampler, check_sampler, make_sampler
from asgdjax.core.server import Server
from asgdjax.core.trace import Trace
from asgdjax.errors import ConfigError
from asgdjax.rules import make_rule


@dataclasses.dataclass(frozen=True)
class ProtocolArgs:
    """The protocol as the front door takes it: a worker count and a protocol name or ProtocolSpec (None:
    the default, or the given trace's value)."""

    num_workers: int | None = None
    protocol: str | ProtocolSpec | None = None

    def spec(self, trace: Trace | None) -> ProtocolSpec:
        """The ProtocolSpec these arguments mean; with a trace, its recorded protocol (conflicts refused)."""
        if isinstance(self.protocol, ProtocolSpec):
            base = self.protocol
        elif trace is not None:
            base = spec_of_trace(trace)
        else:
            base = ProtocolSpec()
        raw: dict[str, Any] = {
            "num_workers": self.num_workers,
            "kind": self.protocol if isinstance(self.protocol, str) else None,
        }
        given = {k: v for k, v in raw.items() if v is not None}
        if isinstance(self.protocol, str) and self.protocol not in KINDS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; allowed: {', '.join(KINDS)}")
        if trace is not None:
            wrong = {k: v for k, v in given.items() if getattr(base, k) != v}
            if wrong:
                k, v = next(iter(wrong.items()))
                raise ConfigError(
                    f"trace was recorded with {k}={getattr(base, k)!r}, not {v!r}; leave it out to use the trace's"
                )
            return base
        return dataclasses.replace(base, **given)


def spec_of_trace(trace: Trace) -> ProtocolSpec:
    """The protocol a trace was recorded with (its metadata), for an exact replay."""
    m = trace.meta
    kind = m.get("protocol", "async")
    bound = int(m.get("max_staleness", -1))
    return ProtocolSpec(
        num_workers=trace.num_workers,
        kind=kind,
        softsync_n=int(m.get("softsync_n", 1)),
        max_staleness=-1 if kind in ("sync", "softsync") or m.get("memory") == "ring" else bound,
        n_fetch=int(m.get("n_fetch", 1)),
        n_push=int(m.get("n_push", 1)),
        warm_start_steps=int(m.get("warm_start_steps", 0)),
    )


@dataclasses.dataclass(frozen=True)
class Problem:
    task: LossTask
    data: Any
    spec: ProtocolSpec
    make_server: Callable[[dict], Server]
    hparams: dict[str, float]
    sampler: Sampler
    keys: RunKeys
    steps: int
    log_every: int
    eval_every: int
    max_loss: float
    data_digest: str  # of the data's bytes: a replay on other values of the same shapes is refused


DEFAULT_BATCH_SIZE = 32  # simulate / run_async without batch_size or a sampler object
CALL_ARGS = (
    "loss_fn", "params", "data", "optimizer", "steps", "batch_size", "rule", "local_learning_rate", "sampler",
    "staleness_cap", "key", "log_every", "eval_every", "max_loss",
)  # fmt: skip


def problem_of_call(call: dict[str, Any], *, trace: Trace | None) -> Problem:
    """build_problem from a front-door call's own arguments (`simulate` and `run_async` take the same ones),
    each checked first (asgdjax.api.arguments)."""
    call = arguments.common(call)
    protocol = ProtocolArgs(call["num_workers"], call["protocol"])
    p = build_problem(**{k: call[k] for k in CALL_ARGS}, protocol=protocol, trace=trace)
    for note in arguments.unread(call, p.spec, p.steps):
        warnings.warn(note, UserWarning, stacklevel=3)  # points at the caller of simulate / run_async
    return p


def build_problem(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    steps: int | None,
    batch_size: int | None,
    protocol: ProtocolArgs,
    trace: Trace | None,
    rule: str | optax.GradientTransformationExtraArgs,
    local_learning_rate: float | None,
    sampler: str | Sampler,
    staleness_cap: int,
    key: int | jax.Array,
    log_every: int,
    eval_every: int,
    max_loss: float,
) -> Problem:
    spec = protocol.spec(trace)
    if trace is not None:
        steps = trace.num_gradients if steps is None else steps
        if steps != trace.num_gradients:
            raise ConfigError(f"steps={steps} but the trace holds {trace.num_gradients} gradients; leave steps out")
    if steps is None:
        raise ConfigError("steps is required (gradients to compute), unless a trace to replay is given")
    if not (isinstance(optimizer, optax.GradientTransformation) or hasattr(optimizer, "update")):
        raise ConfigError(f"optimizer={optimizer!r} is not an optax GradientTransformation; e.g. optax.sgd(0.1)")
    if spec.local_updates and spec.n_fetch > 1 and local_learning_rate is None:  # n_fetch 1: every step refetches
        raise ConfigError(
            f"n_fetch={spec.n_fetch} (Downpour local steps on the workers' own copies) needs local_learning_rate=LR "
            "for the workers' own SGD"
        )
    n = check_data(data)
    keys = run_keys(key)
    smp: Sampler
    if isinstance(sampler, str):
        seed, k = keys.sampler_seed, spec.num_workers
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        smp = make_sampler(sampler, num_examples=n, batch_size=batch_size, seed=seed, num_workers=k)
    else:
        batch_size = batch_size or int(sampler.batch_size)
        check_sampler(sampler, num_examples=n, batch_size=batch_size, num_workers=spec.num_workers)
        smp = sampler
    tx = make_rule(rule, spec.num_workers) if isinstance(rule, str) else rule
    k = spec.num_workers

    def make_server(hparams: dict) -> Server:
        return Server(tx, optimizer, num_workers=k, staleness_cap=staleness_cap)

    llr = float(local_learning_rate) if local_learning_rate is not None else 0.0
    task = LossTask.of(loss_fn, params)
    host = jax.tree.map(np.asarray, data)
    on_device = jax.device_put(host)
    task.check_shapes(on_device, batch_size)
    return Problem(
        task=task,
        data=on_device,
        spec=spec,
        make_server=make_server,
        hparams={"learning_rate": 0.0, "local_learning_rate": llr},
        sampler=smp,
        keys=keys,
        steps=steps,
        log_every=log_every or max(1, steps // 100),
        eval_every=eval_every,
        max_loss=max_loss,
        data_digest=digest(host),
    )


def digest(tree: Any) -> str:
    """A hash of a pytree of arrays' bytes, dtypes and shapes (blake2b; about 1 GB/s here)."""
    h = hashlib.blake2b(digest_size=16)
    for x in jax.tree.leaves(tree):
        h.update(f"{x.dtype}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def verdict(history, rejected, gradients: int, max_loss: float, samples: health.LossSamples) -> tuple[str, str]:
    """ok / diverged / collapsed, with the reason (asgdjax.core.health's rules). Diverged: the loss is NaN,
    Inf or above max_loss at the end (a bad window the run recovered from, e.g. one NaN example whose
    gradient the server rejected, is named in an ok verdict's reason), exploded (EXPLODED times its start),
    or most gradients were rejected. Collapsed: the loss stayed above its start, or ended no lower than the
    initial parameters' loss (a front-door loss has no classes, so no chance-level check)."""
    flags = [health.divergence(float(loss), limit=max_loss, name="max_loss") for loss in history.train_loss]
    if flags and flags[-1]:  # bad at the end: report where the final bad stretch began
        i = len(flags) - 1
        while i > 0 and flags[i - 1]:
            i -= 1
        return "diverged", f"{flags[i]} at gradient {int(history.step[i])}"
    why = health.rejection(rejected.total, gradients) or samples.exploded()
    if why:
        return "diverged", why
    detector = health.CollapseDetector()
    for loss in history.train_loss:
        if math.isfinite(loss):
            detector.loss(float(loss))
    why = detector.verdict(final=True) or samples.no_progress()
    if why:
        return "collapsed", why
    first = next((i for i, why in enumerate(flags) if why), None)
    return "ok", "" if first is None else f"recovered from {flags[first]} at gradient {int(history.step[first])}"


INF = math.inf


def finish(
    p: Problem, *, params: Any, losses: np.ndarray, evals: list, trace: Trace, server: Any, t0: float, source: str
) -> Result:
    """The Result of a finished run: its curve, rejections and verdict, from either engine."""
    trace = dataclasses.replace(trace, meta={**trace.meta, "inputs": inputs_record(p)})
    history = history_from_losses(losses, p.log_every, evals)
    rejected = rejections(server.rejected)
    status, reason = verdict(history, rejected, trace.num_gradients, p.max_loss, health.LossSamples.of(losses, trace))
    return Result(
        params=params,
        history=history,
        trace=trace,
        stats=trace.stats(),
        rejected=rejected,
        updates=int(server.version),
        status=status,
        reason=reason,
        wall_seconds=time.perf_counter() - t0,
        source=source,
    )


def inputs_record(p: Problem) -> dict[str, Any]:
    """What a trace's gradients were computed on, beside its protocol in trace.meta: a replay on other
    inputs (another key, batch size, sampler or data shape) would follow the same order to other numbers."""
    shapes = [[list(np.shape(x)), str(x.dtype)] for x in jax.tree.leaves(p.data)]
    return {
        "key": str(p.keys.sampler_seed),  # derived from the run's root key (JSON keeps it exact as text)
        "batch_size": int(p.sampler.batch_size),
        "sampler": type(p.sampler).__name__,
        "sampler_seed": str(getattr(p.sampler, "seed", "")),
        "num_examples": int(p.sampler.num_examples),
        "data": shapes,
        "data_digest": p.data_digest,
    }


def check_replay_inputs(trace: Trace, p: Problem) -> None:
    """Refuse (one line) a replay whose inputs differ from those its trace recorded (traces written before
    the record existed are taken as they are)."""
    recorded = trace.meta.get("inputs")
    if not recorded:
        return
    now = json.loads(json.dumps(inputs_record(p)))
    for name, value in recorded.items():
        if now.get(name) != value:
            other = {
                "key": "another key",
                "sampler_seed": "another sampler seed",
                "data_digest": "other data (the same shapes, other values or order)",
            }
            shown = other.get(name, f"{name}={value!r}, not {now.get(name)!r}")
            raise ConfigError(
                f"trace was recorded with {shown}; an exact replay needs the same data, batch_size, sampler "
                "and key as the run that recorded it"
            )
