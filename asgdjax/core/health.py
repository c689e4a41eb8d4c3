"""Is a run still training? Verdicts shared by the trainer and the front door, so no mode reports a run that
went wrong as a success.

- diverged: the training loss is NaN/Inf or above a limit, or the guards rejected most gradients (the
  parameters then stand still while the run looks finite);
- collapsed: held-out accuracy at chance level, or the training loss above its starting value, over
  several evaluations (what momentum plus asynchrony's own implicit momentum does when it is too much);
- for a loss without classes (the front door), `LossSamples`: a loss that ended 1,000x above its value on
  the initial parameters has diverged, one no lower than it (beyond two standard errors) has collapsed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from asgdjax.core.trace import Trace

COLLAPSE_WINDOW = 3  # consecutive evaluations (or logged losses) that must agree
MIN_GRADIENTS_FOR_REJECTION_VERDICT = 20


def divergence(loss: float, *, limit: float, name: str = "max_train_loss") -> str | None:
    """Why a logged training loss means divergence, or None (`name`: the limit's name where it was set)."""
    if not math.isfinite(loss):
        return f"train_loss={loss}"
    if loss > limit:
        return f"train_loss={loss:.4g} (limit {name}={limit:g})"
    return None


def rejection(rejected: int, gradients: int) -> str | None:
    """Why the guards' rejections mean divergence (most gradients rejected), or None."""
    if gradients >= MIN_GRADIENTS_FOR_REJECTION_VERDICT and rejected * 2 > gradients:
        return f"the guards rejected {rejected} of {gradients} gradients (NaN/Inf or too stale)"
    return None


@dataclasses.dataclass
class CollapseDetector:
    """Feed it every logged loss and evaluation; `verdict` says whether the run collapsed."""

    num_classes: int = 0  # 0: no accuracy check (a loss without classes)
    window: int = COLLAPSE_WINDOW
    first_loss: float | None = None
    high_losses: int = 0
    chance_evals: int = 0
    last_accuracy: float | None = None
    warned: bool = False

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes if self.num_classes else 0.0

    def loss(self, value: float) -> None:
        if not math.isfinite(value):
            return
        if self.first_loss is None:
            self.first_loss = value
            return
        self.high_losses = self.high_losses + 1 if value > self.first_loss else 0

    def accuracy(self, value: float) -> None:
        self.last_accuracy = value
        at_chance = self.num_classes > 0 and value <= 1.5 * self.chance
        self.chance_evals = self.chance_evals + 1 if at_chance else 0

    def verdict(self, *, final: bool = False) -> str | None:
        """A one-line reason when collapsed (`final`: the last evaluation alone may decide), else None."""
        if self.chance_evals >= self.window or (final and self.chance_evals >= 1):
            return (
                f"test accuracy {self.last_accuracy:.4f} is at chance level (1/{self.num_classes} classes) over "
                f"{self.chance_evals} evaluation(s)"
            )
        if self.high_losses >= self.window:
            return (
                f"the training loss stayed above its first logged value {self.first_loss:.4g} for the "
                f"{self.high_losses} logged values since"
            )
        return None


EXPLODED = 1e3  # a final loss this many times the starting loss has diverged, not merely failed to train


class LossSamples(NamedTuple):
    """Per-gradient training losses at the start (computed on the initial parameters) and at the end (the
    last tenth of the run): what the verdict compares."""

    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, losses: np.ndarray, trace: Trace) -> LossSamples:
        """From a run's per-gradient losses in trace order (each worker's step 0 read the initial version)."""
        finite = losses[np.isfinite(losses)]
        if len(losses) != trace.num_gradients or not len(finite):
            return cls(finite[:1], finite[-1:])
        computed = trace.step >= 0
        at_start = (trace.v_read[computed] == 0) & (trace.step[computed] == 0)  # each worker's first step on w0
        start = losses[at_start]
        start = start[np.isfinite(start)]
        return cls(start if len(start) else finite[:1], finite[-max(1, len(finite) // 10) :])

    def no_progress(self) -> str | None:
        """Why the run made no progress (its end no lower than its start beyond two standard errors), or None.
        The noise is the end's spread between gradients (a stalled run's losses at the start look alike)."""
        a, b = float(np.mean(self.start)), float(np.mean(self.end))
        noise = float(np.var(self.end)) if len(self.end) > 1 else 0.0
        se = math.sqrt(noise * (1 / len(self.start) + 1 / len(self.end)))
        if b < a - 2 * se:
            return None
        return (
            f"the training loss made no clear progress: {b:.4g} over the last {len(self.end)} gradient(s) (spread "
            f"{math.sqrt(noise):.3g}) against {a:.4g} on the initial parameters ({len(self.start)} gradient(s))"
        )

    def exploded(self) -> str | None:
        """Why the loss exploded (ended EXPLODED times above a positive start), or None."""
        a, b = float(np.mean(self.start)), float(np.mean(self.end))
        if a > 0 and b > EXPLODED * a:
            return f"train_loss={b:.4g} at the end, {b / a:.3g}x its value {a:.4g} on the initial parameters"
        return None


ADVICE = (
    "asynchrony adds its own momentum (Mitliagkas et al. 2016): lower momentum or learning_rate, keep "
    "momentum_compensation='staleness', or use a staleness rule (rule=staleness_lr)"
)
