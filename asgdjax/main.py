"""asgdjax-train: train a config synchronously (mode=sync), with simulated asynchronous workers (mode=sim)
or with real ones (mode=async). No flags at all trains the embedded default (digits, small CNN, < 30 s).

  asgdjax-train --config=asgdjax/configs/mnist.py --workdir=runs/mnist
  asgdjax-train --config.mode=sim --config.num_workers=16 --workdir=runs/sim16

Writes WORKDIR/metrics.jsonl, summary.json, config.json, checkpoints/ (rerunning resumes), trace.npz
(sim, async) and tensorboard/. Exit 0 done, 2 bad input (one line), 3 diverged."""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from asgdjax.cli import config_path, exhaustion, fail, kept, overridden_keys, run_app

flags.DEFINE_string("workdir", None, "Output folder (resumed if it holds a run); default runs/<config name>.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool(
    "dry_run", False, "Check the config, the data, the workdir and the sizes, say what would run, write nothing."
)


def main(argv) -> None:
    from asgdjax.errors import ConfigError, Diverged

    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]!r}; pass settings as --config.KEY=VALUE")
    config = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or os.path.join(
        "runs",
        os.path.splitext(os.path.basename(config_path()))[0] + ("" if config.mode == "sync" else f"_{config.mode}"),
    )
    logging.set_verbosity(logging.WARNING)
    try:
        from asgdjax.train import check, train
        from asgdjax.train.report import print_summary
        from asgdjax.train.validate import unused_settings, validate
        from asgdjax.train.workdir import Workdir

        validate(config)  # a value refused is one error line, not a note and then the error
        held = Workdir(workdir)  # nor is a workdir holding another run (read only; train() checks again, locked)
        held.check_resumable(config.to_dict())
        notes = unused_settings(config, overridden_keys(sys.argv[1:])) + held.resume_notes(config.to_dict())
        for note in notes:
            print(f"asgdjax-train: note: {note}", file=sys.stderr)

        if flags.FLAGS.dry_run:
            print(f"asgdjax-train: ok: {check(config, workdir)}")
            return
        summary = train(config, workdir, show_progress=flags.FLAGS.progress)
        if summary.get("already_complete"):
            print(
                f"asgdjax-train: {workdir!r} holds this run, complete at {summary['steps']} steps; nothing was "
                "changed (raise --config.steps to train further, or use another --workdir)",
                file=sys.stderr,
            )
    except ConfigError as e:
        fail(str(e))
    except Diverged as e:
        print(f"asgdjax-train: stopped: {e}", file=sys.stderr)
        sys.exit(3)
    except (OSError, MemoryError, RuntimeError) as e:
        why = exhaustion(e)
        if why is None:
            raise
        fail(f"stopped: {why}; {kept(workdir)}")
    print_summary(summary)


def run() -> None:
    """Console-script entry point."""
    run_app(main, "asgdjax-train", doc=__doc__)


if __name__ == "__main__":
    run()
