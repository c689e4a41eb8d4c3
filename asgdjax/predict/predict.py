"""Predictions: for each worker count, simulate the training itself on the calibrated virtual clock, so the
accuracy cost of staleness is included, not only throughput; report staleness, updates/s, time to target
and speedup over the smallest worker count."""

from __future__ import annotations

import copy
import os

from asgdjax.core.trace import Trace
from asgdjax.delays import COMM_KEYS
from asgdjax.predict.calibration import Calibration
from asgdjax.predict.targets import accuracy_curve, time_to_target


def sim_config(config, calibration: Calibration, num_workers: int, eval_every: int):
    """`config` as a mode=sim run of `num_workers` on the calibrated clock."""
    c = copy.deepcopy(config)
    c.mode, c.num_workers, c.eval_every, c.trace = "sim", num_workers, eval_every, ""
    c.checkpoint_every = max(c.checkpoint_every, c.steps)
    d = calibration.for_workers(num_workers)
    c.delay.kind, c.delay.mean, c.delay.spread = d.kind, d.mean, d.spread
    c.delay.speeds = ",".join(f"{s:.6g}" for s in d.speeds)
    c.delay.straggler_prob, c.delay.straggler_factor = d.straggler_prob, d.straggler_factor
    c.delay.latency, c.delay.service, c.delay.solo = d.latency, d.service, d.solo
    for key in COMM_KEYS:
        c.delay[key] = float(getattr(d, key))
    return c


def check_folders(config, calibration: Calibration, worker_counts: list[int], workdir: str, eval_every: int) -> None:
    """Each workers_K folder is new or holds this very prediction (checked before anything is written, so a
    refused prediction leaves the workdir's calibration and runs as they were)."""
    from asgdjax.train.workdir import Workdir

    for k in worker_counts:
        run = Workdir(os.path.join(workdir, f"workers_{k}"))
        run.check_same_run(sim_config(config, calibration, k, eval_every).to_dict())


def predict(
    config,
    calibration: Calibration,
    worker_counts: list[int],
    target: float,
    workdir: str,
    eval_every: int = 50,
    show_progress: bool = False,
) -> list[dict]:
    """One row per worker count (deterministic for a calibration and config.seed)."""
    from asgdjax.errors import Diverged
    from asgdjax.train import train

    rows = []
    for k in worker_counts:
        out = os.path.join(workdir, f"workers_{k}")
        try:
            summary = train(sim_config(config, calibration, k, eval_every), out, show_progress=show_progress)
        except Diverged as e:  # a prediction too: this many workers diverge with these settings
            summary = None
            message = str(e)
        trace = Trace.load(os.path.join(out, "trace.npz"))
        row = schedule_row(k, trace)
        if summary is None:
            row.update(final_test_accuracy=float("nan"), diverged=True, message=message)
        else:
            hit = time_to_target(accuracy_curve(out), trace, target)
            row.update(
                final_test_accuracy=summary["final_test_accuracy"],
                gradients_to_target=hit[0] if hit else None,
                seconds_to_target=hit[1] if hit else None,
            )
        rows.append(row)
    base = rows[0]["seconds_to_target"] if rows else None
    for r in rows:
        t = r["seconds_to_target"]
        r["speedup_to_target"] = base / t if (base and t) else None
        r["speedup_throughput"] = r["gradients_per_second"] / rows[0]["gradients_per_second"]
    return rows


def schedule_row(k: int, trace: Trace) -> dict:
    """What the schedule alone predicts for k workers: staleness, throughput, run length (no accuracy yet)."""
    s = trace.stats()
    vt = s.virtual_time
    return {
        "workers": k,
        "staleness_mean": s.staleness_mean,
        "staleness_max": s.staleness_max,
        "staleness_hist": s.staleness_hist,
        "updates_per_second": s.updates / vt if vt else 0.0,
        "gradients_per_second": s.gradients / vt if vt else 0.0,
        "run_seconds": vt,
        "gradients_to_target": None,
        "seconds_to_target": None,
        "diverged": False,
    }


def plot(rows: list[dict], target: float, path: str, title: str = "") -> None:
    """Time to target and mean staleness against workers (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["workers"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    t = [r["seconds_to_target"] if r["seconds_to_target"] is not None else float("nan") for r in rows]
    a.plot(ks, t, "o-")
    a.set(xscale="log", xlabel="workers", ylabel=f"seconds to {target:.0%} test accuracy", title="predicted time")
    b.plot(ks, [r["staleness_mean"] for r in rows], "o-", label="mean")
    b.plot(ks, [r["staleness_max"] for r in rows], "s--", label="max")
    b.set(xscale="log", yscale="log", xlabel="workers", ylabel="staleness (updates)", title="predicted staleness")
    b.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
