"""Is a run still training? Verdicts shared by the trainer and the front door, so no mode reports a run that
went wrong as a success.

- diverged: the training loss is NaN/Inf or above a limit, or the guards rejected most gradients (the
  parameters then stand still while the run looks finite);
- collapsed: held-out accuracy at chance level, or the training loss above its starting value, over
  several evaluations (what momentum plus asynchrony's own implicit momentum does when it is too much).
"""

from __future__ import annotations

import dataclasses
import math

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


ADVICE = (
    "asynchrony adds its own momentum (Mitliagkas et al. 2016): lower momentum or learning_rate, keep "
    "momentum_compensation='staleness', or use a staleness rule (rule=staleness_lr)"
)
