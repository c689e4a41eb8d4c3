"""The trace (schedule) of an asynchronous run: what the simulator replays and what the runtime records.

One row per event, in the order the server processed them. An event is worker `worker` finishing its local
step `step` (step -1: a fetch with no step, e.g. a worker joining after warm start):
  push   - the step ends a push: the worker's accumulated gradient joins the server's current group
  apply  - after this event the group is applied as one update (version v_apply -> v_apply + 1)
  fetch  - 0 no fetch, 1 the worker fetches the server parameters now, 2 it fetches when its push is applied
  v_read - the version the worker's parameters came from when it computed this step
  v_apply- for pushes: the version the group was applied to (staleness = v_apply - v_read), else -1
  t_arrive, t_apply - virtual (or wall-clock) times of the step's end and of the apply
The real runtime writes the same columns, so a recorded run replays in the simulator exactly.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

COLUMNS = {
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
    meta: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.worker)

    @classmethod
    def from_rows(cls, rows: list[tuple], num_workers: int, meta: dict | None = None) -> Trace:
        cols = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
        arrays = {name: np.asarray(col, dtype) for (name, dtype), col in zip(COLUMNS.items(), cols, strict=True)}
        return cls(**arrays, num_workers=num_workers, meta=dict(meta or {}))

    def rows(self) -> list[list]:
        """The events as plain Python rows (the inverse of `from_rows`), e.g. to continue a Protocol."""
        cols = [getattr(self, name).tolist() for name in COLUMNS]
        return [list(r) for r in zip(*cols, strict=True)]

    @property
    def staleness(self) -> np.ndarray:
        """Staleness of every pushed gradient, in server versions."""
        return (self.v_apply - self.v_read)[self.push]

    @property
    def num_updates(self) -> int:
        return int(self.apply.sum())

    @property
    def num_gradients(self) -> int:
        return int((self.step >= 0).sum())

    @property
    def virtual_time(self) -> float:
        return float(self.t_apply[self.apply].max()) if self.apply.any() else 0.0

    def stats(self) -> dict:
        """Staleness mean, max and histogram (counts for tau = 0..max), updates, gradients, time."""
        tau = self.staleness
        hist = np.bincount(tau, minlength=1) if len(tau) else np.zeros(1, np.int64)
        return {
            "staleness_mean": float(tau.mean()) if len(tau) else 0.0,
            "staleness_max": int(tau.max()) if len(tau) else 0,
            "staleness_hist": hist.tolist(),
            "updates": self.num_updates,
            "gradients": self.num_gradients,
            "virtual_time": self.virtual_time,
        }

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
        with np.load(path) as d:
            meta = json.loads(str(d["meta"]))
            arrays = {n: d[n].astype(t) for n, t in COLUMNS.items()}
        return cls(**arrays, num_workers=int(meta.pop("num_workers")), meta=meta)
