"""A grid of configurations from `--sweep.KEY=v1,v2,...` arguments: parsed against the base config's types,
crossed into points, and grouped by the compiled program they need (members of one group differ only in
what the simulator takes as data: learning rate, momentum, seed, delays, warm start, staleness bound)."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any, NamedTuple

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.errors import ConfigError
from asgdjax.flag_lists import items, once

PREFIX = "--sweep."
# Keys that change only the schedule, the initial parameters or the hyperparameters the simulator takes as
# data: configurations differing only in these share one compiled program (one vmapped sweep).
DATA_KEYS = ("learning_rate", "local_learning_rate", "momentum", "seed", "warm_start_steps", "fail_at", "max_staleness")


class Point(NamedTuple):
    """One grid point: its overrides (in the order given) and its name (also its workdir's name)."""

    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.overrides.items()) or "base"


def split_argv(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the other arguments, [(key, "v1,v2,...")]) from a command line holding --sweep.KEY=VALUES."""
    rest: list[str] = []
    sweeps: list[tuple[str, str]] = []
    for arg in argv:
        if arg.startswith(PREFIX):
            key, sep, values = arg[len(PREFIX) :].partition("=")
            if not sep or not key or not values:
                raise ConfigError(f"{arg!r} is not allowed; use --sweep.KEY=v1,v2,... (a config key and its values)")
            if key in dict(sweeps):
                raise ConfigError(f"--sweep.{key} is given twice; give its values once, e.g. --sweep.{key}=v1,v2")
            sweeps.append((key, values))
        else:
            rest.append(arg)
    return rest, sweeps


def grid(config: Any, sweeps: list[tuple[str, str]]) -> list[Point]:
    """Every combination of the swept values, each parsed to the type of the config's value."""
    if not sweeps:
        raise ConfigError(
            "nothing to sweep; give at least one --sweep.KEY=v1,v2,... (e.g. --sweep.learning_rate=0.01,0.05)"
        )
    axes = []
    for key, values in sweeps:
        default = _lookup(config, key)
        texts = items(f"sweep.{key}", values)
        parsed = [_parse(key, v, default) for v in texts]
        once(f"sweep.{key}", texts, parsed)  # 0.1,0.10 would run one point, silently
        axes.append([(key, v) for v in parsed])
    return [Point(dict(combo)) for combo in itertools.product(*axes)]


def apply(config: Any, point: Point) -> Any:
    """A copy of `config` with the point's overrides (dotted keys reach nested dicts)."""
    c = copy.deepcopy(config)
    for key, value in point.overrides.items():
        *path, leaf = key.split(".")
        node = c
        for p in path:
            node = node[p]
        node[leaf] = value
    return c


def program_key(config: Any) -> str:
    """What a configuration's compiled simulator program depends on (equal keys: one vmapped group)."""
    d = json.loads(json.dumps(config.to_dict()))
    for key in DATA_KEYS:
        d.pop(key, None)
    delay = d.pop("delay", {})
    spec = ProtocolSpec.from_config(config)
    d["_group_size"], d["_ring"] = spec.group_size, delay.get("kind") == "uniform_staleness"
    return json.dumps(d, sort_keys=True)


def _lookup(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise ConfigError(
                f"unknown config key {key!r} in --sweep.{key}; allowed: the keys of asgdjax/configs/base.py"
            )
        node = node[part]
    if hasattr(node, "keys"):
        raise ConfigError(
            f"--sweep.{key} names a group of keys; sweep one of them, e.g. --sweep.{key}.{next(iter(node))}"
        )
    return node


def _parse(key: str, text: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        return kind(text) if kind in (int, float) else text
    except ValueError:
        raise ConfigError(f"--sweep.{key} value {text!r} is not allowed; use {kind.__name__} values") from None
