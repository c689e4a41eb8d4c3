"""Mixed precision (`--config.dtype=bfloat16`): the training step's speed against float32 in one process,
as achieved TFLOP/s by an analytic count of the network's FLOPs and as a fraction of the card's bf16 rate;
and, with --accuracy_steps, CIFAR-10 layers-18pct accuracy in both dtypes at the same steps, over
--accuracy_seeds seeds (the seed-to-seed spread is the scale a dtype's difference must be read against).

  python experiments/bench/mixed_precision.py [--quick] [--model=alexnet] [--batch=128] [--accuracy_steps=0]
      [--accuracy_seeds=1]

The FLOP count walks the jaxpr of one training step (forward and backward): 2 x multiply-adds of every
convolution and matrix product, which is what a GPU's tensor cores run (XLA's GPU cost analysis does not
count cuDNN convolutions). Peak: a measured 8192^3 bf16 matmul (and, on a known GPU, the spec sheet's dense
bf16 figure). Synthetic data of the model's input shape: timings do not depend on pixel values.
"""

from __future__ import annotations

import math

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from common import IMAGENET_SPEC, best_time, emit

from asgdjax.core.task import batch_key
from asgdjax.data import ArrayDataset, get_spec
from asgdjax.models import get_model
from asgdjax.train.sync import make_sync_step
from asgdjax.train.task import ClassificationTask, device_data

flags.DEFINE_bool("quick", False, "Fewer timed steps.")
flags.DEFINE_string("model", "", "Model to time; default alexnet on a GPU, cifar_18pct on a CPU.")
flags.DEFINE_integer("batch", 128, "Batch size of the timed step.")
flags.DEFINE_integer("accuracy_steps", 0, "Also train CIFAR-10 layers-18pct this many steps in each dtype.")
flags.DEFINE_integer("accuracy_seeds", 1, "Seeds (0, 1, ...) of each dtype's accuracy run.")
FLAGS = flags.FLAGS
SPEC_SHEET_BF16_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0, "NVIDIA A100-SXM4-80GB": 312.0}
SHAPES = {"alexnet": ("imagenet2012", (224, 224, 3), 1000)}


def step_flops(fn, *args) -> float:
    """2 x multiply-adds of every conv and dot in fn's jaxpr (sub-jaxprs included): the analytic count."""

    def walk(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                lhs, rhs = (v.aval for v in eqn.invars)
                out = eqn.outvars[0].aval
                dn = eqn.params["dimension_numbers"]
                rhs_spatial = [rhs.shape[d] for d in dn.rhs_spec[2:]]
                in_per_group = rhs.shape[dn.rhs_spec[1]]
                total += 2.0 * math.prod(out.shape) * in_per_group * math.prod(rhs_spatial)
            elif eqn.primitive.name == "dot_general":
                (contract, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval
                total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs.shape[d] for d in contract)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                total += walk(sub)
        return total

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def synthetic_task(model: str, n: int, dtype: str):
    dataset, shape, classes = SHAPES.get(model, ("cifar10", (32, 32, 3), 10))
    spec = IMAGENET_SPEC if dataset == "imagenet2012" else get_spec(dataset)
    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        spec,
        rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        rng.integers(0, classes, n).astype(np.int32),
        np.zeros((1, *shape), np.uint8),
        np.zeros(1, np.int32),
    )
    return ClassificationTask(get_model(model, classes, shape, dtype=dtype), spec, augment=False), device_data(ds)


def time_step(model: str, dtype: str, batch: int, steps: int) -> dict:
    """Seconds per plain training step (gradient + momentum update, one jitted program) in `dtype`."""
    task, data = synthetic_task(model, 2 * batch, dtype)
    params = task.init(jax.random.key(0))
    opt = optax.sgd(0.01, momentum=0.9)
    step = make_sync_step(task, opt)
    idx = [jnp.arange(batch) + (s % 2) * batch for s in range(steps)]
    key = jax.random.key(1)

    def run():
        p, o = jax.tree.map(jnp.array, params), opt.init(params)
        for s in range(steps):
            p, o, _ = step(p, o, data, idx[s], batch_key(key, 0, s))
        jax.block_until_ready(p)

    run()
    flops = step_flops(lambda p: task.grad(p, data, idx[0], key), params)
    return {"seconds_per_step": best_time(run, 2) / steps, "step_flops": flops}


def bf16_matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    n = n if jax.default_backend() != "cpu" else 1024
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n**3 * reps / best_time(lambda: jax.block_until_ready([f(a) for _ in range(reps)]), 3) / 1e12


def accuracy(steps: int, seeds: int) -> dict:
    """CIFAR-10 layers-18pct trained `steps` steps in each dtype (same seeds, data, schedule): per-seed
    accuracies, and the mean difference (bfloat16 - float32, paired by seed) in points."""
    import tempfile

    from asgdjax.configs.cifar10_18pct import get_config
    from asgdjax.data import is_prepared
    from asgdjax.train.run import train

    if not is_prepared("cifar10"):
        return {"accuracy_skipped": "cifar10 is not prepared (asgdjax-prepare --dataset=cifar10 --npz=...)"}
    out: dict = {"accuracy_steps": steps, "accuracy_seeds": seeds}
    for dtype in ("float32", "bfloat16"):
        runs = []
        for seed in range(seeds):
            c = get_config()
            c.steps, c.dtype, c.tensorboard, c.seed = steps, dtype, False, seed
            c.eval_every = c.checkpoint_every = steps
            with tempfile.TemporaryDirectory() as workdir:
                runs.append(train(c, workdir, show_progress=False)["final_test_accuracy"])
            print(f"  {dtype} seed {seed}: {runs[-1]:.4f}", flush=True)
        out[f"accuracy_{dtype}_per_seed"] = runs
        out[f"accuracy_{dtype}"] = float(np.mean(runs))
    diffs = 100 * (np.asarray(out["accuracy_bfloat16_per_seed"]) - np.asarray(out["accuracy_float32_per_seed"]))
    out["accuracy_difference_points"] = float(diffs.mean())
    if seeds > 1:
        out["accuracy_difference_points_sem"] = float(diffs.std(ddof=1) / np.sqrt(seeds))
        out["accuracy_float32_seed_std_points"] = float(100 * np.std(out["accuracy_float32_per_seed"], ddof=1))
    return out


def main(argv):
    del argv
    gpu = jax.default_backend() != "cpu"
    model = FLAGS.model or ("alexnet" if gpu else "cifar_18pct")
    steps = (10 if FLAGS.quick else 30) if gpu else (3 if FLAGS.quick else 10)
    out: dict = {"benchmark": "mixed_precision", "model": model, "batch": FLAGS.batch}
    for dtype in ("float32", "bfloat16"):
        r = time_step(model, dtype, FLAGS.batch, steps)
        out[f"{dtype}_images_per_s"] = FLAGS.batch / r["seconds_per_step"]
        out[f"{dtype}_tflops"] = r["step_flops"] / r["seconds_per_step"] / 1e12
        out["step_flops"] = r["step_flops"]
    out["bf16_speedup"] = out["bfloat16_images_per_s"] / out["float32_images_per_s"]
    out["bf16_matmul_tflops_measured"] = bf16_matmul_tflops()
    out["bf16_fraction_of_measured_matmul"] = out["bfloat16_tflops"] / out["bf16_matmul_tflops_measured"]
    sheet = SPEC_SHEET_BF16_TFLOPS.get(jax.devices()[0].device_kind)
    if sheet:
        out["bf16_fraction_of_spec_sheet"] = out["bfloat16_tflops"] / sheet
    print(
        f"{model} batch {FLAGS.batch} on {jax.devices()[0].device_kind}: float32 {out['float32_images_per_s']:,.0f} "
        f"images/s ({out['float32_tflops']:.2f} TFLOP/s), bfloat16 {out['bfloat16_images_per_s']:,.0f} images/s "
        f"({out['bfloat16_tflops']:.2f} TFLOP/s, {out['bf16_speedup']:.2f}x; "
        f"{100 * out['bf16_fraction_of_measured_matmul']:.0f}% of a measured bf16 matmul)"
    )
    if FLAGS.accuracy_steps:
        out |= accuracy(FLAGS.accuracy_steps, FLAGS.accuracy_seeds)
        if "accuracy_float32" in out:
            spread = ""
            if FLAGS.accuracy_seeds > 1:
                spread = (
                    f" +- {out['accuracy_difference_points_sem']:.2f} (standard error over seeds); float32 seeds "
                    f"differ by {out['accuracy_float32_seed_std_points']:.2f} points (std)"
                )
            print(
                f"CIFAR-10 layers-18pct, {FLAGS.accuracy_steps} steps, mean of {FLAGS.accuracy_seeds} seed(s): "
                f"float32 {out['accuracy_float32']:.4f}, bfloat16 {out['accuracy_bfloat16']:.4f} "
                f"({out['accuracy_difference_points']:+.2f} points{spread})"
            )
    emit(out)


if __name__ == "__main__":
    app.run(main)
