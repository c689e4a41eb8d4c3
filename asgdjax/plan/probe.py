"""The planner's evaluation point: is the test accuracy at or above the target, and if so exactly what?

Most of a search's evaluation points are below the target, many of them only just (a lane near its plateau
is evaluated every budget/evals clock seconds), and scoring all 10,000 MNIST examples at each cost as
much as the simulation itself. A probe scores the split in parts and stops as soon as the examples so
far make a hit implausible: an exact one-sided hypergeometric test at level ALPHA (the unscored
examples are a random subset of a fixed population). Because a network's errors concentrate on a few
hard examples, the probe first scores HARD examples that recent complete evaluations got wrong most
often, exactly, and then tests only the rest, where a candidate near the target makes almost no errors:
a point just below the target is rejected after a few hundred of them instead of most of the split.
What a probe returns is always the whole split's accuracy, counted exactly; None means "below the target"
(wrong with probability at most ALPHA for a point that is at or above it).
"""

from __future__ import annotations

import collections
import math
from typing import Any

import jax
import numpy as np
from scipy.stats import hypergeom

HARD = 1000  # examples scored first: those recent complete evaluations got wrong most often
HARD_PARTS = 2  # in this many parts, most often wrong first (a point far below stops after the first)
STAGES = (250, 500, 1000, 2000, 3000, 5000, 7000)  # of the other examples (a fixed random order) before the rest
ALPHA = 2e-6  # the most a point at or above the target may be reported below it, per point
WINDOW = 8  # complete evaluations whose errors choose the hard examples
RELAYOUT = 0.1  # re-lay the parts once this share of the hard examples has changed (each re-lay copies the split)


class Probe:
    """Staged, stratified test accuracy of `task` on the resident test split of `data` against `target`."""

    def __init__(self, task: Any, data: Any, target: float) -> None:
        self.task, self.data, self.target = task, data, target
        n = len(data["test_y"]) if isinstance(data, dict) and "test_y" in data else 0
        self.n = n if n >= 4 * STAGES[0] else 0  # 0: too small (or not resident) to stage; score it whole
        self.order = np.random.default_rng(0).permutation(self.n)  # a fixed random order of the examples
        self._rank = np.argsort(self.order)  # each example's place in that order (breaks ties between the hard)
        self._host = {k: np.asarray(data[k]) for k in ("test_x", "test_y")} if self.n else {}
        self.need = needed(target, self.n)
        self.per_example = hasattr(task, "correct")
        self._errors: collections.deque = collections.deque(maxlen=WINDOW)  # recent complete evaluations' misses
        self._hard: np.ndarray = np.zeros(0, np.int64)
        self._index: np.ndarray = self.order  # the example behind each position of the parts, in order
        self.parts: list[dict] = self._layout()

    def accuracy(self, params: Any, *, full: bool) -> float | None:
        """The whole split's accuracy, or None once the examples scored so far reject a hit. `full`: score
        every part (a rung's last evaluation, which ranks the candidates)."""
        if not self.n:
            return float(self.task.evaluate(params, self.data)["test_accuracy"])
        hard, right = len(self._hard), []
        rest, need, correct, seen = self.n - hard, self.need, 0, 0
        for i, part in enumerate(self.parts):
            ok = self._score(params, part)
            right.append(ok)
            if i < self._hard_parts():  # scored exactly: what the others must still make up
                need, hard = need - int(ok.sum()), hard - len(ok)
                if not full and need > rest + hard:
                    return None
                continue
            correct, seen = correct + int(ok.sum()), seen + len(ok)
            if not full and seen < rest and rejects(correct, seen, need, rest):
                return None
        if self.per_example:
            self._learn(np.concatenate(right))
        return (self.need - need + correct) / self.n

    def _score(self, params: Any, part: dict) -> np.ndarray:
        """Per example of `part`, right or not (from the accuracy when the task has no `correct`)."""
        if self.per_example:
            return np.asarray(self.task.correct(params, part), bool)
        m = len(part["test_y"])
        k = round(float(self.task.evaluate(params, part)["test_accuracy"]) * m)
        return np.arange(m) < k  # only the count is used then

    def _learn(self, right: np.ndarray) -> None:
        """Record a complete evaluation's misses; re-lay the parts when the hard examples change."""
        self._errors.append(self._index[~right])
        counts = np.zeros(self.n, np.int64)
        for wrong in self._errors:
            counts[wrong] += 1
        hard = np.lexsort((self._rank, -counts))[: min(HARD, self.n // 4)]  # most often wrong first, then fixed order
        changed = len(hard) - len(np.intersect1d(hard, self._hard))
        if changed > RELAYOUT * len(hard):
            self._hard = hard
            self.parts = self._layout()

    def _layout(self) -> list[dict]:
        """The hard examples (if any yet) in HARD_PARTS parts, most often wrong first, then the rest in the
        fixed order cut at STAGES."""
        if not self.n:
            return []
        rest = self.order[~np.isin(self.order, self._hard)] if len(self._hard) else self.order
        ends = [s for s in STAGES if s < len(rest)] + [len(rest)]
        hard = np.array_split(self._hard, HARD_PARTS) if self._hard_parts() else []
        pieces = [np.sort(p) for p in [*hard, *np.split(rest, ends[:-1])]]
        self._index = np.concatenate(pieces)
        return [self._take(p) for p in pieces]

    def _hard_parts(self) -> int:
        """How many of the parts hold hard examples (none before the first complete evaluation)."""
        return HARD_PARTS if len(self._hard) else 0

    def _take(self, idx: np.ndarray) -> dict:
        """The examples `idx` as a resident split of their own (gathered on the host, one transfer each)."""
        return {**self.data, **{k: jax.device_put(v[idx]) for k, v in self._host.items()}}


def needed(target: float, n: int) -> int:
    """The fewest right examples out of n whose accuracy (k / n, as the planner compares it) reaches
    `target`."""
    if n <= 0:
        return 0
    k = max(0, min(n + 1, math.ceil(target * n)))
    while k > 0 and (k - 1) / n >= target:
        k -= 1
    while k <= n and k / n < target:
        k += 1
    return k


def rejects(correct: int, seen: int, need: int, population: int) -> bool:
    """Whether `correct` right among `seen` examples drawn without replacement from `population` makes it
    implausible (probability below ALPHA) that the population holds at least `need` right ones; the
    hypergeometric tail at exactly `need` bounds every larger count."""
    if need > population:
        return True  # even every remaining example right would not reach the target
    if need <= 0 or seen <= 0:
        return False
    return bool(hypergeom.cdf(correct, population, need, seen) < ALPHA)
