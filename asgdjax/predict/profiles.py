"""Hardware profiles: calibration files for hardware you do not have, each field with its source
(asgdjax/configs/hardware/*.json), usable wherever a measured calibration is."""

from __future__ import annotations

import os

import asgdjax.configs

FOLDER = os.path.join(os.path.dirname(asgdjax.configs.__file__), "hardware")


def names() -> list[str]:
    return sorted(os.path.splitext(f)[0] for f in os.listdir(FOLDER) if f.endswith(".json"))


def profile_path(name_or_path: str) -> str:
    """A packaged profile's file (by name, e.g. paine2013_gigabit), or the path given."""
    packaged = os.path.join(FOLDER, f"{name_or_path}.json")
    return packaged if os.path.exists(packaged) else name_or_path
