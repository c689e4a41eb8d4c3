"""Every config key with its default and its comment, by section, read from base.py itself (so the help
can never drift from the defaults): what `asgdjax-train --help` prints under --config."""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from asgdjax.configs.base import base_config

SOURCE = os.path.join(os.path.dirname(__file__), "base.py")
_KEY = re.compile(r"^\s*c\.([\w.]+)\s*=\s*(.+?)\s*(?:#\s*(.*))?$")
_SECTION = re.compile(r"^\s*# == (.+) ==\s*$")


class Key(NamedTuple):
    section: str
    key: str
    default: object
    comment: str


def keys() -> list[Key]:
    """The keys of base_config() in the order and sections of base.py."""
    defaults = base_config()
    section, out = "", []
    with open(SOURCE) as f:
        for line in f:
            if m := _SECTION.match(line):
                section = m.group(1)
            elif (m := _KEY.match(line)) and "ConfigDict()" not in m.group(2):
                node = defaults
                for part in m.group(1).split("."):
                    node = node[part]
                out.append(Key(section, m.group(1), node, m.group(3) or ""))
    return out


def text(width: int = 100) -> str:
    """The listing, grouped by section."""
    lines, section = [], None
    for k in keys():
        if k.section != section:
            section = k.section
            lines.append(f"\n  {section}:")
        lines.append(f"    --config.{k.key}={k.default!r}" + (f"  # {k.comment}" if k.comment else ""))
    return "\n".join(lines)
