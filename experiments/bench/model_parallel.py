"""AlexNet split over M = 1, 2, 4, 8 devices: parameter + optimizer bytes per device, and the training step
time against the unsharded step on the same machine (same process, best of N).

  python experiments/bench/model_parallel.py [--quick] [--batch=16] [--ways=1,2,4,8]

On CPU the devices are XLA's forced host devices sharing the cores, so a split step only adds collectives
there: the memory column is the point (the sharded part shrinks as 1/M). On a GPU machine, M is limited
by its number of GPUs. Synthetic 224x224 images (timings do not depend on pixel values).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402
from common import alexnet_task, best_time, emit  # noqa: E402

from asgdjax.core.sampling import ShardSampler
from asgdjax.core.task import batch_key  # noqa: E402
from asgdjax.parallel import Placement  # noqa: E402
from asgdjax.parallel.placement import bytes_per_device  # noqa: E402
from asgdjax.train.sync import make_sync_step  # noqa: E402

flags.DEFINE_bool("quick", False, "Fewer steps and repeats.")
flags.DEFINE_integer("batch", 16, "Batch size of the step.")
flags.DEFINE_string("ways", "1,2,4,8", "Model-parallel degrees M (those above the device count are skipped).")
FLAGS = flags.FLAGS


def timed_loop(step, params, opt_state, data, batches, key):
    """Train over `batches` from fresh copies of (params, opt_state) (the step donates its inputs)."""
    copy = jax.jit(
        lambda t: jax.tree.map(jnp.copy, t), out_shardings=jax.tree.map(lambda x: x.sharding, (params, opt_state))
    )

    def run():
        p, o = copy((params, opt_state))
        for s, idx in enumerate(batches):
            p, o, _ = step(p, o, data, idx, batch_key(key, 0, s))
        jax.block_until_ready(p)

    return run


def main(argv):
    del argv
    steps, repeats = (2, 2) if FLAGS.quick else (5, 3)
    b = FLAGS.batch
    task, data, params = alexnet_task(4 * b)
    opt = optax.sgd(0.01, momentum=0.9)
    stream = ShardSampler(4 * b, b, 0, 1)
    batches = [stream.batch(0, s) for s in range(steps)]
    key = jax.random.key(1)
    full_bytes = 2 * sum(x.nbytes for x in jax.tree.leaves(params))  # parameters + momentum
    rows = []
    baseline = None
    for m in [int(x) for x in FLAGS.ways.split(",")]:
        if m > len(jax.devices()):
            continue
        pl = Placement.for_task(task, jax.devices()[:m])
        p = pl.put(params)
        o = jax.jit(opt.init, out_shardings=pl.shardings(jax.eval_shape(opt.init, params)))(p)
        held = max(bytes_per_device((p, o)).values())
        variants = []
        if m == 1:  # the unsharded baseline: the plain jitted step on one device (no mesh, no shardings)
            variants.append(
                ("plain", timed_loop(make_sync_step(task, opt), params, opt.init(params), data, batches, key))
            )
        # shardings follow the committed inputs (at M = 1: the mesh machinery on one device)
        variants.append(
            ("mesh", timed_loop(make_sync_step(task, opt), p, o, jax.device_put(data, pl.replicated), batches, key))
        )
        for how, run in variants:
            run()  # compile
            t = best_time(run, repeats) / steps
            baseline = baseline or t
            rows.append(
                {
                    "model_parallel": m,
                    "path": how,
                    "bytes_per_device": held,
                    "fraction_of_unsharded": held / full_bytes,
                    "step_ms": t * 1e3,
                    "speed_vs_unsharded": baseline / t,
                }
            )
            print(
                f"M={m} ({how}): {held / 2**20:8.1f} MiB params+momentum per device ({held / full_bytes:.3f} of "
                f"unsharded), step {t * 1e3:8.1f} ms ({baseline / t:.2f}x the unsharded step)",
                flush=True,
            )
    emit({"benchmark": "model_parallel", "model": "alexnet", "batch": b, "rows": rows})


if __name__ == "__main__":
    app.run(main)
