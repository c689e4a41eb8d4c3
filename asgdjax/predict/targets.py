"""Time to a target accuracy from a run's outputs: its metrics (accuracy per gradient) and its trace (time
per gradient). For a real run, replay its trace in the simulator with evaluations (the replay is exact,
so the accuracies are the run's own, and evaluating never paused the real workers)."""

from __future__ import annotations

import json
import os

import numpy as np

from asgdjax.core.trace import Trace


def accuracy_curve(workdir: str) -> list[tuple[int, float]]:
    """(gradients, test accuracy) at every evaluation in workdir/metrics.jsonl."""
    out = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "test_accuracy" in rec:
                out.append((int(rec["step"]), float(rec["test_accuracy"])))
    return out


def gradient_times(trace: Trace) -> np.ndarray:
    """Seconds (trace clock) at which the g-th gradient (1-based index g-1) arrived."""
    computed = trace.step >= 0
    return np.asarray(trace.t_arrive)[computed]


def steady_rate(trace: Trace, num_workers: int) -> float:
    """Gradients per second from gradient 2K on: the steady state, every worker's first steps (compilation,
    warm-up) excluded, which is what a calibration describes."""
    times = gradient_times(trace)
    g0 = min(2 * num_workers, len(times)) - 1
    return (len(times) - 1 - g0) / max(float(times[-1] - times[g0]), 1e-12)


def time_to_target(curve: list[tuple[int, float]], trace: Trace, target: float) -> tuple[int, float] | None:
    """(gradients, seconds) of the first evaluation at or above `target`; None when never reached."""
    times = gradient_times(trace)
    for g, acc in curve:
        if acc >= target and g >= 1:
            return g, float(times[min(g, len(times)) - 1])
    return None
