"""The short table printed at the end of a run."""

from __future__ import annotations


def print_summary(summary: dict) -> None:
    rows = [
        ("mode", summary["mode"]),
        ("dataset / model", f"{summary['dataset']} / {summary['model']} ({summary['parameters']:,} params)"),
        ("test accuracy", f"{summary['final_test_accuracy']:.4f}"),
        ("steps (gradients)", f"{summary['steps']:,}"),
        ("updates applied", f"{summary['updates']:,}"),
    ]
    if "staleness_mean" in summary:
        rows.append(("staleness mean / max", f"{summary['staleness_mean']:.2f} / {summary['staleness_max']}"))
    if summary.get("rejected_nonfinite") or summary.get("rejected_stale"):
        rows.append(("rejected (NaN/Inf, stale)", f"{summary['rejected_nonfinite']} / {summary['rejected_stale']}"))
    if summary.get("worker_failures"):
        n, dropped = len(summary["worker_failures"]), summary.get("dropped_workers", [])
        rows.append(("worker failures", f"{n} (dropped: {', '.join(map(str, dropped)) or 'none'})"))
    if "virtual_seconds" in summary:
        rows.append(("virtual time", f"{summary['virtual_seconds']:.1f} s (simulated clock)"))
    rows += [
        ("examples / s", f"{summary['examples_per_second']:,.0f}"),
        ("wall time", f"{summary['wall_seconds']:.1f} s (eval {summary['eval_seconds']:.1f} s)"),
        ("outputs", summary["workdir"]),
    ]
    health = summary.get("health", {})
    if health.get("status", "ok") != "ok":
        rows.append(("WARNING", f"{health['status']}: {health['reason']}"))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2 + max(len(str(v)) for _, v in rows))
    print(line)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(line)
