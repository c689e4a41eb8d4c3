"""Ray backend against the local backend: updates/s with the same workers, model and protocol on this
machine, and where a Ray update's time goes.

  python experiments/bench/ray_overhead.py [--quick] [--model=mlp --dataset=digits --workers=2]
  python experiments/bench/ray_overhead.py --model=cifar_18pct --dataset=cifar10 --batch=128 --steps=60

Both backends run the same coordinator, protocol and server; only where gradients are computed differs
(local devices through async dispatch, or Ray actors returning numpy). The breakdown times, in this
process: an empty actor call (the round trip), one ray.put of the parameters, the actor-side step, and
the local backend's whole update. Downpour n_fetch = n_push = n (--downpour) shows what one actor call
per push buys: the actor runs the n local steps and returns their accumulated gradient.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402
from common import bench_task, coordinator, emit  # noqa: E402

from asgdjax.core.protocol import ProtocolSpec  # noqa: E402
from asgdjax.core.sampling import ShardSampler  # noqa: E402
from asgdjax.core.server import Server  # noqa: E402
from asgdjax.parallel import group_devices  # noqa: E402
from asgdjax.rules import plain  # noqa: E402

flags.DEFINE_bool("quick", False, "Fewer updates.")
flags.DEFINE_string("model", "mlp", "Model.")
flags.DEFINE_string("dataset", "digits", "Dataset.")
flags.DEFINE_integer("batch", 32, "Batch size per step.")
flags.DEFINE_integer("workers", 2, "Workers (devices locally, actors on Ray).")
flags.DEFINE_integer("steps", 0, "Gradients per timed run (0: 600, 200 with --quick).")
flags.DEFINE_integer("downpour", 4, "n_fetch = n_push of the Downpour row.")
FLAGS = flags.FLAGS


def updates_per_s(co, params, k, steps, n):
    spec = ProtocolSpec(num_workers=k, n_fetch=n, n_push=n)
    co.run(params, spec.machine(4 * k))  # compile / warm the actors
    best = 0.0
    for _ in range(2):
        _, trace, stats = co.run(params, spec.machine(steps))
        best = max(best, trace.num_gradients / stats.wall_seconds)
    return best


def main(argv):
    del argv
    import ray

    steps = FLAGS.steps or (200 if FLAGS.quick else 600)
    k = FLAGS.workers
    task, data, ds, source = bench_task(FLAGS.dataset, FLAGS.model)
    host = jax.tree.map(np.asarray, data)
    params = task.init(jax.random.key(0))
    hp = {"learning_rate": 0.01, "local_learning_rate": 0.01}
    make = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))
    streams = ShardSampler(ds.num_train, FLAGS.batch, 0, k)
    ray.init(num_cpus=max(os.cpu_count() or 1, k), include_dashboard=False, log_to_driver=False)
    rows = []
    for n in (1, FLAGS.downpour):
        spec = ProtocolSpec(num_workers=k, n_fetch=n, n_push=n)
        local = coordinator(task, make, hp, spec, group_devices(k), host, streams, jax.random.key(1))
        remote = coordinator(
            task,
            make,
            hp,
            spec,
            [None] * k,
            host,
            streams,
            jax.random.key(1),
            backend="ray",
            backend_options={"num_cpus": 1.0},
        )
        u_local = updates_per_s(local, params, k, steps, n)
        u_ray = updates_per_s(remote, params, k, steps, n)
        calls = remote.workers.calls / (4 * k + 2 * steps)  # the warm-up run and the two timed ones
        rows.append(
            {
                "n_fetch_push": n,
                "local_updates_per_s": u_local,
                "ray_updates_per_s": u_ray,
                "ratio": u_ray / u_local,
                "ray_ms_per_gradient": 1e3 / u_ray,
                "local_ms_per_gradient": 1e3 / u_local,
                "ray_actor_calls_per_gradient": calls,
            }
        )
        print(
            f"n_fetch=n_push={n}: local {u_local:8.1f}  ray {u_ray:8.1f} gradients/s  (ray = {u_ray / u_local:.3f}x; "
            f"{calls:.2f} actor calls per gradient)",
            flush=True,
        )
        if n == 1:
            actor = remote.workers.actors[0]
            ray.get(actor.devices.remote())
            t = time.perf_counter()
            for _ in range(50):
                ray.get(actor.devices.remote())
            round_trip = (time.perf_counter() - t) / 50
            host_params = jax.device_get(params)
            t = time.perf_counter()
            for _ in range(50):
                ray.get(ray.put(host_params))
            put = (time.perf_counter() - t) / 50
            p_ref = ray.put(host_params)
            ray.get(actor.step.remote(p_ref, 0))
            t = time.perf_counter()
            for s in range(50):
                ray.get(actor.step.remote(p_ref, s))
            step_with_params = (time.perf_counter() - t) / 50
            t = time.perf_counter()
            for s in range(50):
                ray.get(actor.step.remote(None, s))
            step_alone = (time.perf_counter() - t) / 50
            breakdown = {
                "empty_actor_call_ms": round_trip * 1e3,
                "ray_put_get_params_ms": put * 1e3,
                "actor_step_round_trip_ms": step_alone * 1e3,
                "actor_step_with_params_ms": step_with_params * 1e3,
                "local_ms_per_worker_cycle": 1e3 / u_local * k,
            }
            print("breakdown (ms):", {key: round(v, 3) for key, v in breakdown.items()}, flush=True)
        remote.shutdown()
    ray.shutdown()
    emit(
        {
            "benchmark": "ray_overhead",
            "model": FLAGS.model,
            "data": source,
            "workers": k,
            "batch": FLAGS.batch,
            "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
            "rows": rows,
            "breakdown": breakdown,
        }
    )


if __name__ == "__main__":
    app.run(main)
