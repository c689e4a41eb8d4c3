"""`asgdjax-plan`: which asynchronous configuration reaches my target accuracy soonest on my hardware?

  asgdjax-plan --config=asgdjax/configs/mnist.py --target=0.96
  asgdjax-plan --config=... --profile=paine2013_gigabit --workers=1,2,4,8,16 --target=0.97
  asgdjax-plan --config=... --calibration=calibration.json --protocols=async,downpour:4,ssp:8 --rules=none,dc_asgd

Searches workers x protocols x staleness rules x learning rates x momenta x warm starts by simulated training
on a clock: measured by short real runs of each worker count and protocol (default: 3 rounds, pooled), or one
calibration.json (asgdjax-predict writes and you may edit one), a finished async run's workdir, or a hardware
profile. Each worker count gets a successive-halving bracket in clock time (every candidate trains to
budget/eta^2, the best third to budget/eta, the best of those to the budget), then its winner reruns over
--seeds seeds. Brackets go from
the fewest workers up; once some worker count reaches the target in T seconds, larger ones train only to
1.25 T (more workers belong on the front only if they are faster), shown as "not by 1.25 T". Prints the Pareto
front of time to target against workers and the recommended configuration's asgdjax-train command; writes
plan.json and plan.png to --workdir.
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import flags

from asgdjax.cli import check_at_least, config_path, fail, run_app, start_tool

flags.DEFINE_string("workdir", None, "Output folder; default runs/plan_<config name>.")
flags.DEFINE_float("target", 0.95, "Target test accuracy.")
flags.DEFINE_string("workers", "2,4,8", "Worker counts to consider.")
flags.DEFINE_string("protocols", "async,downpour:4", "Protocols: async, downpour:N, ssp:S, softsync:N.")
flags.DEFINE_string("rules", "staleness_lr,none", "Staleness rules (asgdjax.rules.RULES).")
flags.DEFINE_string("learning_rates", "0.05,0.1,0.2", "Learning rates.")
flags.DEFINE_string("momenta", "0.5,0.9", "Momenta (the total wanted; compensation follows the config).")
flags.DEFINE_string(
    "warm_starts",
    "config,2x",
    "Warm starts (gradients worker 0 trains alone first, Paine et al. 2013): config (the config's own), a "
    "multiple of it (2x) or a number of gradients.",
)
flags.DEFINE_float(
    "budget", 0.0, "Clock seconds each candidate may train; 0 = the config's steps with the most workers."
)
flags.DEFINE_integer("eta", 3, "Successive halving keeps the best 1/eta at each rung.")
flags.DEFINE_integer(
    "rungs",
    0,
    "Rungs per bracket (the first trains budget / eta^(rungs-1)); 0: floor(log_eta(candidates)) + 1, so the "
    "last rung trains fewer than eta candidates (the default space's 32 per worker count: 32, 11, 4, 2).",
)
flags.DEFINE_integer("seeds", 3, "Seeds each bracket's winner reruns with (the spread of its prediction).")
flags.DEFINE_integer(
    "evals",
    200,
    "Evaluations per candidate over the budget (the time-to-target resolution; a lane stops at its target).",
)
flags.DEFINE_string("calibration", "", "A calibration.json for every worker count.")
flags.DEFINE_string(
    "profile", "", "A hardware profile for every worker count: a name in asgdjax/configs/hardware or a path."
)
flags.DEFINE_string("calibrate_from", "", "Calibrate every worker count from this finished mode=async run's workdir.")
flags.DEFINE_integer(
    "calibrate_steps",
    1500,
    "Gradients of each (workers, protocol) calibration run: a few seconds of real steps, so a noisy host's "
    "slow and fast spells average out (300 gradients, under a second here, gave a clock 27-32% fast).",
)
flags.DEFINE_integer(
    "calibrate_rounds",
    3,
    "Calibration runs of each (workers, protocol), taken in turn across the pairs and averaged: one run can "
    "catch this host in a slow or fast spell (session 18: 1.18 ms a step against 0.87-0.90 in the real runs).",
)
flags.DEFINE_bool("progress", True, "Print what the search is doing.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    from asgdjax.errors import ConfigError
    from asgdjax.plan import Space

    start_tool(argv, target=FLAGS.target)
    check_at_least(
        FLAGS.flag_values_dict(),
        {"eta": 2, "rungs": 0, "seeds": 1, "evals": 1, "calibrate_steps": 1, "calibrate_rounds": 1},
    )
    if not 0 <= FLAGS.budget < float("inf"):
        fail(f"--budget={FLAGS.budget!r} is not allowed; use finite clock seconds > 0 (or 0 for the default)")
    try:
        space = Space.parse(
            workers=FLAGS.workers,
            protocols=FLAGS.protocols,
            rules=FLAGS.rules,
            learning_rates=FLAGS.learning_rates,
            momenta=FLAGS.momenta,
            warm_starts=FLAGS.warm_starts,
            config_warm_start=int(FLAGS.config.warm_start_steps),
            config_steps=int(FLAGS.config.steps),
            warm_starts_given=bool(FLAGS["warm_starts"].present),
        )
        if FLAGS["warm_starts"].present and max(space.workers) == 1:
            print("asgdjax-plan: note: --warm_starts is ignored: a lone worker has no warm start", file=sys.stderr)
        run(FLAGS.config, space)
    except ConfigError as e:
        fail(str(e))


def run(config, space) -> None:
    from asgdjax.predict.clock import given_clock, mismatch
    from asgdjax.train.validate import validate
    from asgdjax.train.workdir import Workdir, check_tool_folder

    validate(config)
    name = os.path.splitext(os.path.basename(config_path()))[0]
    workdir = FLAGS.workdir or os.path.join("runs", f"plan_{name}")
    given = given_clock(profile=FLAGS.profile, calibration=FLAGS.calibration, calibrate_from=FLAGS.calibrate_from)
    if given is not None:
        for note in (mismatch(config, given[0]), other_workers(given[0], space.workers)):
            if note:
                print(f"asgdjax-plan: note: {note}", file=sys.stderr)
    check_tool_folder(workdir, tool="asgdjax-plan", writes="calibration/, plan.json and plan.png")
    with Workdir(workdir):  # a second plan on the same folder is refused, not interleaved
        plan_in(config, space, workdir, given)


def plan_in(config, space, workdir: str, given) -> None:
    """Calibrate (or take the given clock), search, print and write the plan in the locked workdir."""
    from asgdjax.plan import search
    from asgdjax.plan.front import command
    from asgdjax.plan.report import to_json, write

    say = (lambda s: print(f"asgdjax-plan: {s}", file=sys.stderr, flush=True)) if FLAGS.progress else (lambda s: None)
    clocks, described = make_clocks(config, space, workdir, say, given)
    say(f"searching {space.size} configurations (workers {','.join(map(str, space.workers))})")
    plan = search.search(
        config,
        clocks,
        space,
        target=FLAGS.target,
        budget=FLAGS.budget,
        eta=FLAGS.eta,
        rungs=FLAGS.rungs,
        seeds=FLAGS.seeds,
        evals=FLAGS.evals,
        progress=say,
    )
    path = os.path.relpath(config_path())
    path = config_path() if path.startswith("..") else path
    recommended = command(plan.recommended, path, config, user_flags=sys.argv[1:])
    argv = "asgdjax-plan " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    record = to_json(plan, command=argv, target=FLAGS.target, clocks=described, recommended_command=recommended)
    paths = write(plan, workdir, record)
    print_plan(plan, recommended)
    print(f"outputs: {paths['json']}, {paths['png']}", file=sys.stderr)
    if "kept" in paths:
        print(f"the earlier plan in this workdir is kept as {paths['kept']} (and its .png)", file=sys.stderr)


def make_clocks(config, space, workdir: str, say, given):
    """The clock of every worker count (the one given, else calibration runs of each count and protocol),
    and a JSON description of where it came from."""
    from asgdjax.plan import Clocks
    from asgdjax.plan.calibrate import calibrate_pairs

    if given is not None:
        return Clocks(default=given[0]), given[1]
    pairs = [(k, p) for k in space.workers for p in space.protocols]
    measured = calibrate_pairs(
        config, pairs, workdir, steps=FLAGS.calibrate_steps, rounds=FLAGS.calibrate_rounds, say=say
    )
    return Clocks(measured=measured), {f"{k} workers, {p.name}": c.to_json() for (k, p), c in measured.items()}


def other_workers(cal, workers) -> str | None:
    """A note when one clock, measured with some number of workers, serves other worker counts: their
    queueing at the coordinator is then predicted from its service time, not measured (on a shared host
    more workers also slow each step, which it cannot know)."""
    measured = cal.measured.get("num_workers")
    others = [k for k in workers if measured is not None and k != measured]
    if not others:
        return None
    counts = ",".join(map(str, others)) + (" worker" if others == [1] else " workers")
    return (
        f"the clock was measured with {measured} workers; {counts} reuse its step times (how much more "
        "workers slow each other's steps on a shared host is not measured); without --calibration each worker "
        "count gets short calibration runs of its own"
    )


def print_plan(plan, recommended: str) -> None:
    print(f"{'workers':>8} {'s to target':>14} {'+-':>8} {'accuracy':>9}  configuration")
    front = {r.workers for r in plan.front}
    for r in plan.rows:
        t = f"{r.seconds:.4g}" if r.seconds is not None else _not_reached(r.trained_seconds, plan.budget)
        s = f"{r.spread:.2g}" if r.spread is not None else "-"
        mark = " (front)" if r.workers in front else ""
        print(f"{r.workers:>8} {t:>14} {s:>8} {r.accuracy:>9.4f}  {r.candidate.name}{mark}")
    print(f"recommended: {plan.recommended.candidate.name}")
    print(f"  {recommended}")
    row = plan.recommended
    print(f"  (--config.steps={row.steps}: the gradients its bracket trained, {row.trained_seconds:.4g} clock s)")
    if row.seconds is not None:  # the config's own eval_every (MNIST: 500) would show the target late
        hits = [s.gradients for s in row.scores if s.seconds_to_target is not None]
        print(
            f"  (predicted to reach {FLAGS.target:g} after about {round(sum(hits) / len(hits))} gradients, "
            f"{row.seconds:.4g} clock s: add --config.eval_every=50 to see when it does)"
        )
    for note in plan.notes:
        print(f"asgdjax-plan: note: {note}", file=sys.stderr)
    print(
        f"search: {plan.wall_seconds:.1f} s wall, {plan.simulated_gradients:,} simulated gradients",
        file=sys.stderr,
    )


def _not_reached(trained: float, budget: float) -> str:
    """'not reached' within the budget, or 'not by T' where the bracket stopped at T (fewer workers were
    faster: search.BEAT_MARGIN)."""
    return "not reached" if trained >= budget else f"not by {trained:.4g}"


def entry() -> None:
    run_app(main, "asgdjax-plan", doc=__doc__)


if __name__ == "__main__":
    entry()
