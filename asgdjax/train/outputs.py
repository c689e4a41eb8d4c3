"""What a run leaves in its workdir: metrics.jsonl, summary.json, config.json and orbax checkpoints."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from asgdjax.errors import ConfigError


class MetricsWriter:
    """Appends one JSON object per log step to workdir/metrics.jsonl (append: resumed runs continue it)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (held open for the run)

    def write(self, step: int, **metrics: Any) -> None:
        record = {"step": int(step), "time": time.time(), **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the records past `step` (a resumed run recomputes those steps, so none is logged twice);
        a torn last line from a killed run goes too."""
        self._file.close()
        kept = []
        with open(self.path) as f:
            for line in f:
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError, TypeError):
                    continue
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (held open for the run)

    def close(self) -> None:
        self._file.close()


def write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({k: _plain(v) for k, v in obj.items()}, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def keep_earlier(workdir: str, stem: str, exts: tuple[str, ...]) -> str | None:
    """Move an earlier STEM.EXT set (a plan, a sweep's table) to the first free STEM.N.EXT, so a tool rerun
    into the same workdir never overwrites another result silently; returns the kept .json path, or None."""
    first = os.path.join(workdir, f"{stem}.{exts[0]}")
    if not os.path.exists(first):
        return None
    n = 1
    while os.path.exists(os.path.join(workdir, f"{stem}.{n}.{exts[0]}")):
        n += 1
    for ext in exts:
        if os.path.exists(path := os.path.join(workdir, f"{stem}.{ext}")):
            os.replace(path, os.path.join(workdir, f"{stem}.{n}.{ext}"))
    return os.path.join(workdir, f"{stem}.{n}.{exts[0]}")


def _plain(v):
    if isinstance(v, (np.generic, jax.Array)):
        return np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v).tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


class Checkpoints:
    """Orbax CheckpointManager over workdir/checkpoints: each step holds the state pytree and, where the mode
    has one, a JSON item (the async protocol's snapshot), written and removed together (max_to_keep)."""

    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(meta)
        self.manager.save(step, args=ocp.args.Composite(**items))

    def restore(self, step: int, like: Any, *, with_meta: bool = False) -> Any:
        """Restore step `step` into the structure (and shardings) of `like` (and its JSON item); an
        unreadable checkpoint is a ConfigError naming it."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if with_meta:
            items["meta"] = ocp.args.JsonRestore()
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 (orbax raises many kinds for damaged or foreign files)
            where = os.path.join(self.directory, str(step))
            raise ConfigError(
                f"checkpoint {where!r} cannot be restored ({type(e).__name__}); it is damaged or from another "
                "config: move it away to resume from an earlier one, or use a new --workdir"
            ) from None
        return (out["state"], out["meta"]) if with_meta else out["state"]

    def restore_latest(self, like: Any, *, with_meta: bool = False) -> tuple[int, Any] | None:
        """The newest checkpoint that restores, as (step, state[, meta]); a damaged newer one is skipped with
        a warning (it is kept on disk, renamed, so nothing is lost). None when there is none."""
        steps = self.steps()
        for i, step in enumerate(reversed(steps)):
            try:
                return step, self.restore(step, like, with_meta=with_meta)
            except ConfigError as e:
                if i == len(steps) - 1:
                    raise
                older = steps[-(i + 2)]
                damaged = os.path.join(self.directory, f"damaged-{step}")
                os.replace(os.path.join(self.directory, str(step)), damaged)
                self.manager.reload()
                logging.warning("%s; moved to %s and resuming from the previous checkpoint %d", e, damaged, older)
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
