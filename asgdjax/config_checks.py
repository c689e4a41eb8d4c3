"""The checks every config validator uses, each raising ConfigError with one line: key, value, allowed."""

from __future__ import annotations

import math

from asgdjax.errors import ConfigError


def choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {key} {value!r}; allowed: {', '.join(allowed)}")


def int_at_least(key: str, value, lowest: int, allowed: str) -> None:
    """An integer (not a bool) >= lowest; `allowed` says so in words for the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ConfigError(f"{key}={value!r} is not allowed; use {allowed}")


def finite_positive(key: str, value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} is not allowed; use a finite number > 0")


def dotted(config: dict, prefix: str = "") -> dict:
    """{"delay": {"mean": 1}} -> {"delay.mean": 1}: nested config keys as the command line names them."""
    flat = {}
    for k, v in config.items():
        if isinstance(v, dict):
            flat.update(dotted(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
