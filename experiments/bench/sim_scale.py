"""Simulating many workers on one machine: state memory and simulated updates/s at K = 8, 64, 1,024 for the
MNIST CNN and the CIFAR-10 18pct net (per-worker parameter copies; plain A-SGD, exponential delays).

  python experiments/bench/sim_scale.py [--quick] [--workers=8,64,1024]

Memory = bytes of the simulator's state (server + K worker copies + pending slot); also the process's peak
RSS. updates/s = gradients replayed per second after compilation, against the same simulator at K = 8
(the ratio shows what K costs: the per-event copy write and read are O(1) in K, the state is O(K)).
The version ring (memory of D = max staleness + 1 versions) is reported for comparison: with exponential
delays staleness grows like K, so at large K copies are the smaller memory.
"""

from __future__ import annotations

import resource
import time

import jax
import optax
from absl import app, flags
from common import bench_task, emit, schedule

from asgdjax.core.sampling import ReplacementSampler
from asgdjax.core.server import Server
from asgdjax.rules import plain
from asgdjax.sim import Simulator

flags.DEFINE_bool("quick", False, "Fewer gradients.")
flags.DEFINE_string("models", "small_cnn:mnist,cifar_18pct:cifar10", "model:dataset pairs.")
flags.DEFINE_string("workers", "8,64,1024", "Worker counts K.")
flags.DEFINE_integer("batch", 32, "Batch size per gradient.")
FLAGS = flags.FLAGS


def tree_bytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def main(argv):
    del argv
    steps = 300 if FLAGS.quick else 1000
    rows = []
    for pair in FLAGS.models.split(","):
        model, dataset = pair.split(":")
        task, data, ds, source = bench_task(dataset, model)
        params = task.init(jax.random.key(0))
        make = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))
        hp = {"learning_rate": 0.01}
        base = None
        for k in [int(x) for x in FLAGS.workers.split(",")]:
            t = time.perf_counter()
            n = max(steps, 2 * k)
            spec, trace = schedule(0, k, n)
            t_schedule = time.perf_counter() - t
            # With replacement: any number of workers shares the data set.
            streams = ReplacementSampler(ds.num_train, FLAGS.batch, 0)
            sim = Simulator(task, make, spec)
            state = sim.init(params, hp)
            state_bytes = tree_bytes(state)
            sim.plan(params, data, FLAGS.batch)
            warm = sim.boundaries(trace)[2]  # compile on the first two chunks
            cut = trace.slice(int(warm))
            state = sim.run(state, cut, data, hp, streams, jax.random.key(1))
            jax.block_until_ready(state)
            t = time.perf_counter()
            state = sim.run(state, trace, data, hp, streams, jax.random.key(1), start_event=int(warm))
            jax.block_until_ready(state)
            elapsed = time.perf_counter() - t
            grads = int((trace.step[int(warm) :] >= 0).sum())
            ups = grads / elapsed
            base = base or ups
            s = trace.stats()
            ring_bytes = (s.staleness_max + 1) * tree_bytes(params)
            row = {
                "model": model,
                "workers": k,
                "state_mib": state_bytes / 2**20,
                "ring_alternative_mib": ring_bytes / 2**20,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "updates_per_s": ups,
                "vs_k8": ups / base,
                "schedule_seconds": t_schedule,
                "staleness_mean": s.staleness_mean,
                "staleness_max": s.staleness_max,
            }
            rows.append(row)
            print(
                f"{model:12s} K={k:5d}: state {row['state_mib']:8.1f} MiB (ring would be {row['ring_alternative_mib']:8.1f}),"
                f" peak RSS {row['peak_rss_mib']:7.0f} MiB, {ups:7.1f} updates/s ({ups / base:.2f}x K=8), "
                f"staleness {s['staleness_mean']:.0f}/{s['staleness_max']}, schedule {t_schedule:.2f} s",
                flush=True,
            )
            del state, sim
    emit({"benchmark": "sim_scale", "data": source, "batch": FLAGS.batch, "rows": rows})


if __name__ == "__main__":
    app.run(main)
