"""Every config key with its default and its comment, by section, read from base.py itself (so the help
can never drift from the defaults): what `asgdjax-train --help` prints under --config."""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any, NamedTuple

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
                out.append(Key(section, m.group(1), _get(defaults, m.group(1), None), m.group(3) or ""))
    return out


def text(width: int = 100, *, config: Any = None) -> str:
    """The listing, grouped by section; with `config` (a config file's), its values, each that differs from
    base.py's default marked with that default."""
    lines, section = [], None
    for k in keys():
        if k.section != section:
            section = k.section
            lines.append(f"\n  {section}:")
        value, note = k.default, k.comment
        if config is not None:
            value = _get(config, k.key, k.default)
            if value != k.default:
                note = f"{note} (base: {k.default!r})" if note else f"base: {k.default!r}"
        lines.append(f"    --config.{k.key}={value!r}" + (f"  # {note}" if note else ""))
    return "\n".join(lines)


def _get(config: Any, key: str, default: object) -> object:
    """config's value at a dotted key (delay.mean), or `default` where it has none."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return default
        node = node[part]
    return node


def load_file(path: str, arg: str | None = None) -> Any:
    """get_config(arg) of a config file, as --config=PATH[:ARG] loads it (for --help, before flags parse)."""
    spec = importlib.util.spec_from_file_location("_asgdjax_help_config", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path!r} is not a python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()
