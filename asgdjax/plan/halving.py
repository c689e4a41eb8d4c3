"""Successive halving on simulated time (Jamieson & Talwalkar 2016; Li et al. 2017's Hyperband bracket):
every candidate trains to the first rung's time budget, the best 1/eta continue to the next rung, and so
on until the full budget. The budget is virtual (clock) seconds, not gradients, so candidates with more
workers or cheaper communication get the gradients they would really compute in that time, and the
objective (time to target accuracy) is compared at equal cost."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

C = TypeVar("C")


class Score(NamedTuple):
    """How a candidate did within a time budget."""

    seconds_to_target: float | None  # first evaluation at or above the target (clock seconds); None: not yet
    accuracy: float  # test accuracy where its training so far ends (the whole split; a lane stops at its target)
    gradients: int  # gradients computed within the budget
    diverged: bool = False

    def rank(self) -> tuple[int, float]:
        """Sort key, best first: reached the target (sooner is better), then not yet (higher accuracy is
        better), then diverged."""
        if self.diverged:
            return 2, 0.0
        if self.seconds_to_target is not None:
            return 0, self.seconds_to_target
        return 1, -self.accuracy


class Rung(NamedTuple):
    seconds: float  # the rung's time budget
    scores: list  # [(candidate, Score)] of every candidate that trained to this rung, best first


def default_rungs(candidates: int, eta: int) -> int:
    """floor(log_eta(n)) + 1 rungs for n candidates (Li et al. 2017, Hyperband's most aggressive bracket):
    the last rung trains fewer than eta candidates, and every rung costs about the same clock time in all
    (n/eta^r candidates x budget/eta^(R-1-r)), a full run's worth each, so the search costs a few runs."""
    rungs = 1
    while eta**rungs <= candidates:
        rungs += 1
    return rungs


def rung_times(budget: float, eta: int, rungs: int, *, start: float = 0.0) -> list[float]:
    """start + (budget - start) / eta^(rungs-1), ..., start + (budget - start) / eta, budget: the rungs
    divide the time after `start` (a warm start's end, before which candidates do not differ)."""
    start = start if 0.0 <= start < budget else 0.0
    return [start + (budget - start) / eta ** (rungs - 1 - r) for r in range(rungs)]


def successive_halving(
    candidates: Sequence[C],
    advance: Callable[[C, float], Score],
    times: Sequence[float],
    *,
    eta: int,
    progress: Callable[[str], None] = lambda s: None,
) -> list[Rung]:
    """Train every candidate to times[0], keep the best ceil(n / eta), train those to times[1], ...

    advance(candidate, seconds) continues that candidate's run to `seconds` and scores it (runs resume:
    a candidate's later rungs cost only the time they add). Returns every rung, best first.
    """
    alive = list(candidates)
    rungs = []
    for r, t in enumerate(times):
        progress(f"rung {r + 1}/{len(times)}: {len(alive)} candidate(s) to {t:.4g} clock seconds")
        scored = sorted(((c, advance(c, t)) for c in alive), key=lambda cs: cs[1].rank())
        rungs.append(Rung(t, scored))
        keep = max(1, math.ceil(len(scored) / eta))
        alive = [c for c, s in scored[:keep] if not s.diverged] or [scored[0][0]]
    return rungs
