"""What every mode shares while it runs: progress bar, periodic logging and evaluation, checkpoints."""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from asgdjax.data import ArrayDataset
from asgdjax.errors import Diverged
from asgdjax.train.outputs import Checkpoints, MetricsWriter
from asgdjax.train.task import Task


@dataclasses.dataclass
class RunContext:
    config: object
    workdir: str
    task: Task
    dataset: ArrayDataset
    data: dict
    optimizer: optax.GradientTransformation
    writer: MetricsWriter
    checkpoints: Checkpoints
    placement: object = None  # asgdjax.parallel.Placement of the server's (or the one model's) parameters
    show_progress: bool = True
    started: float = dataclasses.field(default_factory=time.time)
    eval_seconds: float = 0.0
    last_eval: dict = dataclasses.field(default_factory=dict)
    resumed_from: int = 0
    _bar: object = None

    def progress(self, start: int, stop: int, unit: str = "step"):
        """range(start, stop) advancing a progress bar (postfix shows loss and accuracy)."""
        bar = self.bar(stop, start, unit)
        for i in range(start, stop):
            yield i
            bar.update(1)
        bar.close()

    def bar(self, total: int, initial: int = 0, unit: str = "grad"):
        """A manual tqdm bar (call .update(n)); used where one iteration advances several steps."""
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            disable=not self.show_progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        return self._bar

    def restore(self, like):
        step = self.checkpoints.latest_step()
        if step is None:
            return like
        self.resumed_from = step
        return self.checkpoints.restore(step, like)

    def save(self, step: int, state) -> None:
        self.checkpoints.save(step, state)

    def evaluate(self, params) -> dict:
        t = time.time()
        self.last_eval = self.task.evaluate(params, self.data)
        self.eval_seconds += time.time() - t
        return self.last_eval


def crossed(prev: int, done: int, every: int) -> bool:
    """True if a multiple of `every` lies in (prev, done]: a wave of several steps crossed a boundary."""
    return done // every > prev // every


def _check_divergence(ctx: RunContext, done: int, loss: float) -> None:
    limit = ctx.config.max_train_loss
    if not math.isfinite(loss) or loss > limit:
        last = ctx.checkpoints.latest_step()
        kept = (
            f"the last good checkpoint (step {last}) is kept in {ctx.checkpoints.directory}"
            if last
            else "no checkpoint was written yet"
        )
        ctx.writer.write(done, train_loss=loss if math.isfinite(loss) else str(loss), diverged=True)
        raise Diverged(
            f"the run diverged at step {done}: train_loss={loss:.4g} (limit max_train_loss={limit:g}); {kept}; "
            "lower learning_rate or use a staleness rule"
        )


def logging_due(config, prev: int, done: int) -> bool:
    """Whether advancing from `prev` to `done` steps crosses a log, eval or checkpoint boundary (or ends)."""
    return done == config.steps or any(
        crossed(prev, done, every) for every in (config.log_every, config.eval_every, config.checkpoint_every)
    )


def log_and_eval(ctx: RunContext, done: int, params, losses: list, prev: int | None = None, **extra) -> None:
    """Every log_every steps write the mean training loss; every eval_every (and at the end) evaluate.

    `prev` is the step count before this call (default done - 1); waves advance several steps at once.
    """
    config = ctx.config
    prev = done - 1 if prev is None else prev
    record = {}
    if (crossed(prev, done, config.log_every) or done == config.steps) and losses:
        # nanmean: padded simulator slots are NaN; a diverged model is NaN everywhere and still shows as NaN
        record["train_loss"] = float(jnp.nanmean(jnp.concatenate([jnp.ravel(x) for x in losses])))
        losses.clear()
        _check_divergence(ctx, done, record["train_loss"])
    if crossed(prev, done, config.eval_every) or done == config.steps:
        record.update(ctx.evaluate(params))
    if record:
        record.update(extra)
        ctx.writer.write(done, **record)
        if ctx._bar is not None:
            shown = {k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "test_accuracy")}
            ctx._bar.set_postfix(shown, refresh=False)
