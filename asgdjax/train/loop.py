"""What every mode shares while it runs: progress bar, periodic logging and evaluation, health, checkpoints."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import optax
from absl import logging

from asgdjax.core import health
from asgdjax.data import ArrayDataset, StreamingDataset
from asgdjax.errors import Diverged
from asgdjax.train.outputs import Checkpoints, MetricsWriter
from asgdjax.train.progress import progress_bar
from asgdjax.train.task import ClassificationTask


@dataclasses.dataclass
class RunContext:
    config: Any
    workdir: str
    task: ClassificationTask
    dataset: ArrayDataset | StreamingDataset
    data: dict
    optimizer: optax.GradientTransformation
    writer: MetricsWriter
    checkpoints: Checkpoints
    placement: Any = None  # asgdjax.parallel.Placement of the server's (or the one model's) parameters
    show_progress: bool = True
    started: float = dataclasses.field(default_factory=time.time)
    eval_seconds: float = 0.0
    last_eval: dict = dataclasses.field(default_factory=dict)
    resumed_from: int = 0
    collapse: health.CollapseDetector = dataclasses.field(default_factory=health.CollapseDetector)
    extra_writers: list = dataclasses.field(default_factory=list)  # e.g. TensorBoard, fed the same records
    _bar: Any = None

    def progress(self, start: int, stop: int, unit: str = "step"):
        """range(start, stop) advancing a progress bar (postfix shows loss and accuracy)."""
        bar = self.bar(stop, start, unit)
        for i in range(start, stop):
            yield i
            bar.update(1)
        bar.close()

    def bar(self, total: int, initial: int = 0, unit: str = "grad"):
        """A manual tqdm bar (call .update(n)); used where one iteration advances several steps."""
        self._bar = progress_bar(total=total, initial=initial, unit=unit, enabled=self.show_progress)
        return self._bar

    def restore(self, like):
        """The newest restorable checkpoint in the structure of `like` (or `like` itself when none)."""
        got = self.checkpoints.restore_latest(like)
        if got is None:
            return like
        self.resumed_from, state = got
        self.truncate_after(self.resumed_from)
        self.write(self.resumed_from, event="resumed", checkpoint=self.resumed_from)  # as mode=async records it
        logging.warning("resumed from checkpoint %d; the steps after it are recomputed", self.resumed_from)
        return state

    def truncate_after(self, step: int) -> None:
        """Forget the records past `step` in every writer (a resume recomputes those steps)."""
        self.writer.truncate_after(step)
        for w in self.extra_writers:
            w.truncate_after(step)

    def save(self, step: int, state, meta: dict | None = None) -> None:
        self.checkpoints.save(step, state, meta)

    def evaluate(self, params) -> dict:
        t = time.time()
        self.last_eval = self.task.evaluate(params, self.data)
        self.eval_seconds += time.time() - t
        return self.last_eval

    def write(self, step: int, **record: Any) -> None:
        """One metrics record: metrics.jsonl (the source of truth) and any extra writer."""
        self.writer.write(step, **record)
        for w in self.extra_writers:
            w.write(step, **record)


def crossed(prev: int, done: int, every: int) -> bool:
    """True if a multiple of `every` lies in (prev, done]: a wave of several steps crossed a boundary."""
    return done // every > prev // every


def logging_due(config, prev: int, done: int) -> bool:
    """Whether advancing from `prev` to `done` steps crosses a log, eval or checkpoint boundary (or ends)."""
    return done == config.steps or any(
        crossed(prev, done, every) for every in (config.log_every, config.eval_every, config.checkpoint_every)
    )


def log_and_eval(
    ctx: RunContext,
    done: int,
    params,
    losses: list,
    *,
    prev: int | None = None,
    rejected: int = 0,
    staleness: list | None = None,
    **extra,
) -> None:
    """Every log_every steps write the mean training loss; every eval_every (and at the end) evaluate.

    `prev` is the step count before this call (default done - 1); waves advance several steps at once.
    `rejected`: gradients the guards rejected so far (most of them rejected is divergence). `staleness`:
    the staleness of the gradients applied since the last evaluation; at an evaluation its histogram is
    recorded (staleness_hist, counts for tau = 0, 1, ...) and the list emptied.
    """
    config = ctx.config
    prev = done - 1 if prev is None else prev
    record: dict[str, Any] = {}
    if (crossed(prev, done, config.log_every) or done == config.steps) and losses:
        loss = mean_loss(losses)
        losses.clear()
        if loss is not None:
            record["train_loss"] = loss
            _check_divergence(ctx, done, health.divergence(loss, limit=config.max_train_loss), record)
            ctx.collapse.loss(loss)
    _check_divergence(ctx, done, health.rejection(rejected, done), record)
    if crossed(prev, done, config.eval_every) or done == config.steps:
        record.update(ctx.evaluate(params))
        ctx.collapse.accuracy(record["test_accuracy"])
        if staleness:
            record["staleness_hist"] = np.bincount(np.asarray(staleness, np.int64)).tolist()
            staleness.clear()
    if record:
        record.update(extra)
        ctx.write(done, **record)
        _warn_if_collapsed(ctx, done)
        if ctx._bar is not None:
            shown = {k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "test_accuracy")}
            ctx._bar.set_postfix(shown, refresh=False)


def mean_loss(losses: list) -> float | None:
    """Mean of the losses (on the host: workers' losses live on different devices), None when there are
    none. An entry is an array, or (a compiled call's slot losses, mask of the slots that computed a
    gradient); a NaN among them is a diverged gradient and makes the mean NaN."""
    values = np.concatenate([_computed(x) for x in losses])
    return float(values.mean()) if len(values) else None


def _computed(entry) -> np.ndarray:
    if isinstance(entry, tuple):
        values, mask = entry
        return np.ravel(np.asarray(values)[: len(mask)][mask])
    return np.ravel(np.asarray(entry))


def _check_divergence(ctx: RunContext, done: int, why: str | None, record: dict) -> None:
    if why is None:
        return
    last = ctx.checkpoints.latest_step()
    kept = (
        f"the last good checkpoint (step {last}) is kept in {ctx.checkpoints.directory}"
        if last
        else "no checkpoint was written yet"
    )
    loss = record.get("train_loss")
    shown = {} if loss is None else {"train_loss": loss if math.isfinite(loss) else str(loss)}
    ctx.write(done, **shown, diverged=True, reason=why)
    rule = ctx.config.get("rule", "none")
    advice = "lower learning_rate" + (" or use a staleness rule (rule=staleness_lr)" if rule == "none" else "")
    if ctx.config.mode != "sync" and rule != "none":
        advice += f" (rule={rule} is on)"
    raise Diverged(f"the run diverged at step {done}: {why}; {kept}; {advice}")


def _warn_if_collapsed(ctx: RunContext, done: int) -> None:
    why = ctx.collapse.verdict()
    if why and not ctx.collapse.warned:
        ctx.collapse.warned = True
        ctx.write(done, event="collapse_warning", reason=why)
        logging.warning("the run looks collapsed at step %d: %s; %s", done, why, health.ADVICE)


def final_health(ctx: RunContext) -> dict:
    """The run's verdict for summary.json: ok, or collapsed with the reason (printed loudly at the end)."""
    why = ctx.collapse.verdict(final=True)
    if why is None:
        return {"status": "ok"}
    return {"status": "collapsed", "reason": why, "advice": health.ADVICE}
