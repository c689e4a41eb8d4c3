"""The front door's arguments checked before any work: each wrong type or value is one ConfigError naming the
argument and what is allowed (a researcher calling from a notebook gets that line, not a traceback from
inside jax after the whole run), and integer-like values (numpy ints) are taken as the ints they are."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import jax
import numpy as np
import optax

from asgdjax.config_checks import int_at_least
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError


def integer(name: str, value: Any, lowest: int, allowed: str) -> int:
    """`value` as an int (a numpy integer too; not a bool or a float) at least `lowest`: the config check
    `int_at_least`, after a numpy integer is taken as the int it is."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    int_at_least(name, value, lowest, allowed)
    return value


def number(name: str, value: Any, *, lowest: float, allowed: str, inf: bool = False) -> float:
    """`value` as a float (int, float or numpy number; not a bool or a string) at least `lowest`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or math.isnan(value) or value < lowest or (math.isinf(value) and not inf):
        raise ConfigError(f"{name}={value!r} is not allowed; use {allowed}")
    return float(value)


def common(call: dict[str, Any]) -> dict[str, Any]:
    """The arguments `simulate` and `run_async` share, checked and normalised (a new dict)."""
    c = dict(call)
    if c["num_workers"] is not None:
        c["num_workers"] = integer("num_workers", c["num_workers"], 1, "a positive integer")
    c["steps"] = None if c["steps"] is None else integer("steps", c["steps"], 1, "a positive integer")
    if c["batch_size"] is not None:  # None: the given sampler's, or 32
        c["batch_size"] = integer("batch_size", c["batch_size"], 1, "a positive integer")
    c["staleness_cap"] = integer("staleness_cap", c["staleness_cap"], -1, "-1 (no cap) or an integer >= 0")
    c["log_every"] = integer("log_every", c["log_every"], 0, "0 (automatic: about 100 records) or a positive integer")
    c["eval_every"] = integer("eval_every", c["eval_every"], 0, "0 (only at the end) or a positive integer")
    c["max_loss"] = number("max_loss", c["max_loss"], lowest=0, allowed="a number > 0 (math.inf: no limit)", inf=True)
    if c["max_loss"] == 0:
        raise ConfigError("max_loss=0 is not allowed; use a number > 0 (math.inf: no limit)")
    if c["local_learning_rate"] is not None:
        c["local_learning_rate"] = number(
            "local_learning_rate", c["local_learning_rate"], lowest=0, allowed="a number >= 0"
        )
    c["protocol"] = protocol(c["protocol"], c["num_workers"])
    c["rule"] = rule(c["rule"])
    c["key"] = key(c["key"])
    if not isinstance(c["sampler"], (str, Sampler)):
        raise ConfigError(f"sampler={c['sampler']!r} is not allowed; use 'shards', 'replacement' or an asgdjax sampler")
    if c["eval_fn"] is not None and not callable(c["eval_fn"]):
        raise ConfigError(f"eval_fn={c['eval_fn']!r} is not callable; give eval_fn(params) -> float or dict of floats")
    return c


def protocol(value: Any, num_workers: int | None) -> str | ProtocolSpec | None:
    """A protocol name or ProtocolSpec; a spec whose own worker count differs from num_workers is refused."""
    if value is not None and not isinstance(value, (str, ProtocolSpec)):
        raise ConfigError(
            f"protocol={value!r} is not allowed; use 'async', 'softsync', 'sync' or an asgdjax.ProtocolSpec"
        )
    if isinstance(value, ProtocolSpec) and num_workers is not None and value.num_workers not in (1, num_workers):
        raise ConfigError(
            f"num_workers={num_workers} but protocol=ProtocolSpec(num_workers={value.num_workers}, ...); give the "
            "count once (either is enough)"
        )
    return value


def rule(value: Any) -> str | optax.GradientTransformationExtraArgs:
    """A rule name, or an optax transformation: a plain one (optax.clip, optax.scale, ...) is wrapped so it
    ignores the staleness keywords the server passes to rules."""
    if isinstance(value, (str, optax.GradientTransformationExtraArgs)):
        return value
    if isinstance(value, optax.GradientTransformation) or (hasattr(value, "init") and hasattr(value, "update")):
        return optax.with_extra_args_support(value)
    raise ConfigError(f"rule={value!r} is not allowed; use a name from asgdjax.RULES or an optax transformation")


def key(value: Any) -> int | jax.Array:
    """An integer seed or a jax PRNG key (typed, or the raw uint32[2] of jax.random.PRNGKey)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
        return value
    if isinstance(value, jax.Array | np.ndarray) and value.dtype == np.uint32 and value.shape == (2,):
        return jax.random.wrap_key_data(jax.numpy.asarray(value))
    raise ConfigError(f"key={value!r} is not allowed; use an integer seed or a jax.random.key(seed)")


def replay(trace: Any, delays: Any) -> Trace | None:
    """The trace to replay (a Trace, or the path of a saved trace.npz) and the delay model that must then be
    left out (the trace fixes the order; a delay model beside it would be ignored)."""
    if trace is None:
        if not isinstance(delays, DelayModel):
            raise ConfigError(f"delays={delays!r} is not allowed; use an asgdjax.DelayModel(kind, ...)")
        return None
    if isinstance(trace, str | os.PathLike):
        trace = Trace.load(os.fspath(trace))
    if not isinstance(trace, Trace):
        raise ConfigError(f"trace={trace!r} is not allowed; use a Trace (result.trace) or the path of a trace.npz")
    if delays != DelayModel():
        raise ConfigError("delays= is not used when a trace is given (the trace fixes the order); leave one out")
    return trace


def unread(call: dict[str, Any], spec: ProtocolSpec, steps: int) -> list[str]:
    """Arguments a call gives that its run never reads (a warning each, as asgdjax-train notes ignored keys):
    nothing fails, but the run is not the one the call describes."""
    notes = []
    if call["eval_every"] and call["eval_fn"] is None:
        notes.append(f"eval_every={call['eval_every']} without eval_fn evaluates nothing; give eval_fn=fn(params)")
    if call["local_learning_rate"] is not None and not spec.local_updates:
        notes.append(
            f"local_learning_rate={call['local_learning_rate']} is read by Downpour clients only (n_fetch or "
            "n_push > 1); this run applies every gradient on the server"
        )
    if spec.kind != "async" and spec.max_staleness >= 0:
        notes.append(f"max_staleness={spec.max_staleness} bounds protocol 'async' only; '{spec.kind}' ignores it")
    if spec.num_workers > 1 and spec.warm_start_steps >= steps:
        notes.append(
            f"warm_start_steps={spec.warm_start_steps} covers all steps={steps}: worker 0 computes every gradient "
            "alone and no step is asynchronous"
        )
    return notes
