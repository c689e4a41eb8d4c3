"""AlexNet (cuda-convnet2 one-GPU) training step on a GPU: images/s of the plain jitted loop and of the
runtime with 1 and 4 workers sharing the device, and achieved TFLOP/s against the card's measured matmul
rate. Synthetic 224x224 data on the device (timings do not depend on pixel values).

  python experiments/bench/gpu_alexnet.py [--quick] [--batch=128]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from common import alexnet_task, best_time, coordinator, emit, plain_sgd_loop

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.rules import plain
from asgdjax.train.sync import make_sync_step

flags.DEFINE_bool("quick", False, "Fewer steps.")
flags.DEFINE_integer("batch", 128, "Batch size.")
FLAGS = flags.FLAGS


def matmul_tflops(dtype, n=8192, reps=10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = best_time(lambda: jax.block_until_ready([f(a) for _ in range(reps)]), 3)
    return 2 * n**3 * reps / t / 1e12


def main(argv):
    del argv
    steps = 10 if FLAGS.quick else 30
    b = FLAGS.batch
    n = 4 * b
    task, data, params = alexnet_task(n)
    opt = optax.sgd(0.01, momentum=0.9)
    step = make_sync_step(task, opt)
    stream = ShardSampler(n, b, 0, 1)
    key = jax.random.key(1)
    flops = step.lower(params, opt.init(params), data, stream.batch(0, 0), key).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))

    plain_loop = plain_sgd_loop(task, opt, params, data, [stream.batch(0, s) for s in range(steps)], key)

    plain_loop()
    t_plain = best_time(plain_loop, 2)
    out = {
        "benchmark": "gpu_alexnet",
        "batch": b,
        "steps": steps,
        "step_flops": flops,
        "plain_images_per_s": steps * b / t_plain,
    }
    host_data = jax.tree.map(np.asarray, data)
    dev = jax.devices()[0]
    for k in (1, 4):
        spec = ProtocolSpec(num_workers=k)
        make = lambda h: Server(plain(), optax.sgd(h["learning_rate"], momentum=0.9))
        co = coordinator(task, make, {"learning_rate": 0.01}, spec, [dev] * k, host_data, ShardSampler(n, b, 0, k), key)
        co.run(params, spec.machine(k))
        t = time.perf_counter()
        server, trace, stats = co.run(params, spec.machine(steps))
        jax.block_until_ready(server.params)
        t = time.perf_counter() - t
        out[f"runtime_{k}_images_per_s"] = steps * b / t
        out[f"runtime_{k}_staleness_mean"] = trace.stats().staleness_mean
    out["matmul_tflops_f32_default"] = matmul_tflops(jnp.float32)
    out["matmul_tflops_bf16"] = matmul_tflops(jnp.bfloat16)
    out["plain_tflops"] = flops * steps / t_plain / 1e12
    out["plain_fraction_of_f32_matmul"] = out["plain_tflops"] / out["matmul_tflops_f32_default"]
    for k in (1, 4):
        print(
            f"runtime {k} worker(s): {out[f'runtime_{k}_images_per_s']:.0f} img/s "
            f"({out[f'runtime_{k}_images_per_s'] / out['plain_images_per_s']:.2f}x plain)"
        )
    print(
        f"plain loop: {out['plain_images_per_s']:.0f} img/s, {out['plain_tflops']:.1f} TFLOP/s "
        f"(matmul f32-default {out['matmul_tflops_f32_default']:.0f}, bf16 {out['matmul_tflops_bf16']:.0f} TFLOP/s)"
    )
    emit(out)


if __name__ == "__main__":
    app.run(main)
