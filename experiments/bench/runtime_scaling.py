"""Runtime updates/s with 1, 2, 4, 8 asynchronous workers, each on its own (forced CPU or real) device.

  python experiments/bench/runtime_scaling.py [--quick] [--model=small_cnn --dataset=mnist --batch=64]

On CPU the devices are XLA's forced host devices (they share the machine's cores: on 2 cores expect
saturation near 2x). speedup = updates/s with K workers / updates/s with 1.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402
from common import bench_task, coordinator, emit  # noqa: E402

from asgdjax.core.protocol import ProtocolSpec  # noqa: E402
from asgdjax.core.sampling import ShardSampler  # noqa: E402
from asgdjax.core.server import Server  # noqa: E402
from asgdjax.parallel import group_devices
from asgdjax.rules import plain  # noqa: E402

flags.DEFINE_bool("quick", False, "Short runs (under a minute).")
flags.DEFINE_string("model", "small_cnn", "Model.")
flags.DEFINE_string("dataset", "mnist", "Dataset (synthetic of its shape when not prepared).")
flags.DEFINE_integer("batch", 64, "Batch size per worker step.")
flags.DEFINE_string("workers", "1,2,4,8", "Worker counts.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    steps = 48 if FLAGS.quick else 200
    task, data, ds, source = bench_task(FLAGS.dataset, FLAGS.model)
    host_data = jax.tree.map(np.asarray, data)
    params = task.init(jax.random.key(0))
    rows = []
    for k in [int(x) for x in FLAGS.workers.split(",")]:
        spec = ProtocolSpec(num_workers=k)
        make = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))
        smp = ShardSampler(ds.num_train, FLAGS.batch, 0, k)
        co = coordinator(task, make, {"learning_rate": 0.01}, spec, group_devices(k), host_data, smp, jax.random.key(1))
        co.run(params, spec.machine(2 * k))  # compile on every device
        server, trace, stats = co.run(params, spec.machine(steps))
        ups = steps / stats.wall_seconds
        rows.append(
            {
                "workers": k,
                "updates_per_s": ups,
                "staleness_mean": trace.stats().staleness_mean,
                "busy_fraction_mean": float((stats.busy_seconds / stats.wall_seconds).mean()),
            }
        )
        print(
            f"K={k}: {ups:7.1f} updates/s  staleness {rows[-1]['staleness_mean']:.2f}  "
            f"speedup {ups / rows[0]['updates_per_s']:.2f}x"
        )
    for r in rows:
        r["speedup"] = r["updates_per_s"] / rows[0]["updates_per_s"]
    emit(
        {
            "benchmark": "runtime_scaling",
            "model": FLAGS.model,
            "data": source,
            "batch": FLAGS.batch,
            "devices": [str(d) for d in jax.devices()],
            "results": rows,
        }
    )


if __name__ == "__main__":
    app.run(main)
