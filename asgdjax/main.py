"""`asgdjax-train`: the absl entry point. No flags at all runs the embedded default (digits).

asgdjax-train --config=asgdjax/configs/mnist.py --workdir=runs/mnist --config.mode=sim
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import asgdjax.configs

DEFAULT_CONFIG = os.path.join(os.path.dirname(asgdjax.configs.__file__), "default.py")
config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file (python).", lock_config=True)
flags.DEFINE_string("workdir", None, "Output folder (resumed if it holds a run); default runs/<config name>.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv) -> None:
    from asgdjax.errors import ConfigError

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
    print_summary(summary)


def _config_path() -> str:
    value = flags.FLAGS["config"].config_filename if hasattr(flags.FLAGS["config"], "config_filename") else None
    return value or DEFAULT_CONFIG


def _fail(message: str) -> None:
    print(f"asgdjax-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
