"""Paine et al. 2013 (GPU A-SGD), scaled to what runs here: clients, n_sync and warm start, in the
simulator on a virtual clock calibrated from measured step times.

  python experiments/paper_gpu_asgd.py --quick            # MNIST small CNN, a few minutes on 2 CPU cores
  python experiments/paper_gpu_asgd.py                    # CIFAR-10 cuda-convnet 18pct on the real 25k set
  python experiments/paper_gpu_asgd.py --full             # the paper's own setting: AlexNet on ILSVRC-2012

Three studies, each a set of simulated runs (every gradient computed, staleness as the protocol makes it):
  clients  1, 2, 4, 8, 16 clients, n_sync = 1, warm start
  n_sync   8 clients, n_sync = n_fetch = n_push in {1, 10, 100, 300}, warm start
  warm     8 clients, warm start against cold start
The virtual clock: a short real asynchronous run of 2 workers on this machine is calibrated (step-time
distribution, coordinator latency and service time: `asgdjax.predict`) and every simulated run uses it, so
"seconds" are this machine's seconds if it had that many such workers. Outputs (JSON + PNG): test error and
training loss against gradients and against virtual time, and the speedup to a target error per client
count (the paper reports up to 3.2x on ImageNet with 8 GPU clients).
"""

from __future__ import annotations

import os

from absl import app, flags
from study import configure, ensure_dataset, pyplot, run, save, savefig

from asgdjax.configs.cifar10_18pct import get_config as cifar_config
from asgdjax.configs.mnist import get_config as mnist_config
from asgdjax.core.trace import Trace
from asgdjax.predict.calibration import calibrate_workdir
from asgdjax.predict.predict import sim_config
from asgdjax.predict.targets import gradient_times

flags.DEFINE_bool("quick", False, "MNIST small CNN, short runs.")
flags.DEFINE_bool("full", False, "AlexNet on ILSVRC-2012 (needs the ImageNet input pipeline: see BUILD.md).")
flags.DEFINE_string("clients", "1,2,4,8,16", "Client counts of the clients study.")
flags.DEFINE_string("n_sync", "1,10,100,300", "n_fetch = n_push values of the n_sync study.")
flags.DEFINE_float("target_error", -1.0, "Target test error for speedups (-1: 0.05 quick, 0.5 CIFAR-10).")
flags.DEFINE_string("outdir", "experiments/results/paper_gpu_asgd", "Where JSON, PNG and run folders go.")
FLAGS = flags.FLAGS


def base():
    if FLAGS.full:
        raise SystemExit(
            "--full (AlexNet on ILSVRC-2012) is not runnable yet: asgdjax has no streaming ImageNet input "
            "pipeline (the images do not fit in memory); the AlexNet model and its GPU step exist "
            "(experiments/bench/gpu_alexnet.py). See BUILD.md, Datasets."
        )
    if FLAGS.quick:
        c = mnist_config()
        c.batch_size, c.steps, c.warm_start_steps = 32, 800, 100
        c.eval_every, c.log_every = 50, 50
    else:
        c = cifar_config()
        c.steps, c.warm_start_steps = 1200, 150  # 3 epochs of the 25k set at batch 64
        c.eval_every, c.log_every = 100, 50
        c.learning_rate, c.momentum, c.lr_schedule, c.rule = 0.05, 0.5, "cosine", "staleness_lr"
    c.checkpoint_every = c.steps
    return c


def calibrate(config, out: str):
    """A short real async run (2 workers, no evaluation) on this machine -> its calibration."""
    from asgdjax.train import train

    d = f"{out}/calibration_run"
    if not os.path.exists(f"{d}/runtime_stats.json"):
        c = configure(config, mode="async", num_workers=2, steps=120, warm_start_steps=0)
        c.eval_every = c.log_every = c.checkpoint_every = c.steps
        train(c, d, show_progress=False)
    cal = calibrate_workdir(d)
    cal.save(f"{out}/calibration.json")
    return cal


def simulate(config, cal, name: str, out: str, k: int, **kw) -> dict:
    c = sim_config(configure(config, **kw), cal, k, config.eval_every)
    r = run(c, f"{out}/runs/{name}")
    times = gradient_times(Trace.load(f"{out}/runs/{name}/trace.npz"))
    curve = [(g, 1 - a, float(times[min(g, len(times)) - 1])) for g, a in r["curve"]]
    return {
        "name": name,
        "workers": k,
        **kw,
        "curve": curve,
        "diverged": r["diverged"],
        "final_test_error": 1 - r["summary"].get("final_test_accuracy", float("nan")),
        "staleness_mean": r["summary"].get("staleness_mean"),
    }


def time_to(run_: dict, target: float):
    return next(((g, t) for g, e, t in run_["curve"] if e <= target), (None, None))


def main(argv):
    del argv
    config = base()
    ensure_dataset(config.dataset)
    out = os.path.join(FLAGS.outdir, "quick" if FLAGS.quick else "cifar10_18pct")
    os.makedirs(out, exist_ok=True)
    target = FLAGS.target_error if FLAGS.target_error > 0 else (0.05 if FLAGS.quick else 0.5)
    cal = calibrate(config, out)
    runs = {"clients": [], "n_sync": [], "warm": []}
    for k in [int(x) for x in FLAGS.clients.split(",")]:
        runs["clients"].append(simulate(config, cal, f"clients{k}", out, k))
    for n in [int(x) for x in FLAGS.n_sync.split(",")]:
        r = next((x for x in runs["clients"] if x["workers"] == 8), None) if n == 1 else None
        runs["n_sync"].append(r or simulate(config, cal, f"nsync{n}", out, 8, n_fetch=n, n_push=n))
    runs["warm"] = [
        next(x for x in runs["clients"] if x["workers"] == 8),
        simulate(config, cal, "cold8", out, 8, warm_start_steps=0),
    ]
    one = time_to(runs["clients"][0], target)[1]
    speedups = []
    for r in runs["clients"]:
        g, t = time_to(r, target)
        speedups.append(
            {
                "workers": r["workers"],
                "gradients_to_target": g,
                "seconds_to_target": t,
                "speedup": one / t if (one and t) else None,
                "final_test_error": r["final_test_error"],
                "staleness_mean": r["staleness_mean"],
            }
        )
        print(
            f"clients {r['workers']:3d}: test error {r['final_test_error']:.4f}, staleness "
            f"{r['staleness_mean']:.2f}, to {target:.0%} error: {t} s "
            f"(speedup {speedups[-1]['speedup']})",
            flush=True,
        )
    for r in runs["n_sync"][1:] + runs["warm"][1:]:
        print(f"{r['name']}: test error {r['final_test_error']:.4f}, time to target {time_to(r, target)[1]}")
    save(
        f"{out}/results.json",
        {
            "paper": "Paine, Jin, Yang, Lin, Huang 2013, GPU Asynchronous Stochastic Gradient Descent to Speed Up "
            "Neural Network Training: up to 3.2x faster ImageNet training with 8 GPU clients",
            "setting": f"{config.dataset}, {config.model}, batch {config.batch_size}, {config.steps} gradients, "
            f"{config.optimizer} lr {config.learning_rate} momentum {config.momentum}, rule {config.rule}",
            "target_error": target,
            "calibration": cal.to_json(),
            "speedups": speedups,
            "runs": {k: [{x: v for x, v in r.items()} for r in rs] for k, rs in runs.items()},
        },
    )
    plot(runs, target, out)


def plot(runs: dict, target: float, out: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for col, (study, _) in enumerate((("clients", "workers"), ("n_sync", "n_push"), ("warm", "warm_start_steps"))):
        for r in runs[study]:
            name = {
                "clients": f"{r['workers']} clients",
                "n_sync": f"n_sync {r.get('n_push', 1)}",
                "warm": "cold start" if r["name"].startswith("cold") else "warm start",
            }[study]
            g = [x[0] for x in r["curve"]]
            e = [x[1] for x in r["curve"]]
            t = [x[2] for x in r["curve"]]
            axes[0, col].plot(g, e, label=name)
            axes[1, col].plot(t, e, label=name)
        axes[0, col].set(title=study, xlabel="gradients", ylabel="test error", yscale="log")
        axes[1, col].set(xlabel="virtual seconds (calibrated)", ylabel="test error", yscale="log")
        for ax in axes[:, col]:
            ax.axhline(target, color="gray", lw=0.8, ls=":")
        axes[0, col].legend(fontsize=8)
    savefig(fig, f"{out}/paper_gpu_asgd.png")


if __name__ == "__main__":
    app.run(main)
