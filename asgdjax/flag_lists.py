"""Comma-separated flag values (`--workers=1,2,4,8`, `--learning_rates=0.05,0.1`), parsed one way for every
tool: the first bad entry is a ConfigError naming the flag, the entry and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgdjax.errors import ConfigError

T = TypeVar("T", int, float)


def items(flag: str, text: str, *, unique: bool = True) -> list[str]:
    """The stripped entries of `text` in order: at least one, none empty (`1,,2` is a typo more often than a
    list of two), and, when `unique` (a set of choices, not a list of per-worker values), none twice."""
    out = [t.strip() for t in text.split(",")]
    if not any(out):
        raise ConfigError(f"--{flag}={text!r} is not allowed; give at least one comma-separated value")
    if not all(out):
        raise ConfigError(f"--{flag}={text!r} has an empty entry; give comma-separated values, e.g. 1,2,4")
    if unique:
        once(flag, out, out)
    return out


def once(flag: str, texts: list[str], values: list) -> None:
    """Refuse a value given twice (as `0.1,0.1` or `0.1,0.10`): it would be searched or run once, silently."""
    for i, value in enumerate(values):
        if value in values[:i]:
            first = texts[values.index(value)]
            same = f" ({first!r} and {texts[i]!r})" if first != texts[i] else ""
            raise ConfigError(f"--{flag} gives {value!r} twice{same}; give each value once")


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
    if unique:
        once(flag, [t.strip() for t in text.split(",")], out)
    return out


def positive_ints(flag: str, text: str) -> list[int]:
    """Counts (workers, clients, n_sync): integers >= 1."""
    return numbers(flag, text, int, allowed="integers >= 1", ok=lambda x: x >= 1)
