"""`asgdjax-sweep`: a grid of configurations from the command line, run and tabulated.

  asgdjax-sweep --config=asgdjax/configs/default.py --config.mode=sim --config.num_workers=8 \\
      --sweep.learning_rate=0.02,0.05,0.1,0.2 --sweep.momentum=0,0.5,0.9,0.95 --workdir=runs/sweep

Every combination of the --sweep.KEY=v1,v2,... values runs into WORKDIR/KEY=v,.../ (rerunning the command
skips finished points); mode=sim points that differ only in learning rate, momentum, seed, delays, warm
start or staleness bound run as one simulated sweep (vmapped on a GPU). Writes WORKDIR/sweep.json,
sweep.csv and sweep.png (a heatmap for two keys, a line for one). A point that diverges (training loss NaN
or above max_train_loss) is a row of the table, with the step where it did (`diverged_at`) and no final
accuracy, and the sweep goes on; rerunning reads it back.
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import flags, logging

from asgdjax.cli import config_path, fail, overridden_keys, run_app
from asgdjax.sim.sweep import STRATEGIES
from asgdjax.sweep import grid, report, run_grid, split_argv

flags.DEFINE_string("workdir", None, "Output folder; default runs/sweep_<config name>.")
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "How points sharing a program run: auto (vmapped on GPU).")
flags.DEFINE_bool("progress", True, "Print each group as it starts.")
SWEEPS: list[tuple[str, str]] = []


def main(argv) -> None:
    from asgdjax.errors import ConfigError

    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]!r}; pass settings as --config.KEY=VALUE and --sweep.KEY=v1,v2")
    logging.set_verbosity(logging.WARNING)
    config = flags.FLAGS.config
    name = os.path.splitext(os.path.basename(config_path()))[0]
    workdir = flags.FLAGS.workdir or os.path.join("runs", f"sweep_{name}")
    say = (lambda s: print(f"asgdjax-sweep: {s}", file=sys.stderr)) if flags.FLAGS.progress else (lambda s: None)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        fail(f"--workdir={workdir!r} is a file; give a folder for the sweep's points and table")
    fresh = not os.path.exists(workdir)
    try:
        points = grid(config, SWEEPS)
        print_notes(config, points)
        os.makedirs(workdir, exist_ok=True)
        rows = run_grid(config, points, workdir, strategy=flags.FLAGS.strategy, progress=say)
    except ConfigError as e:
        if fresh and os.path.isdir(workdir) and not os.listdir(workdir):
            os.rmdir(workdir)  # a refused sweep leaves no trace
        fail(str(e))
    command = "asgdjax-sweep " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] + [f"--sweep.{k}={v}" for k, v in SWEEPS]
    )
    paths = report.write(rows, workdir, command=command)
    table = report.table(rows)
    print_table(table)
    collapsed = [os.path.basename(row["workdir"] or "") for row in table if row.get("health") == "collapsed"]
    if collapsed:
        print(f"asgdjax-sweep: WARNING collapsed (accuracy at chance or loss above its start): {', '.join(collapsed)}",
              file=sys.stderr)  # fmt: skip
    if "kept" in paths:
        print(
            f"the earlier sweep's table in this workdir is kept as {paths['kept']} (and its .csv, .png)",
            file=sys.stderr,
        )
    print(f"outputs: {paths['json']}, {paths['csv']}, {paths['png']}", file=sys.stderr)


def print_notes(config, points) -> None:
    """What the sweep's points ignore of the command line (once each), as asgdjax-train says it."""
    from asgdjax.errors import ConfigError
    from asgdjax.sweep.grid import apply
    from asgdjax.train.validate import unused_settings

    swept = [k for k, _ in SWEEPS]
    per_point = [unused_settings(apply(config, p), overridden_keys(sys.argv[1:]) + swept) for p in points]
    for key in swept:  # a swept key every point ignores would run identical points
        said = [next((n for n in notes if n.startswith(f"--config.{key} ")), None) for notes in per_point]
        if all(said):
            reason = said[0].removeprefix(f"--config.{key} ")  # type: ignore[union-attr]
            raise ConfigError(f"--sweep.{key} {reason}, so its values would run identical points; sweep a key it reads")
    for note in dict.fromkeys(n for notes in per_point for n in notes):
        for key in swept:
            note = note.replace(f"--config.{key} ", f"--sweep.{key} ")
        print(f"asgdjax-sweep: note: {note}", file=sys.stderr)


def print_table(table: list[dict]) -> None:
    keys = [k for k in table[0] if k not in report.COLUMNS and k not in ("workdir", "health")]
    measured = ["final_test_accuracy", "staleness_mean", "virtual_seconds"]  # a sync sweep has no staleness or clock
    cols = keys + [c for c in measured if any(row.get(c) is not None for row in table)]
    cols += ["diverged_at"] if any(row.get("diverged_at") is not None for row in table) else []
    cols += ["health"] if any(row.get("health") not in ("ok", None) for row in table) else []
    print("  ".join(f"{c:>20}" for c in cols))
    for row in table:
        print("  ".join(f"{_fmt(row.get(c)):>20}" for c in cols))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def entry() -> None:
    """Console-script entry point: --sweep.* arguments are taken out before absl sees the flags."""
    from asgdjax.errors import ConfigError

    try:
        rest, SWEEPS[:] = split_argv(sys.argv)
    except ConfigError as e:
        print(f"asgdjax-sweep: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv[:] = rest
    run_app(main, "asgdjax-sweep", doc=__doc__)


if __name__ == "__main__":
    entry()
