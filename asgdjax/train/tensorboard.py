"""TensorBoard event files beside metrics.jsonl (which stays the source of truth): every scalar of every
record, and each `*_hist` list (staleness counts for tau = 0, 1, ...) as a histogram at that step. Written
with tensorboardX (`pip install 'asgdjax[tensorboard]'`), so TensorFlow is never imported. Runs under one
parent folder compare side by side: `tensorboard --logdir runs/`.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np

SUBDIR = "tensorboard"
_FILES = itertools.count(1)  # event files this process opened (a notebook may train twice in one second)


def available() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardWriter:
    """`write(step, **record)` like MetricsWriter: numbers become scalars, `*_hist` count lists histograms."""

    def __init__(self, workdir: str):
        self.logdir = os.path.join(workdir, SUBDIR)
        self._w: Any = None  # opened at the first record, after a resume has said where it starts
        self._purge: int | None = None

    def truncate_after(self, step: int) -> None:
        """A resumed run recomputes the steps after `step`: the next event file carries purge step
        `step + 1`, which tells TensorBoard to drop the earlier files' events from there on (as
        MetricsWriter drops their records)."""
        self.close()
        self._purge = step + 1

    def _writer(self) -> Any:
        if self._w is None:
            from tensorboardX import SummaryWriter

            suffix = f".{os.getpid()}.{next(_FILES)}"  # files opened within one second must not share a name
            self._w = SummaryWriter(logdir=self.logdir, flush_secs=10, purge_step=self._purge, filename_suffix=suffix)
        return self._w

    def write(self, step: int, **record: Any) -> None:
        for key, value in record.items():
            if key.endswith("_hist") and isinstance(value, (list, tuple)) and sum(value) > 0:
                self._histogram(key, np.asarray(value, np.float64), step)
            elif _number(value) and math.isfinite(float(value)):
                self._writer().add_scalar(key, float(value), step)

    def _histogram(self, key: str, counts: np.ndarray, step: int) -> None:
        values = np.arange(len(counts), dtype=np.float64)
        total = counts.sum()
        nonzero = np.flatnonzero(counts)
        self._writer().add_histogram_raw(
            key,
            min=float(values[nonzero[0]]),
            max=float(values[nonzero[-1]]),
            num=float(total),
            sum=float((values * counts).sum()),
            sum_squares=float((values**2 * counts).sum()),
            bucket_limits=(values + 0.5).tolist(),
            bucket_counts=counts.tolist(),
            global_step=step,
        )

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
