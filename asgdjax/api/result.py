"""What `asgdjax.simulate` and `asgdjax.run_async` return: the same record for a simulated and a real run."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from asgdjax.core.task import Params
from asgdjax.core.trace import Trace, TraceStats
from asgdjax.errors import ConfigError


class History(NamedTuple):
    """The training curve: mean training loss per `log_every` gradients, and the evaluations."""

    step: np.ndarray  # gradients computed at each log point
    train_loss: np.ndarray  # mean loss of the gradients since the previous log point
    evals: list[tuple[int, dict[str, float]]]  # (gradients, eval_fn's metrics)


class Rejections(NamedTuple):
    """Gradients the server's guards left out: NaN/Inf, staler than staleness_cap; per worker [nonfinite, stale]."""

    nonfinite: int
    stale: int
    per_worker: list[list[int]]

    @property
    def total(self) -> int:
        return self.nonfinite + self.stale


@dataclasses.dataclass(frozen=True)
class Result:
    """Final parameters, the curve, the trace (replayable: pass it back as `trace=`), staleness statistics,
    the guards' rejections, and a verdict: ok, diverged or collapsed, with the reason."""

    params: Params
    history: History
    trace: Trace
    stats: TraceStats
    rejected: Rejections
    updates: int
    status: str  # "ok" | "diverged" | "collapsed"
    reason: str
    wall_seconds: float
    source: str  # "simulator" | "runtime"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def final_loss(self) -> float:
        """The mean training loss over the last `log_every` gradients (NaN when none was logged)."""
        return float(self.history.train_loss[-1]) if len(self.history.train_loss) else float("nan")

    @property
    def seconds(self) -> float:
        """Run length on the trace's clock: virtual seconds for a simulation, wall seconds for a real run."""
        return self.stats.virtual_time

    def __repr__(self) -> str:
        s = self.stats
        what = f"{self.source}: {self.trace.num_workers} workers, {s.gradients:,} gradients, {self.updates:,} updates"
        if self.updates and s.gradients > self.updates:  # groups, Downpour pushes, or pushes the SSP bound held
            what += f" ({s.gradients / self.updates:.3g} gradients per update: {grouped_by(self.trace.meta)})"
        if self.rejected.total:  # the version counts server decisions, a rejected gradient's (no change) too
            what += (
                f" ({self.rejected.total:,} gradients rejected; an update of rejected gradients only changes nothing)"
            )
        lines = [
            f"Result({what}",
            f"  status {self.status}" + (f" ({self.reason})" if self.reason else ""),
            f"  final train loss {self.final_loss:.6g}",
            f"  staleness mean {s.staleness_mean:.2f}, max {s.staleness_max}",
            f"  rejected {self.rejected.nonfinite} non-finite, {self.rejected.stale} stale",
            f"  {self.seconds:.4g} s on the {'virtual' if self.source == 'simulator' else 'wall'} clock, "
            f"{self.wall_seconds:.3g} s wall)",
        ]
        for step, metrics in self.history.evals[-1:]:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            lines.insert(3, f"  last eval (gradient {step}): {shown}")
        return "\n".join(lines)


def grouped_by(meta: dict) -> str:
    """What makes one server update apply several gradients, from a trace's protocol record."""
    kind = meta.get("protocol", "async")
    if kind in ("sync", "softsync"):
        return f"{kind} groups"
    if int(meta.get("n_push", 1)) > 1:
        return f"Downpour pushes of {meta['n_push']} local steps"
    if int(meta.get("max_staleness", -1)) >= 0:
        return "pushes held by the staleness bound are applied together"
    return "grouped pushes"


def history_from_losses(losses: np.ndarray, log_every: int, evals: list) -> History:
    """Block means of per-gradient losses (in gradient order) every `log_every` gradients."""
    n = len(losses)
    ends = list(range(log_every, n + 1, log_every))
    if not ends or ends[-1] != n:
        ends.append(n)
    starts = [0, *ends[:-1]]
    means = [float(np.mean(losses[a:b])) if b > a else float("nan") for a, b in zip(starts, ends, strict=True)]
    return History(np.asarray(ends, np.int64), np.asarray(means, np.float64), evals)


def rejections(rejected: Any) -> Rejections:
    r = np.asarray(rejected)
    return Rejections(int(r[:, 0].sum()), int(r[:, 1].sum()), r.tolist())


def as_metrics(value: dict | float) -> dict[str, float]:
    """An eval_fn's answer as named floats (a bare number is called "eval")."""
    try:
        if isinstance(value, dict):
            return {str(k): float(v) for k, v in value.items()}
        return {"eval": float(value)}
    except (TypeError, ValueError):
        raise ConfigError(
            f"eval_fn returned {value!r}; return a number or a dict of numbers, e.g. {{'accuracy': 0.97}}"
        ) from None
