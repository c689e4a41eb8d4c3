"""What a run leaves in its workdir: metrics.jsonl, summary.json, config.json and orbax checkpoints."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from asgdjax.errors import ConfigError


class MetricsWriter:
    """Appends one JSON object per log step to workdir/metrics.jsonl (append: resumed runs continue it)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (held open for the run)

    def write(self, step: int, **metrics: Any) -> None:
        record = {"step": int(step), "time": time.time(), **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")

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


def _plain(v):
    if isinstance(v, (np.generic, jax.Array)):
        return np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v).tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


class Checkpoints:
    """Orbax CheckpointManager over workdir/checkpoints: save a state pytree by step, restore the latest."""

    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, like):
        """Restore into the structure (and shardings) of `like`; an unreadable checkpoint is a ConfigError."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001 (orbax raises many kinds for damaged or foreign files)
            where = os.path.join(self.directory, str(step))
            raise ConfigError(
                f"checkpoint {where!r} cannot be restored ({type(e).__name__}); it is damaged or from another "
                "config: move it away to resume from an earlier one, or use a new --workdir"
            ) from None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
