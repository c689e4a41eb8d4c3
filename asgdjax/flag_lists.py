"""Comma-separated flag values (`--workers=1,2,4,8`, `--learning_rates=0.05,0.1`), parsed one way for every
tool: the first bad entry is a ConfigError naming the flag, the entry and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgdjax.errors import ConfigError

T = TypeVar("T", int, float)


def items(flag: str, text: str, *, unique: bool = True) -> list[str]:
    """The stripped entries of `text` in order, each once (all of them when not `unique`: a list of per-worker
    values); at least one, and none empty (`1,,2` is a typo more often than a list of two)."""
    out = [t.strip() for t in text.split(",")]
    if not any(out):
        raise ConfigError(f"--{flag}={text!r} is not allowed; give at least one comma-separated value")
    if not all(out):
        raise ConfigError(f"--{flag}={text!r} has an empty entry; give comma-separated values, e.g. 1,2,4")
    return list(dict.fromkeys(out)) if unique else out


def numbers(
    flag: str, text: str, kind: Callable[[str], T], *, allowed: str, ok: Callable[[T], bool], unique: bool = True
) -> list[T]:
    """The entries of `text` as `kind` (int or float), each passing `ok`; `allowed` says which pass."""
    out = []
    for t in items(flag, text, unique=unique):
        try:
            x = kind(t)
        except ValueError:
            raise ConfigError(f"--{flag} entry {t!r} is not allowed; use comma-separated {allowed}") from None
        if not ok(x):
            raise ConfigError(f"--{flag} entry {t!r} is not allowed; use comma-separated {allowed}")
        out.append(x)
    return out


def positive_ints(flag: str, text: str) -> list[int]:
    """Counts (workers, clients, n_sync): integers >= 1."""
    return numbers(flag, text, int, allowed="integers >= 1", ok=lambda x: x >= 1)
