"""A 16-configuration sweep (4 staleness bounds x 4 seeds): one vmapped program, the same Simulator one
config after another, `auto` (what asgdjax-sweep uses), and 16 separate Simulators (a user's loop).

  python experiments/bench/sweep.py [--quick] [--models=mlr,mlp,small_cnn]   (--quick times 4 of the 16 separate
  Simulators and scales to 16: the runs cost the same)

Each configuration has its own schedule (SSP bound s in {0, 1, 3, unbounded}, K = 4 exponential-delay
workers), seed, initial parameters and data order. Both sides use the same Simulator and chunk size;
the sweep runs all 16 in lockstep through jit(vmap(step)). ratio = sequential time / vmapped time.
"""

from __future__ import annotations

import jax
import optax
from absl import app, flags
from common import bench_task, best_time, emit, schedule

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.delays import DelayModel
from asgdjax.rules import plain
from asgdjax.sim import Simulator
from asgdjax.sim.sweep import Member, sweep

flags.DEFINE_bool("quick", False, "Short runs (under a minute per model).")
flags.DEFINE_string(
    "models",
    "",
    "Models (on MNIST) to measure (default: mlr,mlp,small_cnn; --quick: mlr,mlp, since the vmapped "
    "small CNN alone ran past 20 minutes on the 2-core CPU).",
)
flags.DEFINE_integer("batch", 32, "Batch size per gradient.")
FLAGS = flags.FLAGS
BOUNDS = (0, 1, 3, -1)
SEEDS = 4
K = 4


def measure(model: str, steps: int) -> dict:
    task, data, ds, source = bench_task("mnist", model)
    sim = Simulator(
        task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), ProtocolSpec(num_workers=K, max_staleness=0)
    )
    sim.plan(task.init(jax.random.key(0)), data, FLAGS.batch)
    cfgs = [(s, seed) for s in BOUNDS for seed in range(SEEDS)]
    traces = [schedule(seed, K, steps, DelayModel(), max_staleness=s)[1] for s, seed in cfgs]
    params = [task.init(jax.random.key(seed)) for _, seed in cfgs]
    hps = [{"learning_rate": 0.05} for _ in cfgs]
    streams = [ShardSampler(ds.num_train, FLAGS.batch, seed, K) for _, seed in cfgs]
    keys = [jax.random.key(100 + seed) for _, seed in cfgs]

    members = [Member(*m) for m in zip(params, traces, hps, streams, keys, strict=True)]
    server = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))  # noqa: E731
    spec = ProtocolSpec(num_workers=K, max_staleness=0)

    def run(strategy):
        return lambda: jax.block_until_ready(sweep(sim, members, data, strategy=strategy)[-1].server.params)

    def separate():  # what a loop over asgdjax.simulate does: a fresh Simulator (one compile) per config
        for m in members[:n_separate]:
            one = Simulator(task, server, spec, strategy=sim.strategy, chunk=sim.C)
            out = one.run(one.init(m.params, m.hparams), m.trace, data, m.hparams, m.sampler, m.data_key)
        jax.block_until_ready(out.server.params)

    for f in (run("vmapped"), run("sequential")):
        f()
    t_v, t_s, t_a = (best_time(run(s), 2) for s in ("vmapped", "sequential", "auto"))
    n_separate = 4 if FLAGS.quick else len(members)  # identical-cost runs: per-config time from fewer
    t_sep = best_time(separate, 1) * len(members) / n_separate
    auto = "sequential" if jax.default_backend() == "cpu" else "vmapped"
    print(
        f"{model:10s} vmapped {t_v:6.2f} s  sequential {t_s:6.2f} s  auto ({auto}) {t_a:6.2f} s  "
        f"16 separate simulators {t_sep:6.2f} s  vmapped/sequential {t_s / t_v:.2f}x  "
        f"auto vs the better of the two {min(t_v, t_s) / t_a:.2f}x  auto vs separate {t_sep / t_a:.2f}x"
    )
    return {
        "model": model,
        "data": source,
        "configs": len(cfgs),
        "gradients_each": steps,
        "vmapped_s": t_v,
        "sequential_s": t_s,
        "auto": auto,
        "auto_s": t_a,
        "separate_simulators_s": t_sep,
        "separate_simulators_measured": n_separate,
        "ratio": t_s / t_v,
        "auto_over_best": min(t_v, t_s) / t_a,
        "auto_over_separate": t_sep / t_a,
    }


def main(argv):
    del argv
    steps = 100 if FLAGS.quick else 400
    models = FLAGS.models or ("mlr,mlp" if FLAGS.quick else "mlr,mlp,small_cnn")
    results = [measure(m, steps) for m in models.split(",")]
    emit(
        {
            "benchmark": "sweep",
            "goal": "auto >= 1.0x the better strategy (CPU), vmapped >= 2x (GPU)",
            "workers": K,
            "results": results,
        }
    )


if __name__ == "__main__":
    app.run(main)
