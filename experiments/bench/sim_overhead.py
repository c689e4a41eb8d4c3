"""Simulated A-SGD updates/s with K workers against the fastest plain SGD loop of the same model and batch.

  python experiments/bench/sim_overhead.py [--quick] [--models=small_cnn:mnist,cifar_18pct:cifar10]

The baseline is the faster of (a) a Python loop of one jitted SGD step and (b) chunks of 10 steps in a
jitted `lax.scan(unroll=True)`, both on the same device-resident data and batch size. The simulator
replays an 8-worker exponential-delay schedule (mean staleness 7) with plain SGD; ratio = sim / baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from common import bench_task, best_time, emit, plain_sgd_loop, schedule

from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.core.task import batch_key
from asgdjax.rules import plain
from asgdjax.sim import Simulator

flags.DEFINE_bool("quick", False, "Short runs (under a minute).")
flags.DEFINE_string("models", "small_cnn:mnist,cifar_18pct:cifar10", "model:dataset pairs.")
flags.DEFINE_integer("workers", 8, "Simulated workers K.")
flags.DEFINE_integer("batch", 32, "Batch size per gradient.")
flags.DEFINE_string("strategies", "auto,sequential,waves", "Simulator strategies to measure.")
FLAGS = flags.FLAGS
CHUNK = 10


def measure(model: str, dataset: str, steps: int) -> dict:
    task, data, ds, source = bench_task(dataset, model)
    lr = 0.01
    opt = optax.sgd(lr)
    params = task.init(jax.random.key(0))
    stream = ShardSampler(ds.num_train, FLAGS.batch, 0, 1)
    idx = np.stack([stream.batch(0, s) for s in range(steps)])
    key = jax.random.key(1)

    # Baseline (a): Python loop of a jitted step.
    loop = plain_sgd_loop(task, opt, params, data, idx, key)

    loop()
    t_loop = best_time(loop)

    # Baseline (b): chunks of CHUNK steps inside one jitted, fully unrolled scan.
    def chunk_fn(p, o, data, idx_chunk, s0):
        def body(carry, xs):
            p, o = carry
            i, s = xs
            loss, g = task.grad(p, data, i, batch_key(key, 0, s))
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss

        (p, o), _ = jax.lax.scan(body, (p, o), (idx_chunk, s0 + jnp.arange(CHUNK)), unroll=True)
        return p, o

    chunk = jax.jit(chunk_fn, donate_argnums=(0, 1))

    def scan_loop():
        p, o = jax.tree.map(jnp.array, params), opt.init(params)
        for c in range(steps // CHUNK):
            p, o = chunk(p, o, data, idx[c * CHUNK : (c + 1) * CHUNK], c * CHUNK)
        jax.block_until_ready(p)

    scan_loop()
    t_scan = best_time(scan_loop)
    base = min(t_loop, t_scan)

    # Simulator.
    K = FLAGS.workers
    spec, trace = schedule(2, K, steps)
    streams = ShardSampler(ds.num_train, FLAGS.batch, 0, K)
    out = {
        "model": model,
        "dataset": dataset,
        "data": source,
        "batch": FLAGS.batch,
        "steps": steps,
        "workers": K,
        "staleness_mean": trace.stats().staleness_mean,
        "plain_loop_updates_per_s": steps / t_loop,
        "scan_chunk_updates_per_s": steps / t_scan,
        "baseline": "loop" if t_loop <= t_scan else "scan_chunk",
    }
    best_ratio = 0.0
    for mode in FLAGS.strategies.split(","):
        sim = Simulator(task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), spec, strategy=mode)

        def run_sim(sim=sim, hp={"learning_rate": lr}):  # noqa: B006 (read-only default)
            st = sim.init(params, hp)
            st = sim.run(st, trace, data, hp, streams, key)
            jax.block_until_ready(st.server.params)

        run_sim()
        t_sim = best_time(run_sim)
        out[f"sim_{mode}_updates_per_s"] = steps / t_sim
        out[f"ratio_{mode}"] = base / t_sim
        best_ratio = max(best_ratio, base / t_sim)
        print(f"{model:12s} sim[{mode}] {steps / t_sim:8.1f} upd/s  ratio {base / t_sim:.2f}")
    # Memory: per-worker copies (K) against a ring of the last D = max staleness + 1 versions.
    depth = int(trace.staleness.max()) + 1
    ring = Simulator(task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), spec, ring_depth=depth)

    def run_ring(hp={"learning_rate": lr}):  # noqa: B006 (read-only default)
        st = ring.init(params, hp)
        st = ring.run(st, trace, data, hp, streams, key)
        jax.block_until_ready(st.server.params)

    run_ring()
    t_ring = best_time(run_ring)
    pbytes = sum(x.nbytes for x in jax.tree.leaves(params))
    out.update(
        param_bytes=pbytes,
        workers_memory_bytes=K * pbytes,
        ring_depth=depth,
        ring_memory_bytes=depth * pbytes,
        sim_ring_updates_per_s=steps / t_ring,
    )
    print(
        f"{model:12s} memory: {K} worker copies {K * pbytes / 2**20:.1f} MiB at {out.get('sim_sequential_updates_per_s', 0):.1f} "
        f"upd/s; ring of {depth} versions {depth * pbytes / 2**20:.1f} MiB at {steps / t_ring:.1f} upd/s"
    )
    out["ratio"] = best_ratio
    print(
        f"{model:12s} plain loop {steps / t_loop:8.1f} upd/s, scan chunks {steps / t_scan:8.1f} upd/s "
        f"(baseline: {out['baseline']}), best sim ratio {best_ratio:.2f}"
    )
    return out


def main(argv):
    del argv
    steps = 40 if FLAGS.quick else 400
    results = [measure(*pair.split(":"), steps) for pair in FLAGS.models.split(",")]
    emit({"benchmark": "sim_overhead", "goal": "ratio >= 0.9", "results": results})


if __name__ == "__main__":
    app.run(main)
