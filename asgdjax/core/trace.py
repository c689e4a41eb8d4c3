"""The trace (schedule) of an asynchronous run: what the simulator replays and what the runtime records.

One `Row` per event, in the order the server processed them. An event is worker `worker` finishing its
local step `step` (step -1: a fetch with no step, e.g. a worker joining after a warm start or restarting):
  push    - the step ends a push: the worker's accumulated gradient joins the server's current group
  apply   - after this event the group is applied as one update (version v_apply -> v_apply + 1)
  fetch   - `Fetch`: NONE, NOW (the worker fetches the server parameters now) or ON_APPLY (when its push
            is applied)
  v_read  - the version the worker's parameters came from when it computed this step
  v_apply - for pushes: the version the group was applied to (staleness = v_apply - v_read), else -1
  t_arrive, t_apply - virtual (or wall-clock) seconds of the step's end and of the apply
The real runtime writes the same columns, so a recorded run replays in the simulator exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, NamedTuple

import numpy as np

from asgdjax.errors import ConfigError


class Fetch(enum.IntEnum):
    """When an event's worker copies the server's parameters."""

    NONE = 0
    NOW = 1
    ON_APPLY = 2


class Row(NamedTuple):
    """One trace event (the columns of `Trace`, in order)."""

    worker: int
    step: int
    push: bool
    apply: bool
    fetch: int  # a Fetch
    v_read: int
    v_apply: int
    t_arrive: float
    t_apply: float

    @classmethod
    def fetch_only(cls, worker: int, version: int, t: float) -> Row:
        """A worker copies the server's parameters without computing (a join or a restart); it also drops
        gradients it accumulated but never pushed."""
        return cls(worker, -1, False, False, Fetch.NOW, version, -1, t, t)


COLUMNS: dict[str, type] = {
    "worker": np.int32,
    "step": np.int32,
    "push": np.bool_,
    "apply": np.bool_,
    "fetch": np.int8,
    "v_read": np.int32,
    "v_apply": np.int32,
    "t_arrive": np.float64,
    "t_apply": np.float64,
}
assert tuple(COLUMNS) == Row._fields


class TraceStats(NamedTuple):
    """What a schedule says on its own: staleness, update and gradient counts, virtual seconds."""

    staleness_mean: float
    staleness_max: int
    staleness_hist: list[int]  # counts for tau = 0..max
    updates: int
    gradients: int
    virtual_time: float  # seconds on the trace's clock

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


@dataclasses.dataclass(frozen=True)
class Trace:
    worker: np.ndarray
    step: np.ndarray
    push: np.ndarray
    apply: np.ndarray
    fetch: np.ndarray
    v_read: np.ndarray
    v_apply: np.ndarray
    t_arrive: np.ndarray
    t_apply: np.ndarray
    num_workers: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.worker)

    @classmethod
    def from_rows(cls, rows: list[Row], num_workers: int, meta: dict[str, Any] | None = None) -> Trace:
        cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
        arrays: dict[str, np.ndarray] = {n: np.asarray(c, t) for (n, t), c in zip(COLUMNS.items(), cols, strict=True)}
        return cls(**arrays, num_workers=num_workers, meta=dict(meta or {}))

    def rows(self) -> list[Row]:
        """The events as typed rows (the inverse of `from_rows`), e.g. to continue a Protocol."""
        cols = [getattr(self, name).tolist() for name in COLUMNS]
        return [Row(*r) for r in zip(*cols, strict=True)]

    @property
    def staleness(self) -> np.ndarray:
        """Staleness of every pushed gradient, in server versions."""
        tau: np.ndarray = (self.v_apply - self.v_read)[self.push]
        return tau

    @property
    def num_updates(self) -> int:
        return int(self.apply.sum())

    @property
    def num_gradients(self) -> int:
        return int((self.step >= 0).sum())

    @property
    def virtual_time(self) -> float:
        return float(self.t_apply[self.apply].max()) if self.apply.any() else 0.0

    def group_sizes(self) -> np.ndarray:
        """Pushes per applied update, in order (1 everywhere for plain A-SGD)."""
        pushes = np.cumsum(self.push)[self.apply]
        return np.diff(np.concatenate([[0], pushes]))

    def stats(self) -> TraceStats:
        tau = self.staleness
        hist = np.bincount(tau, minlength=1) if len(tau) else np.zeros(1, np.int64)
        return TraceStats(
            staleness_mean=float(tau.mean()) if len(tau) else 0.0,
            staleness_max=int(tau.max()) if len(tau) else 0,
            staleness_hist=hist.tolist(),
            updates=self.num_updates,
            gradients=self.num_gradients,
            virtual_time=self.virtual_time,
        )

    def slice(self, stop: int) -> Trace:
        """The first `stop` events (a prefix is itself a valid trace if it ends on an apply)."""
        arrays = {name: getattr(self, name)[:stop] for name in COLUMNS}
        return Trace(**arrays, num_workers=self.num_workers, meta=self.meta)

    def save(self, path: str) -> None:
        """npz with one array per column plus `meta` as JSON (the format the runtime writes too)."""
        meta = {**self.meta, "num_workers": self.num_workers}
        np.savez_compressed(path, **{n: getattr(self, n) for n in COLUMNS}, meta=json.dumps(meta))

    @classmethod
    def load(cls, path: str) -> Trace:
        """Read a trace written by `save`; anything unreadable or inconsistent is one ConfigError line."""
        try:
            with open(path, "rb") as f:  # np.load reads any other file as a pickle and says so
                if f.read(4) != b"PK\x03\x04":
                    raise ValueError("not an .npz archive")
            with np.load(path, allow_pickle=False) as d:
                meta = json.loads(str(d["meta"]))
                arrays = {n: np.asarray(d[n]) for n in COLUMNS}
        except FileNotFoundError:
            raise ConfigError(f"trace {path!r} does not exist; give a trace.npz written by a run") from None
        except Exception as e:  # noqa: BLE001 (zip, json, key and format errors all mean a damaged file)
            raise ConfigError(
                f"trace {path!r} cannot be read ({type(e).__name__}: {_short(e)}); expected the trace.npz a run "
                f"writes (columns {', '.join(COLUMNS)} and meta)"
            ) from None
        return _checked(path, arrays, meta)

    def check(self, name: str = "trace") -> None:
        """Raise ConfigError (one line) unless the columns describe a consistent trace."""
        _check_columns(name, {n: getattr(self, n) for n in COLUMNS}, self.num_workers)


def _short(e: Exception, limit: int = 120) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text[:limit]


def _checked(path: str, arrays: dict[str, np.ndarray], meta: Any) -> Trace:
    if not isinstance(meta, dict) or not isinstance(meta.get("num_workers"), int) or meta["num_workers"] < 1:
        raise ConfigError(f"trace {path!r} has no valid num_workers in its meta; expected a trace.npz a run wrote")
    k = meta.pop("num_workers")
    _check_columns(f"trace {path!r}", arrays, k)
    typed: dict[str, np.ndarray] = {n: arrays[n].astype(t) for n, t in COLUMNS.items()}
    return Trace(**typed, num_workers=k, meta=meta)


def _check_columns(name: str, arrays: dict[str, np.ndarray], num_workers: int) -> None:
    """Lengths, dtypes, worker range, flags, and unique (worker, step) keys."""
    lengths = {n: a.shape for n, a in arrays.items()}
    n = len(arrays["worker"])
    if any(s != (n,) for s in lengths.values()):
        raise ConfigError(f"{name} has columns of different shapes {lengths}; expected one row per event")
    for col, dtype in COLUMNS.items():
        kind = np.dtype(dtype).kind
        got = arrays[col].dtype.kind
        ok = (
            got == kind
            or (kind == "f" and got in "iu")
            or (kind == "i" and got in "iu")
            or (kind == "b" and got in "iub")
        )
        if not ok:
            raise ConfigError(f"{name} column {col!r} has dtype {arrays[col].dtype}; expected {np.dtype(dtype)}")
    w, s = arrays["worker"].astype(np.int64), arrays["step"].astype(np.int64)
    if n and (w.min() < 0 or w.max() >= num_workers):
        raise ConfigError(
            f"{name} names worker {int(w.max() if w.max() >= num_workers else w.min())}; allowed: 0..{num_workers - 1}"
        )
    if n and s.min() < -1:
        raise ConfigError(f"{name} has step {int(s.min())}; allowed: -1 (fetch only) or >= 0")
    fetch = arrays["fetch"].astype(np.int64)
    if n and (fetch.min() < 0 or fetch.max() > 2):
        raise ConfigError(f"{name} has fetch value {int(fetch.max())}; allowed: 0, 1, 2")
    for col in ("t_arrive", "t_apply"):
        if n and not np.all(np.isfinite(arrays[col].astype(np.float64))):
            raise ConfigError(f"{name} column {col!r} holds a non-finite time; expected seconds")
    keys = w[s >= 0] * (2**32) + s[s >= 0]
    if len(np.unique(keys)) != len(keys):
        raise ConfigError(f"{name} repeats a (worker, step) key; every gradient must appear once")
    v_read, v_apply = arrays["v_read"].astype(np.int64), arrays["v_apply"].astype(np.int64)
    bad = arrays["push"].astype(bool) & (v_apply >= 0) & (v_apply < v_read)
    if bad.any():
        raise ConfigError(f"{name} has a push applied before the version it read (negative staleness)")
