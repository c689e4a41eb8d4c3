"""Hardware profiles: calibration files for hardware you do not have, each field with its source
(asgdjax/configs/hardware/*.json), usable wherever a measured calibration is."""

from __future__ import annotations

import os

import asgdjax.configs
from asgdjax.errors import ConfigError

FOLDER = os.path.join(os.path.dirname(asgdjax.configs.__file__), "hardware")


def names() -> list[str]:
    return sorted(os.path.splitext(f)[0] for f in os.listdir(FOLDER) if f.endswith(".json"))


def profile_path(name_or_path: str) -> str:
    """A packaged profile's file (by name, e.g. paine2013_gigabit), or the path given; one line naming the
    packaged profiles when it is neither."""
    packaged = os.path.join(FOLDER, f"{name_or_path}.json")
    if os.path.exists(packaged):
        return packaged
    if not os.path.isfile(name_or_path):
        raise ConfigError(
            f"--profile={name_or_path!r} is not allowed; use one of {', '.join(names())} "
            "(asgdjax/configs/hardware) or the path of a profile JSON"
        )
    return name_or_path
