"""Predictions: for each worker count, simulate the training itself on the calibrated virtual clock, so the
accuracy cost of staleness is included, not only throughput; report staleness, updates/s, time to target
and speedup over the smallest worker count."""

from __future__ import annotations

import copy
import os

from asgdjax.predict.calibration import Calibration
from asgdjax.predict.targets import accuracy_curve, time_to_target
from asgdjax.sim.trace import Trace


def sim_config(config, calibration: Calibration, num_workers: int, eval_every: int):
    """`config` as a mode=sim run of `num_workers` on the calibrated clock."""
    c = copy.deepcopy(config)
    c.mode, c.num_workers, c.eval_every, c.trace = "sim", num_workers, eval_every, ""
    c.checkpoint_every = max(c.checkpoint_every, c.steps)
    d = calibration.for_workers(num_workers)
    c.delay.kind, c.delay.mean, c.delay.spread = d.kind, d.mean, d.spread
    c.delay.speeds = ",".join(f"{s:.6g}" for s in d.speeds)
    c.delay.straggler_prob, c.delay.straggler_factor = d.straggler_prob, d.straggler_factor
    c.delay.latency, c.delay.service = d.latency, d.service
    return c


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
            rows.append(diverged_row(k, Trace.load(os.path.join(out, "trace.npz")), str(e)))
            continue
        trace = Trace.load(os.path.join(out, "trace.npz"))
        hit = time_to_target(accuracy_curve(out), trace, target)
        vt = summary["virtual_time"]
        rows.append(
            {
                "workers": k,
                "staleness_mean": summary["staleness_mean"],
                "staleness_max": summary["staleness_max"],
                "staleness_hist": summary["staleness_hist"],
                "updates_per_second": summary["updates"] / vt if vt else 0.0,
                "gradients_per_second": summary["gradients"] / vt if vt else 0.0,
                "run_seconds": vt,
                "final_test_accuracy": summary["final_test_accuracy"],
                "gradients_to_target": hit[0] if hit else None,
                "seconds_to_target": hit[1] if hit else None,
                "diverged": False,
            }
        )
    base = rows[0]["seconds_to_target"] if rows else None
    for r in rows:
        t = r["seconds_to_target"]
        r["speedup_to_target"] = base / t if (base and t) else None
        r["speedup_throughput"] = r["gradients_per_second"] / rows[0]["gradients_per_second"]
    return rows


def diverged_row(k: int, trace: Trace, message: str) -> dict:
    """The row of a worker count whose simulated training diverged (schedule figures still hold)."""
    s = trace.stats()
    vt = s["virtual_time"]
    return {
        "workers": k,
        "staleness_mean": s["staleness_mean"],
        "staleness_max": s["staleness_max"],
        "staleness_hist": s["staleness_hist"],
        "updates_per_second": trace.num_updates / vt if vt else 0.0,
        "gradients_per_second": trace.num_gradients / vt if vt else 0.0,
        "run_seconds": vt,
        "final_test_accuracy": float("nan"),
        "gradients_to_target": None,
        "seconds_to_target": None,
        "diverged": True,
        "message": message,
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
