"""`asgdjax-predict`: how fast will N workers reach my target accuracy, and how stale will they be?

  asgdjax-predict --config=asgdjax/configs/mnist.py --calibrate_workers=2 --workers=1,2,4,8 --target=0.98
  asgdjax-predict --config=... --calibration=calibration.json --workers=8,64,1024

Calibrates the simulator's virtual clock from a short real run (or a saved/edited calibration.json, or a
finished async run's workdir), then simulates training for each worker count. Writes calibration.json,
predictions.json and predictions.png to --workdir.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

flags.DEFINE_string("workdir", "runs/predict", "Output folder.")
flags.DEFINE_string("calibration", "", "A calibration.json to use (edit one for hardware you do not have).")
flags.DEFINE_string(
    "profile", "", "A hardware profile in place of a calibration: a name in asgdjax/configs/hardware or a path."
)
flags.DEFINE_string("calibrate_from", "", "Calibrate from this finished mode=async run's workdir.")
flags.DEFINE_integer("calibrate_workers", 2, "Workers of the short real run that calibrates the clock.")
flags.DEFINE_integer("calibrate_steps", 200, "Gradients of that run.")
flags.DEFINE_string("workers", "1,2,4,8", "Worker counts to predict.")
flags.DEFINE_float("target", 0.95, "Target test accuracy.")
flags.DEFINE_integer("eval_every", 50, "Gradients between evaluations of the simulated runs.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    from asgdjax.cli import check_at_least, fail, start_tool
    from asgdjax.errors import ConfigError
    from asgdjax.flag_lists import positive_ints

    start_tool(argv, target=FLAGS.target)
    check_at_least(FLAGS.flag_values_dict(), {"calibrate_workers": 1, "calibrate_steps": 1, "eval_every": 1})
    try:
        run(FLAGS.config, positive_ints("workers", FLAGS.workers))
    except ConfigError as e:
        fail(str(e))


def run(config, counts: list[int]) -> None:
    from asgdjax.predict.clock import given_clock, mismatch
    from asgdjax.train.workdir import Workdir, check_tool_folder

    given = given_clock(profile=FLAGS.profile, calibration=FLAGS.calibration, calibrate_from=FLAGS.calibrate_from)
    if given is not None and (note := mismatch(config, given[0])):
        print(f"asgdjax-predict: note: {note}", file=sys.stderr)
    check_tool_folder(FLAGS.workdir, tool="asgdjax-predict", writes="calibration.json and predictions.json/.png")
    with Workdir(FLAGS.workdir):  # a second prediction on the same folder is refused, not interleaved
        predict_in(config, counts, given)


def predict_in(config, counts: list[int], given) -> None:
    """Calibrate (or take the given clock), simulate each worker count, print and write the predictions."""
    from asgdjax.predict.calibration import calibrate_workdir
    from asgdjax.predict.clock import calibration_run_config
    from asgdjax.predict.predict import check_folders, plot, predict
    from asgdjax.train import train

    if given is not None:
        cal = given[0]
    else:  # a short real run
        out = os.path.join(FLAGS.workdir, "calibration_run")
        train(
            calibration_run_config(config, FLAGS.calibrate_workers, FLAGS.calibrate_steps),
            out,
            show_progress=FLAGS.progress,
        )
        cal = calibrate_workdir(out)
    check_folders(config, cal, counts, FLAGS.workdir, FLAGS.eval_every)
    cal.save(os.path.join(FLAGS.workdir, "calibration.json"))
    rows = predict(config, cal, counts, FLAGS.target, FLAGS.workdir, FLAGS.eval_every, FLAGS.progress)
    with open(os.path.join(FLAGS.workdir, "predictions.json"), "w") as f:
        json.dump({"target": FLAGS.target, "calibration": cal.to_json(), "rows": rows}, f, indent=2)
    plot(rows, FLAGS.target, os.path.join(FLAGS.workdir, "predictions.png"), f"{config.model} on {config.dataset}")
    print(f"{'workers':>8} {'staleness':>10} {'grads/s':>10} {'s to target':>12} {'speedup':>8}  final acc")
    for r in rows:
        t = f"{r['seconds_to_target']:.2f}" if r["seconds_to_target"] is not None else "not reached"
        if r["diverged"]:
            t = "diverged"
        sp = f"{r['speedup_to_target']:.2f}x" if r["speedup_to_target"] else "-"
        print(
            f"{r['workers']:>8} {r['staleness_mean']:>10.2f} {r['gradients_per_second']:>10.1f} {t:>12} {sp:>8}"
            f"  {r['final_test_accuracy']:.4f}"
        )
    print(f"outputs: {os.path.abspath(FLAGS.workdir)}", file=sys.stderr)


def entry() -> None:
    from asgdjax.cli import run_app

    run_app(main, "asgdjax-predict", doc=__doc__)


if __name__ == "__main__":
    entry()
