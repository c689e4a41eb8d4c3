"""The planner's answer: per worker count, the best candidate re-run over seeds; the Pareto front of time
to target against workers (a row is on it when no configuration with fewer workers is as fast); the
recommendation (the fastest row) and the command line that runs it for real."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from asgdjax.plan.halving import Score
from asgdjax.plan.space import Candidate


class FrontRow(NamedTuple):
    """A worker count's best candidate over seeds."""

    candidate: Candidate
    scores: tuple[Score, ...]  # one per seed run (search stops at the first seed that misses the target)
    steps: int  # gradients within the budget (the recommended --config.steps)
    trained_seconds: float = math.inf  # clock seconds its bracket trained to (the budget, or less: search.BEAT_MARGIN)

    @property
    def workers(self) -> int:
        return self.candidate.workers

    @property
    def reached(self) -> bool:
        """Every seed reached the target within the budget."""
        return all(s.seconds_to_target is not None for s in self.scores)

    @property
    def seconds(self) -> float | None:
        """Mean clock seconds to the target over seeds (None unless every seed reached it)."""
        times = self._times()
        return float(np.mean(times)) if times is not None else None

    @property
    def spread(self) -> float | None:
        """Standard deviation of those seconds over seeds: how sure the prediction is."""
        times = self._times()
        return float(np.std(times)) if times is not None else None

    def _times(self) -> list[float] | None:
        times = [s.seconds_to_target for s in self.scores]
        return [t for t in times if t is not None] if self.reached else None

    @property
    def accuracy(self) -> float:
        return float(np.mean([s.accuracy for s in self.scores]))

    def to_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "candidate": self.candidate.name,
            "overrides": {k: v for k, v in self.candidate.overrides().items()},
            "steps": self.steps,
            "seconds_to_target": self.seconds,
            "seconds_spread": self.spread,
            "seconds_per_seed": [s.seconds_to_target for s in self.scores],
            "accuracy_mean": self.accuracy,
            "diverged_seeds": sum(s.diverged for s in self.scores),
            "trained_seconds": self.trained_seconds if math.isfinite(self.trained_seconds) else None,
        }


def pareto_front(rows: list[FrontRow]) -> list[FrontRow]:
    """Rows (by workers) that reach the target faster than every row with fewer workers."""
    front, best = [], float("inf")
    for r in sorted(rows, key=lambda r: r.workers):
        if r.seconds is not None and r.seconds < best:
            front.append(r)
            best = r.seconds
    return front


def recommend(rows: list[FrontRow]) -> FrontRow:
    """The fastest row to the target; when none reached it, the most accurate one."""
    reached = [r for r in rows if r.seconds is not None]
    if reached:
        return min(reached, key=lambda r: (r.seconds, r.workers))
    return max(rows, key=lambda r: r.accuracy)


def command(
    row: FrontRow,
    config_path: str,
    base: Any,
    *,
    user_flags: Sequence[str] = (),
    mode: str = "async",
    workdir: str = "runs/recommended",
) -> str:
    """The asgdjax-train command line that runs `row`: the user's own --config.KEY flags (but those the plan
    sets otherwise), then the candidate's keys that differ from `base` (the config the user's flags made),
    then the steps of the budget. A user's flag the candidate agrees with stays: without it the run would
    take the config file's value (`--config.momentum=0.9` was dropped so, and ran at the file's 0.5)."""
    args = [f"--config={config_path}", f"--config.mode={mode}", f"--config.num_workers={row.workers}"]
    differ = row.candidate.changes(base)
    fixed = {"mode", "num_workers", "steps", *differ}
    args += [f for f in user_flags if f.startswith("--config.") and f[9:].partition("=")[0] not in fixed]
    for key, value in differ.items():
        args.append(f"--config.{key}={value:g}" if isinstance(value, float) else f"--config.{key}={value}")
    args += [f"--config.steps={row.steps}", f"--workdir={workdir}"]
    return "asgdjax-train " + " ".join(shlex.quote(a) for a in args)
