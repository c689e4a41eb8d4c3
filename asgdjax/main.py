"""`asgdjax-train`: the absl entry point. No flags at all runs the embedded default (digits).

asgdjax-train --config=asgdjax/configs/mnist.py --workdir=runs/mnist --config.mode=sim
"""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import asgdjax.configs

DEFAULT_CONFIG = os.path.join(os.path.dirname(asgdjax.configs.__file__), "default.py")
flags.DEFINE_string("workdir", None, "Output folder (resumed if it holds a run); default runs/<config name>.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv) -> None:
    from asgdjax.errors import ConfigError, Diverged

    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]!r}; pass settings as --config.KEY=VALUE")
    config = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or os.path.join(
        "runs",
        os.path.splitext(os.path.basename(_config_path()))[0] + ("" if config.mode == "sync" else f"_{config.mode}"),
    )
    logging.set_verbosity(logging.WARNING)
    try:
        from asgdjax.train import train
        from asgdjax.train.report import print_summary

        summary = train(config, workdir, show_progress=flags.FLAGS.progress)
    except ConfigError as e:
        _fail(str(e))
    except Diverged as e:
        print(f"asgdjax-train: stopped: {e}", file=sys.stderr)
        sys.exit(3)
    print_summary(summary)


def _config_path() -> str:
    value = flags.FLAGS["config"].config_filename if hasattr(flags.FLAGS["config"], "config_filename") else None
    return value or DEFAULT_CONFIG


def _fail(message: str) -> None:
    print(f"asgdjax-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def run() -> None:
    """Console-script entry point: config overrides are checked before anything runs (one-line errors)."""
    try:  # ml_collections applies --config.KEY=VALUE overrides while the flag is defined
        config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file.", lock_config=True)
    except (AttributeError, KeyError) as e:
        name = re.search(r"'([\w.]+)", str(e))
        hint = re.search(r'Did you mean "([\w.]+)"', str(e).replace("\\", ""))
        _fail(
            f"unknown config key {name.group(1) if name else e!r}"
            + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
            + "; allowed: the keys of asgdjax/configs/base.py"
        )
    except (ValueError, TypeError) as e:
        _fail(f"bad config override: {e}")
    app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))


if __name__ == "__main__":
    run()
