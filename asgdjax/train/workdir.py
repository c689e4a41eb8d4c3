"""A run's folder: refused when it is a file, not writable, busy (a lock held by a live process) or holding
another run; reported complete when it holds this run finished. Nothing is written in it before the
config, the data and the sizes have been checked, so a refused or crashed start leaves it as it was."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import time
from typing import Any

from asgdjax.config_checks import dotted
from asgdjax.errors import ConfigError

# Keys that may change between a run and its resumption (everything else must match the workdir's run).
RESUMABLE_CHANGES = (
    "steps",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "data_dir",
    "max_train_loss",
    "tensorboard",
)
LOCK = ".lock"


@dataclasses.dataclass
class Workdir:
    """The run folder, locked for the lifetime of the `with` block (flock: released when the holder dies,
    so a stale lock file from a killed process never blocks the next run)."""

    path: str
    _fd: int | None = None

    def __enter__(self) -> Workdir:
        check_location(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(os.path.join(self.path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(
                f"workdir {self.path!r} cannot be created ({e.strerror}); give a writable folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise self.busy(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def busy(self, holder: str) -> ConfigError:
        return ConfigError(
            f"workdir {self.path!r} is in use by {holder}; wait for it to finish or use another --workdir"
        )

    def holder(self) -> str | None:
        """Who holds this workdir's lock now (a live process), or None; takes nothing (what a dry run asks)."""
        try:
            fd = os.open(os.path.join(self.path, LOCK), os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def previous_config(self) -> dict | None:
        """The config of the run this folder holds, if it got as far as a checkpoint or a summary; a start
        that failed before either holds nothing worth keeping (a corrected command may then run)."""
        started = os.path.exists(self.file("summary.json")) or _has_checkpoints(self.path)
        if not started or not os.path.exists(self.file("config.json")):
            return None
        try:
            with open(self.file("config.json")) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(
                f"workdir {self.path!r} has an unreadable config.json ({e}); use a new --workdir"
            ) from None

    def check_same_run(self, config_dict: dict) -> None:
        """Refuse a workdir holding a run with another config (nothing there is touched)."""
        previous = self.previous_config()
        if previous is None:
            return
        previous, current = dotted(previous), dotted(json.loads(json.dumps(config_dict)))
        diffs = [
            k
            for k in sorted(set(previous) | set(current))
            if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k)
        ]
        if diffs:
            k = diffs[0]
            raise ConfigError(
                f"workdir {self.path!r} holds a run with {k}={previous.get(k)!r} (this config: {current.get(k)!r}); "
                "use a new --workdir or the same config to resume"
            )

    def check_resumable(self, config_dict: dict) -> None:
        """Refuse what a run of `config_dict` here would refuse before touching anything: another run's config,
        or steps below the checkpoint this run already reached."""
        self.check_same_run(config_dict)
        self.check_not_past(config_dict["steps"])

    def check_not_past(self, steps: int) -> None:
        """Refuse `steps` below the checkpoint this folder's run already reached: resuming would report the
        further-trained model as a run of `steps` (a checkpoint is not rewound)."""
        reached = max(_checkpoint_steps(self.path), default=0)
        if reached > steps:
            raise ConfigError(
                f"workdir {self.path!r} holds this run trained to {reached} steps, past steps={steps}; give "
                f"--config.steps >= {reached} to resume it, or a new --workdir (a checkpoint is not rewound)"
            )

    def resume_notes(self, config_dict: dict) -> list[str]:
        """What a resumption with changed settings does that a fresh run of them would not: a cosine schedule's
        length follows `steps`, so raising it after a run has decayed restarts the learning rate mid-curve."""
        previous = self.previous_config()
        if previous is None or previous.get("steps") == config_dict.get("steps"):
            return []
        if config_dict.get("lr_schedule") != "cosine":
            return []
        return [
            f"lr_schedule=cosine follows steps: the updates already made in {self.path!r} decayed over "
            f"steps={previous.get('steps')}, the rest follow a cosine over steps={config_dict.get('steps')}, so the "
            "learning rate jumps at the resume (a new --workdir trains the longer schedule from its start)"
        ]

    def complete_summary(self, steps: int) -> dict | None:
        """The summary of this run when it already finished `steps` gradients (rerunning changes nothing)."""
        try:
            with open(self.file("summary.json")) as f:
                summary = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        finished = summary.get("steps") == steps and summary.get("gradients", steps) >= steps
        saved = steps in _checkpoint_steps(self.path)  # and its final checkpoint is there
        return summary if finished and saved else None


def check_location(path: str) -> None:
    """One line when the folder cannot be a workdir: a file, or not writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"workdir {path!r} is a file; give a folder (it is created if missing)")
    parent = path
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    where = parent or "."
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(f"workdir {path!r} cannot be written ({where!r} is not writable); give a writable folder")


def check_tool_folder(path: str, *, tool: str, writes: str) -> None:
    """One line when a tool's output folder (asgdjax-plan's, asgdjax-predict's) is a training run's
    workdir: the tool would mix its files into the run's, so it is refused before anything is written."""
    check_location(path)
    held = [f for f in ("config.json", "trace.npz", "checkpoints") if os.path.exists(os.path.join(path, f))]
    if held:
        raise ConfigError(
            f"workdir {path!r} holds a training run ({held[0]}); {tool} writes {writes}: use another --workdir"
        )


def _checkpoint_steps(path: str) -> list[int]:
    """The steps of the orbax checkpoints in the workdir `path` (its checkpoints/STEP folders)."""
    ck = os.path.join(path, "checkpoints")
    return [int(name) for name in os.listdir(ck) if name.isdigit()] if os.path.isdir(ck) else []


def _has_checkpoints(path: str) -> bool:
    return bool(_checkpoint_steps(path))


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"process {info['pid']} on {info['host']} (since {since})"
    except (OSError, ValueError, KeyError):
        return "another process"
