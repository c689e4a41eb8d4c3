"""A 16-configuration sweep (4 staleness bounds x 4 seeds) as one vmapped program vs 16 sequential runs.

  python experiments/bench/sweep.py [--quick] [--models=mlr,mlp,small_cnn]

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
from asgdjax.sim.sweep import sweep

flags.DEFINE_bool("quick", False, "Short runs (under a minute per model).")
flags.DEFINE_string("models", "mlr,mlp,small_cnn", "Models (on MNIST) to measure.")
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
    cfgs = [(s, seed) for s in BOUNDS for seed in range(SEEDS)]
    traces = [schedule(seed, K, steps, DelayModel(), max_staleness=s)[1] for s, seed in cfgs]
    params = [task.init(jax.random.key(seed)) for _, seed in cfgs]
    hps = [{"learning_rate": 0.05} for _ in cfgs]
    streams = [ShardSampler(ds.num_train, FLAGS.batch, seed, K) for _, seed in cfgs]
    keys = [jax.random.key(100 + seed) for _, seed in cfgs]

    def vmapped():
        jax.block_until_ready(sweep(sim, params, traces, data, hps, streams, keys).server.params)

    def sequential():
        out = [
            sim.run(sim.init(p, h), t, data, h, st, k)
            for p, h, t, st, k in zip(params, hps, traces, streams, keys, strict=True)
        ]
        jax.block_until_ready(out[-1].server.params)

    vmapped(), sequential()
    t_v, t_s = best_time(vmapped, 2), best_time(sequential, 2)
    print(f"{model:10s} vmapped {t_v:6.2f} s  sequential {t_s:6.2f} s  speedup {t_s / t_v:.2f}x")
    return {
        "model": model,
        "data": source,
        "configs": len(cfgs),
        "gradients_each": steps,
        "vmapped_s": t_v,
        "sequential_s": t_s,
        "ratio": t_s / t_v,
    }


def main(argv):
    del argv
    steps = 100 if FLAGS.quick else 400
    results = [measure(m, steps) for m in FLAGS.models.split(",")]
    emit({"benchmark": "sweep", "goal": "ratio >= 2", "workers": K, "results": results})


if __name__ == "__main__":
    app.run(main)
