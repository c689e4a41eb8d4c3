"""Paine et al. 2013 (GPU A-SGD) in the paper's regime: clients x n_sync x warm/cold start, every run a
simulated training (every gradient computed, staleness as Downpour makes it) on the virtual clock of a
hardware profile, where a push and a fetch move the parameters over PCIe and the network.

  python experiments/paper_gpu_asgd.py --quick              # MNIST small CNN, 2-core CPU: ~10 minutes
  python experiments/paper_gpu_asgd.py                      # CIFAR-10 layers-18pct on the offline 25k set
  python experiments/paper_gpu_asgd.py --setting=imagenet   # one-GPU AlexNet on ILSVRC-2012 (needs the data)
  python experiments/paper_gpu_asgd.py --config=asgdjax/configs/paine2013.py:imagenet --config.steps=20000
                                        # any setting with its fields overridden (ml_collections)
  python experiments/paper_gpu_asgd.py --profile=paine2013_10gigabit   # another profile (or a JSON path)

The clock is the profile's (default asgdjax/configs/hardware/paine2013_gigabit.json: 2013 GPU clients
computing one-GPU AlexNet gradients, 0.5 s a step, and moving its 244 MB of parameters over PCIe 2.0 and
gigabit MPI); the accuracy is the setting's own training (CIFAR-10 here). So "virtual seconds" are the
seconds the paper's cluster would take per gradient, while the curve is what asynchrony does to this net.
Every run gets the one client's virtual seconds (`--budget=equal_time`, the default: the paper's question,
how soon on the cluster's clock), so more clients compute more gradients in the same time; `--budget=
equal_gradients` gives every run the config's steps instead (how far per gradient). Outputs (JSON with the
command and the profile, PNG): speedup to a target error against clients per n_sync, next to the paper's
up-to-3.2x with 8 clients; test error against virtual seconds. A run already in the outdir's results.json
(same setting, profile and budget) is read from it, not retrained: `--clients=1,2,4,8` extends a committed
study of 1, 2 and 4 clients by the 8-client runs alone (results.json lists the earlier commands), and the
file keeps the earlier runs a later command's grid leaves out, so `--clients=1,2 --n_sync=300` adds one
point to a committed study without retraining or dropping the rest.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
from absl import flags
from study import command, ensure_dataset, pyplot, run_script, save, savefig

from asgdjax.cli import define_config
from asgdjax.configs.paine2013 import get_config
from asgdjax.core.trace import Trace
from asgdjax.delays import COMM_KEYS
from asgdjax.errors import ConfigError
from asgdjax.flag_lists import positive_ints
from asgdjax.predict.calibration import Calibration
from asgdjax.predict.predict import sim_config
from asgdjax.predict.profiles import profile_path
from asgdjax.predict.targets import accuracy_curve, gradient_times
from asgdjax.sweep import Point, grid, run_grid
from asgdjax.sweep.grid import apply
from asgdjax.train.build import schedule_from_config

flags.DEFINE_bool("quick", False, "MNIST small CNN, short runs (same as --setting=mnist).")
flags.DEFINE_enum("setting", "cifar10", ["cifar10", "mnist", "imagenet"], "paine2013 config variant.")
define_config(
    None,
    "Instead of --setting: a config file (e.g. asgdjax/configs/paine2013.py:imagenet) and --config.* overrides.",
)
flags.DEFINE_string("profile", "paine2013_gigabit", "Hardware profile: a name in asgdjax/configs/hardware or a path.")
flags.DEFINE_string("clients", "1,2,4,8,16", "Client counts.")
flags.DEFINE_string("n_sync", "1,10,100,300", "n_fetch = n_push values.")
flags.DEFINE_string("cold", "", "Client counts that also run a cold start (default: all).")
flags.DEFINE_float("late", 0.75, "The target error is what one client reaches at this fraction of its run.")
flags.DEFINE_string("outdir", "experiments/results/paper_gpu_asgd", "Where JSON, PNG and run folders go.")
flags.DEFINE_enum(
    "budget",
    "equal_time",
    ["equal_time", "equal_gradients"],
    "equal_time: every run gets the one client's virtual seconds and computes the gradients its clients fit "
    "in them (the paper's question: how soon on the cluster's clock); equal_gradients: every run the config's "
    "steps (how far per gradient).",
)
FLAGS = flags.FLAGS


def _positive_ints(text: str) -> bool:
    try:
        return bool(positive_ints("values", text))
    except ConfigError:
        return False


flags.register_validator("clients", _positive_ints, "give comma-separated client counts >= 1, e.g. 1,2,4,8")
flags.register_validator("n_sync", _positive_ints, "give comma-separated n_sync values >= 1, e.g. 1,10,100")
flags.register_validator("cold", lambda t: not t or _positive_ints(t), "give comma-separated client counts, or nothing")
flags.register_validator("late", lambda x: 0 < x <= 1, "give a fraction of the one client's run in (0, 1]")
MAX_STEPS_FACTOR = 16  # an equal-time run computes at most this many times the config's gradients
PAPER = "up to 3.2x faster ImageNet training with 8 GPU clients (n_sync chosen to amortise communication)"


def main(argv):
    del argv
    counts = set(positive_ints("clients", FLAGS.clients))
    if not counts - {1}:
        raise ConfigError(
            f"--clients={FLAGS.clients!r} needs a count above 1 (the one client is the baseline and always runs)"
        )
    if stray := sorted(set(positive_ints("cold", FLAGS.cold)) - counts - {1} if FLAGS.cold else ()):
        raise ConfigError(f"--cold={FLAGS.cold!r} names {stray}, not among --clients={FLAGS.clients!r}")
    setting, base = study_config()
    ensure_dataset(base.dataset)
    profile = Calibration.load(profile_path(FLAGS.profile))
    out = os.path.join(FLAGS.outdir, f"{setting}_{os.path.splitext(os.path.basename(profile_path(FLAGS.profile)))[0]}")
    os.makedirs(out, exist_ok=True)
    clients, n_sync = FLAGS.clients, FLAGS.n_sync
    # The clock of every point: the profile's (sim_config copies it in; worker counts come from the grid).
    clocked = sim_config(base, profile, 1, base.eval_every)
    many = ",".join(x for x in clients.split(",") if int(x) > 1)
    warm = f"{base.warm_start_steps},0"
    points = grid(clocked, [("num_workers", many), ("n_fetch", n_sync), ("warm_start_steps", warm)])
    cold = {int(x) for x in FLAGS.cold.split(",") if x} or {int(x) for x in many.split(",")}
    points = [p for p in points if p.overrides["warm_start_steps"] or p.overrides["num_workers"] in cold]
    for p in points:
        p.overrides["n_push"] = p.overrides["n_fetch"]
    # The baseline, as in the paper: one GPU training alone, no parameter server, nothing to communicate.
    alone = {"num_workers": 1, "warm_start_steps": 0, **{f"delay.{k}": 0.0 for k in COMM_KEYS}}
    points.insert(0, Point(alone))
    if FLAGS.budget == "equal_time":
        seconds = float(gradient_times(schedule_from_config(apply(clocked, points[0])))[-1])
        for p in points[1:]:
            p.overrides["steps"] = steps_within(apply(clocked, p), seconds)
        print(f"equal time: {seconds:.4g} virtual s each ({base.steps} gradients of one client)", flush=True)
    described = describe(setting, base)
    delay = profile.to_json()["delay"]
    earlier = committed(f"{out}/results.json", described, delay)
    todo = [p for p in points if p.name not in earlier["runs"]]
    if len(todo) < len(points):
        print(f"{len(points) - len(todo)} run(s) read from {out}/results.json, {len(todo)} to train", flush=True)
    rows = run_grid(clocked, todo, os.path.join(out, "runs"), progress=lambda s: print(s, flush=True))
    trained = {r.point.name: curve(r) for r in rows}
    runs = [earlier["runs"].get(p.name) or trained[p.name] for p in points]
    names = {p.name for p in points}
    kept = [r for name, r in earlier["runs"].items() if name not in names]
    if kept:  # a results.json accumulates: a later command may train a corner of the grid alone
        print(f"{len(kept)} earlier run(s) outside this command's grid kept in {out}/results.json", flush=True)
    runs = sorted(runs + kept, key=lambda r: (r["workers"] > 1, r["workers"], r["n_sync"], not r["warm"]))
    reused = len(todo) < len(points) or kept
    history = [c for c in earlier["commands"] if c != command()] if reused else []
    one = runs[0]
    target = error_at(one, FLAGS.late)
    for r in runs:
        r["seconds_to_target"] = time_to(r, target)
        r["speedup"] = one["seconds_to_target"] / r["seconds_to_target"] if r["seconds_to_target"] else None
    best = max((r for r in runs if r["speedup"]), key=lambda r: r["speedup"])
    print(f"target test error {target:.4f}; best: {best['name']} at {best['speedup']:.2f}x ({PAPER})")
    save(
        f"{out}/results.json",
        {
            "paper": "Paine, Jin, Yang, Lin, Huang 2013, GPU Asynchronous Stochastic Gradient Descent to Speed Up "
            f"Neural Network Training: {PAPER}",
            "setting": described,
            "profile": {"name": profile.measured.get("name"), "delay": delay},
            "earlier_commands": history,
            "target_error": target,
            "target_rule": f"the test error one client reaches at {FLAGS.late:.0%} of its run",
            "budget": FLAGS.budget,
            "best": {k: best[k] for k in ("name", "workers", "n_sync", "warm", "speedup")},
            "runs": runs,
        },
    )
    plot(runs, target, out, setting)


def study_config():
    """(name, config): --config's file and overrides when given (named after its variant, e.g. imagenet),
    else the paine2013 variant --setting (or --quick) names."""
    if FLAGS["config"].present:
        path = FLAGS["config"].config_filename
        name = path.split(":", 1)[1] if ":" in path else os.path.splitext(os.path.basename(path))[0]
        return name, FLAGS.config
    setting = "mnist" if FLAGS.quick else FLAGS.setting
    return setting, get_config(setting)


def describe(setting: str, base) -> str:
    return (
        f"{setting}: {base.dataset}, {base.model}, batch {base.batch_size}, {base.steps} gradients, "
        f"{base.optimizer} lr {base.learning_rate} momentum {base.momentum}, rule {base.rule}"
    )


def committed(path: str, setting: str, delay: dict) -> dict:
    """The runs of an earlier results.json at `path` for the same setting, profile and budget, by point name
    (a point's name holds its overrides, steps included), and the commands that trained them: so a committed
    study extends to more clients without its run folders (which are not committed) and without retraining.
    Anything that differs, or no file: nothing reused."""
    none: dict = {"runs": {}, "commands": []}
    if not os.path.exists(path):
        return none
    try:
        with open(path) as f:
            old = json.load(f)
        if not (isinstance(old, dict) and isinstance(old.get("runs"), list) and "command" in old):
            raise ValueError("no 'command' and 'runs'")
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{path} cannot be read as a study's results ({e!r}); move it away to train every run"
        ) from None
    then = (old.get("setting"), old.get("profile", {}).get("delay"), old.get("budget"))
    if then != (setting, delay, FLAGS.budget):
        print(f"{path} is for another setting, profile or budget: every run trains again", flush=True)
        return none
    commands = [*old.get("earlier_commands", []), old["command"]]
    return {"runs": {r["name"]: r for r in old["runs"]}, "commands": commands}


def steps_within(config, seconds: float) -> int:
    """Gradients the point's clients compute within `seconds` of virtual time (from a schedule that runs
    past it, at most MAX_STEPS_FACTOR times the config's steps)."""
    c, cap = copy.deepcopy(config), MAX_STEPS_FACTOR * config.steps
    while True:
        times = gradient_times(schedule_from_config(c))
        if times[-1] > seconds or c.steps >= cap:
            return max(1, min(cap, int(np.searchsorted(times, seconds, "right"))))
        c.steps = min(cap, 2 * c.steps)


def curve(row) -> dict:
    """One point's error curve against gradients and virtual seconds."""
    o = row.point.overrides
    trace = Trace.load(os.path.join(row.summary["workdir"], "trace.npz"))
    times = gradient_times(trace)
    pts = [(g, 1 - a, float(times[min(g, len(times)) - 1])) for g, a in accuracy_curve(row.summary["workdir"])]
    stop = row.summary.get("diverged_at")  # a diverged run (asgdjax.sweep.runner): a result, not a crash
    return {
        "name": row.point.name,
        "workers": o["num_workers"],
        "n_sync": o.get("n_fetch", 1),
        "warm": o["warm_start_steps"] > 0,
        "communicates": "delay.server_bandwidth" not in o,
        "staleness_mean": row.summary.get("staleness_mean"),
        "final_test_error": None if stop else 1 - (row.summary.get("final_test_accuracy") or 0.0),
        "virtual_seconds": row.summary.get("virtual_seconds"),
        "gradients": int(stop or trace.num_gradients),
        "diverged_at_seconds": float(times[min(stop, len(times)) - 1]) if stop else None,
        "curve": pts,
    }


def error_at(run_: dict, fraction: float) -> float:
    """The best test error the run reached by `fraction` of its gradients (a target it reaches late)."""
    last = run_["curve"][-1][0]
    return min(e for g, e, _ in run_["curve"] if g <= fraction * last)


def time_to(run_: dict, target: float):
    return next((t for _, e, t in run_["curve"] if e <= target), None)


def plot(runs: list[dict], target: float, out: str, setting: str) -> None:
    """Speedup to the target against clients (the paper's figure; runs that never reach it marked x at 0),
    test error where each run's time ends against clients (warm starts filled, cold starts open, a diverged
    run's last error before it diverged as X; defined when nothing reaches the target), and every warm run's
    test error against virtual seconds (colour: n_sync; line style: clients)."""
    plt = pyplot()
    fig, (a, m, b) = plt.subplots(1, 3, figsize=(16, 4.2))
    syncs = sorted({r["n_sync"] for r in runs})
    shown = [r for r in runs if r["warm"] or r["workers"] == 1]
    for i, n in enumerate(syncs):
        pts = sorted(((r["workers"], r) for r in shown if r["n_sync"] == n or r["workers"] == 1), key=lambda wr: wr[0])
        ws = [w for w, _ in pts]
        a.plot(ws, [r["speedup"] or 0.0 for _, r in pts], "-", color=f"C{i}", label=f"n_sync {n} (warm)")
        for w, r in pts:
            a.plot(w, r["speedup"] or 0.0, "o" if r["speedup"] else "x", color=f"C{i}", ms=7)
        ends = [np.nan if r["final_test_error"] is None else r["final_test_error"] for _, r in pts]
        m.plot(ws, ends, "o-", color=f"C{i}", label=f"n_sync {n} (warm)")
        for w, r in pts:  # a diverged run: its last evaluation before it diverged
            if r.get("diverged_at_seconds") is not None and r["curve"]:
                m.plot(w, r["curve"][-1][1], "X", color=f"C{i}", ms=9)
        cold = sorted(
            ((r["workers"], r) for r in runs if not r["warm"] and r["workers"] > 1 and r["n_sync"] == n),
            key=lambda wr: wr[0],
        )
        if cold:  # the paper's cold start: every client from the start, no single-client warm-up
            ys = [np.nan if r["final_test_error"] is None else r["final_test_error"] for _, r in cold]
            m.plot([w for w, _ in cold], ys, "o--", color=f"C{i}", mfc="none", label=f"n_sync {n} (cold)")
            for w, r in cold:
                if r.get("diverged_at_seconds") is not None and r["curve"]:
                    m.plot(w, r["curve"][-1][1], "X", color=f"C{i}", mfc="none", ms=9)
    if any(r.get("diverged_at_seconds") is not None for r in runs):
        m.plot([], [], "X", color="gray", label="diverged (last error before)")
    a.axhline(3.2, color="gray", ls=":", lw=1)
    a.text(1, 3.25, "paper: 3.2x with 8 clients", fontsize=8, color="gray")
    a.set(xscale="log", xlabel="clients", ylabel="speedup to target error (x: not reached)")
    a.set_title(f"speedup to {target:.3f} test error", fontsize=10)
    m.axhline(target, color="gray", ls=":", lw=1)
    m.set(xscale="log", xlabel="clients", ylabel="test error where the run ends")
    m.set_title("test error at the end of each run's time", fontsize=10)
    a.legend(fontsize=8)
    m.legend(fontsize=6.5, ncol=2, loc="upper left")
    m.set_ylim(top=m.get_ylim()[1] + 0.6 * (m.get_ylim()[1] - m.get_ylim()[0]))  # room for the legend above
    dashes = ("-", "--", "-.", ":", (0, (1, 3)))
    styles = dict(zip(sorted({r["workers"] for r in shown}), dashes, strict=False))
    for r in shown:
        colour = "k" if r["workers"] == 1 else f"C{syncs.index(r['n_sync'])}"
        b.plot(
            [t for _, _, t in r["curve"]],
            [e for _, e, _ in r["curve"]],
            ls=styles.get(r["workers"], "-"),
            marker=".",
            color=colour,
            label=f"{r['workers']} client(s)" + ("" if r["workers"] == 1 else f", n_sync {r['n_sync']}"),
        )
    b.axhline(target, color="gray", ls=":", lw=1)
    b.set(xscale="log", yscale="log", xlabel="virtual seconds (hardware profile)", ylabel="test error")
    b.set_title(setting, fontsize=10)
    b.legend(fontsize=6, ncol=2)
    savefig(fig, f"{out}/paper_gpu_asgd.png")


if __name__ == "__main__":
    run_script(main)
