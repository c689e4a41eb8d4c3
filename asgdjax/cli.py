"""What every asgdjax console script shares: the --config flag (overrides checked before anything runs) and
one-line errors with exit status 2."""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

import asgdjax.configs

DEFAULT_CONFIG = os.path.join(os.path.dirname(asgdjax.configs.__file__), "default.py")
PROGRAM = ["asgdjax"]


def config_path() -> str:
    value = flags.FLAGS["config"].config_filename if hasattr(flags.FLAGS["config"], "config_filename") else None
    return value or DEFAULT_CONFIG


def fail(message: str) -> None:
    """Print `PROGRAM: error: message` and exit 2."""
    print(f"{PROGRAM[0]}: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_app(main_fn, program: str) -> None:
    """Define --config (overrides checked before anything runs, one-line errors) and run `main_fn`."""
    PROGRAM[0] = program
    try:  # ml_collections applies --config.KEY=VALUE overrides while the flag is defined
        config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file.", lock_config=True)
    except (AttributeError, KeyError) as e:
        name = re.search(r"'([\w.]+)", str(e))
        hint = re.search(r'Did you mean "([\w.]+)"', str(e).replace("\\", ""))
        fail(
            f"unknown config key {name.group(1) if name else e!r}"
            + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
            + "; allowed: the keys of asgdjax/configs/base.py"
        )
    except (ValueError, TypeError) as e:
        fail(f"bad config override: {e}")
    app.run(main_fn, flags_parser=_parse_flags)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))
