"""plan.json (everything, with the command) and plan.png (the front, and every candidate's score per rung)."""

from __future__ import annotations

import json
import os
from typing import Any

from asgdjax.plan.search import Plan
from asgdjax.train.outputs import keep_earlier


def to_json(plan: Plan, *, command: str, target: float, clocks: dict[str, Any], recommended_command: str) -> dict:
    return {
        "command": command,
        "target": target,
        "budget_seconds": plan.budget,
        "clocks": clocks,
        "brackets": {
            str(k): [
                {
                    "seconds": r.seconds,
                    "scores": [{"candidate": c.name, **s._asdict()} for c, s in r.scores],
                }
                for r in rungs
            ]
            for k, rungs in plan.brackets.items()
        },
        "rows": [r.to_json() for r in plan.rows],
        "front": [r.workers for r in plan.front],
        "recommended": {**plan.recommended.to_json(), "command": recommended_command},
        "wall_seconds": plan.wall_seconds,
        "simulated_gradients": plan.simulated_gradients,
        "notes": list(plan.notes),
    }


def write(plan: Plan, workdir: str, record: dict) -> dict[str, str]:
    """plan.json and plan.png in `workdir`; an earlier plan there is kept as plan.N.json/png (paths["kept"])."""
    paths = {"json": os.path.join(workdir, "plan.json"), "png": os.path.join(workdir, "plan.png")}
    if kept := keep_earlier(workdir, "plan", ("json", "png")):
        paths["kept"] = kept
    with open(paths["json"], "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    plot(plan, paths["png"], record["target"])
    return paths


def plot(plan: Plan, path: str, target: float) -> None:
    """Left: time to target against workers (every final-rung candidate, the winners with their seed
    spread, the front joined). Right: each bracket's rungs, each candidate's accuracy where its rung ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (k, rungs) in enumerate(plan.brackets.items()):
        last = [s.seconds_to_target for _, s in rungs[-1].scores if s.seconds_to_target is not None]
        a.plot([k] * len(last), last, ".", color="0.7", label="last rung's candidates (seed 0)" if i == 0 else None)
        for r, rung in enumerate(rungs):
            acc = [s.accuracy for _, s in rung.scores]
            x = [r + (i - (len(plan.brackets) - 1) / 2) * 0.12] * len(acc)
            b.plot(x, acc, ".", color=f"C{i}", alpha=0.6, label=f"{k} workers" if r == 0 else None)
    reached = [r for r in plan.rows if r.seconds is not None]
    a.errorbar(
        [r.workers for r in reached],
        [r.seconds for r in reached],
        [r.spread for r in reached],
        fmt="o",
        label="winner over seeds (every seed reached it)",
    )
    a.plot(
        [r.workers for r in plan.front],
        [r.seconds for r in plan.front],
        "s-",
        color="C1",
        label="front",
        mfc="none",
        ms=10,
    )
    rec = plan.recommended
    if rec.seconds is not None:
        a.plot([rec.workers], [rec.seconds], "*", ms=14, color="C3", label="recommended")
    ks = sorted(plan.brackets)
    a.set(xscale="log", xlabel="workers", ylabel=f"clock seconds to {target:.2%}", title="predicted time to target")
    a.set_xticks(ks, [str(k) for k in ks])
    a.minorticks_off()
    a.legend(fontsize=8)
    b.set(xlabel="rung", ylabel="best test accuracy", title="successive halving")
    n_rungs = len(next(iter(plan.brackets.values())))
    b.set_xticks(range(n_rungs), [str(r + 1) for r in range(n_rungs)])  # as the log counts them: rung 1/R ...
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
