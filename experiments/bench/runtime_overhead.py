"""One asynchronous worker through the runtime against the plain synchronous jitted loop, same device,
model and batch (default: CIFAR-10 18pct net, batch 128, SGD).

  python experiments/bench/runtime_overhead.py [--quick] [--model=cifar_18pct --dataset=cifar10 --batch=128]

ratio = runtime updates/s / plain-loop updates/s (the coordinator must keep the device busy).
"""

from __future__ import annotations

import jax
import optax
from absl import app, flags
from common import bench_task, best_time, coordinator, emit, plain_sgd_loop

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.rules import plain

flags.DEFINE_bool("quick", False, "Short runs (under a minute).")
flags.DEFINE_string("model", "cifar_18pct", "Model.")
flags.DEFINE_string("dataset", "cifar10", "Dataset (synthetic of its shape when not prepared).")
flags.DEFINE_integer("batch", 128, "Batch size.")
FLAGS = flags.FLAGS
LR = 0.01


def main(argv):
    del argv
    steps = 12 if FLAGS.quick else 60
    task, data, ds, source = bench_task(FLAGS.dataset, FLAGS.model)
    params = task.init(jax.random.key(0))
    opt = optax.sgd(LR)
    stream = ShardSampler(ds.num_train, FLAGS.batch, 0, 1)
    key = jax.random.key(1)
    plain_loop = plain_sgd_loop(task, opt, params, data, [stream.batch(0, s) for s in range(steps)], key)

    dev = jax.devices()[0]
    spec = ProtocolSpec(num_workers=1)
    make = lambda h: Server(plain(), optax.sgd(h["learning_rate"]))
    co = coordinator(task, make, {"learning_rate": LR}, spec, [dev], data, stream, key)

    def runtime():
        server, _, _ = co.run(params, spec.machine(steps))
        jax.block_until_ready(server.params)

    plain_loop(), runtime()
    t_plain, t_rt = best_time(plain_loop), best_time(runtime)
    ratio = t_plain / t_rt
    print(
        f"{FLAGS.model} batch {FLAGS.batch}: plain loop {steps / t_plain:.2f} upd/s, runtime (1 worker) "
        f"{steps / t_rt:.2f} upd/s, ratio {ratio:.3f}"
    )
    emit(
        {
            "benchmark": "runtime_overhead",
            "goal": "ratio >= 0.9",
            "model": FLAGS.model,
            "data": source,
            "batch": FLAGS.batch,
            "steps": steps,
            "plain_updates_per_s": steps / t_plain,
            "runtime_updates_per_s": steps / t_rt,
            "ratio": ratio,
        }
    )


if __name__ == "__main__":
    app.run(main)
