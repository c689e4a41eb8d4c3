"""The sweep's table (JSON + CSV) and picture: a line per value of the second key against the first (one or
two keys: a line plot or a heatmap of final test accuracy), bars for larger grids."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from asgdjax.sweep.runner import Row
from asgdjax.train.outputs import keep_earlier, read_json

COLUMNS = (
    "final_test_accuracy",
    "final_test_loss",
    "staleness_mean",
    "virtual_seconds",
    "wall_seconds",
    "diverged_at",
)


def table(rows: list[Row]) -> list[dict[str, Any]]:
    """One dict per point: the swept values, then the result columns and the point's workdir."""
    return [
        {
            **r.point.overrides,
            **{c: r.summary.get(c) for c in COLUMNS},
            "health": (r.summary.get("health") or {}).get("status", "diverged" if r.summary.get("diverged") else None),
            "workdir": r.summary.get("workdir"),
        }
        for r in rows
    ]


def write(rows: list[Row], workdir: str, *, command: str, metric: str = "final_test_accuracy") -> dict[str, str]:
    """sweep.json, sweep.csv and sweep.png in `workdir`; returns their paths. A table there with a point this
    one lacks (another sweep) is kept as sweep.N.json/csv/png (paths["kept"]); a resumed or extended sweep's
    replaces it, since the new table holds every earlier row."""
    t = table(rows)
    paths = {ext: os.path.join(workdir, f"sweep.{ext}") for ext in ("json", "csv", "png")}
    earlier = read_json(paths["json"]) or {"rows": []}
    lost = {r.get("workdir") for r in earlier.get("rows", [])} - {r["workdir"] for r in t}
    if lost and (kept := keep_earlier(workdir, "sweep", ("json", "csv", "png"))):
        paths["kept"] = kept
    with open(paths["json"], "w") as f:
        json.dump({"command": command, "metric": metric, "rows": t}, f, indent=2)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(t[0]))
        w.writeheader()
        w.writerows(t)
    plot(rows, metric, paths["png"])
    return paths


def plot(rows: list[Row], metric: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(rows[0].point.overrides)
    values = [r.summary.get(metric) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(keys) == 2:
        xs = list(dict.fromkeys(r.point.overrides[keys[1]] for r in rows))
        ys = list(dict.fromkeys(r.point.overrides[keys[0]] for r in rows))
        grid = np.full((len(ys), len(xs)), np.nan)
        for r, v in zip(rows, values, strict=True):
            grid[ys.index(r.point.overrides[keys[0]]), xs.index(r.point.overrides[keys[1]])] = (
                np.nan if v is None else v
            )
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set(
            xticks=range(len(xs)), xticklabels=xs, yticks=range(len(ys)), yticklabels=ys, xlabel=keys[1], ylabel=keys[0]
        )
        for i in range(len(ys)):
            for j in range(len(xs)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, label=metric)
    elif len(keys) == 1:
        ax.plot([r.point.overrides[keys[0]] for r in rows], [np.nan if v is None else v for v in values], "o-")
        ax.set(xlabel=keys[0], ylabel=metric)
    else:
        ax.barh([r.point.name for r in rows], [np.nan if v is None else v for v in values])
        ax.set(xlabel=metric)
    ax.set_title(f"{metric} over the sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
