"""The front door's arguments resolved once into the core's types, shared by `simulate` and `run_async` so
the same call shape means the same run in both."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from asgdjax.api.loss_task import LossTask, check_data
from asgdjax.api.result import Result, history_from_losses, rejections
from asgdjax.core.keys import RunKeys, run_keys
from asgdjax.core.protocol import KINDS, ProtocolSpec
from asgdjax.core.sampling import Sampler, make_sampler
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


CALL_ARGS = (
    "loss_fn", "params", "data", "optimizer", "steps", "batch_size", "rule", "local_learning_rate", "sampler",
    "staleness_cap", "key", "log_every", "eval_every", "max_loss",
)  # fmt: skip


def problem_of_call(call: dict[str, Any], *, trace: Trace | None) -> Problem:
    """build_problem from a front-door call's own arguments (`simulate` and `run_async` take the same ones)."""
    protocol = ProtocolArgs(call["num_workers"], call["protocol"])
    return build_problem(**{k: call[k] for k in CALL_ARGS}, protocol=protocol, trace=trace)


def build_problem(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    steps: int | None,
    batch_size: int,
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
    _positive("steps", steps)
    _positive("batch_size", batch_size)
    if not (isinstance(optimizer, optax.GradientTransformation) or hasattr(optimizer, "update")):
        raise ConfigError(f"optimizer={optimizer!r} is not an optax GradientTransformation; e.g. optax.sgd(0.1)")
    if spec.local_updates and local_learning_rate is None:
        raise ConfigError(
            "n_fetch or n_push > 1 (Downpour local steps) needs local_learning_rate=LR for the workers' own SGD"
        )
    if not isinstance(staleness_cap, int) or staleness_cap < -1:
        raise ConfigError(f"staleness_cap={staleness_cap!r} is not allowed; use -1 (no cap) or an integer >= 0")
    n = check_data(data)
    keys = run_keys(key)
    smp: Sampler
    if isinstance(sampler, str):
        seed, k = keys.sampler_seed, spec.num_workers
        smp = make_sampler(sampler, num_examples=n, batch_size=batch_size, seed=seed, num_workers=k)
    else:
        smp = sampler
    tx = make_rule(rule, spec.num_workers) if isinstance(rule, str) else rule
    k = spec.num_workers

    def make_server(hparams: dict) -> Server:
        return Server(tx, optimizer, num_workers=k, staleness_cap=staleness_cap)

    llr = float(local_learning_rate) if local_learning_rate is not None else 0.0
    return Problem(
        task=LossTask.of(loss_fn, params),
        data=jax.device_put(jax.tree.map(np.asarray, data)),
        spec=spec,
        make_server=make_server,
        hparams={"learning_rate": 0.0, "local_learning_rate": llr},
        sampler=smp,
        keys=keys,
        steps=steps,
        log_every=log_every or max(1, steps // 100),
        eval_every=eval_every,
        max_loss=max_loss,
    )


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{key}={value!r} is not allowed; use a positive integer")


def verdict(history, rejected, gradients: int, max_loss: float) -> tuple[str, str]:
    """ok / diverged / collapsed, with the reason (asgdjax.core.health's rules)."""
    from asgdjax.core import health

    for loss in history.train_loss:
        why = health.divergence(float(loss), limit=max_loss)
        if why:
            return "diverged", why
    why = health.rejection(rejected.total, gradients)
    if why:
        return "diverged", why
    detector = health.CollapseDetector()
    for loss in history.train_loss:
        detector.loss(float(loss))
    why = detector.verdict(final=True)
    return ("collapsed", why) if why else ("ok", "")


INF = math.inf


def finish(
    p: Problem, *, params: Any, losses: np.ndarray, evals: list, trace: Trace, server: Any, t0: float, source: str
) -> Result:
    """The Result of a finished run: its curve, rejections and verdict, from either engine."""
    history = history_from_losses(losses, p.log_every, evals)
    rejected = rejections(server.rejected)
    status, reason = verdict(history, rejected, trace.num_gradients, p.max_loss)
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
