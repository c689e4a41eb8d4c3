"""What a process pays before and between training steps: reading a prepared dataset, and evaluating.

  python experiments/bench/startup.py [--quick] [--dataset=mnist]

dataset load: `load_dataset` (the dense copy beside the TFDS files, `asgdjax.data.array_cache`) against
deserialising every record through TFDS data sources (`read_records`, what every load did before; both
splits). evaluation: `task.evaluate` (the whole resident test split in one program, one transfer) against
a Python loop over 1,000-example batches, each a jitted call whose two sums come back to the host (what it
did before, and what a user's eval loop does), MLP on the test split. ratio = baseline / asgdjax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import app, flags
from common import bench_task, best_time, emit

from asgdjax.data import array_cache
from asgdjax.data.load import builder_for, is_prepared, load_dataset, read_records

flags.DEFINE_bool("quick", False, "One repeat of the record read instead of two.")
flags.DEFINE_string("dataset", "mnist", "A prepared dataset (mnist is prepared from ../shared/data if present).")
FLAGS = flags.FLAGS


def dataset_load() -> dict:
    builder = builder_for(FLAGS.dataset)
    load_dataset(FLAGS.dataset)  # writes the dense copy if it is missing
    t_records = best_time(lambda: read_records(builder), 1 if FLAGS.quick else 2)
    t_copy = best_time(lambda: load_dataset(FLAGS.dataset), 3)
    size = sum(v.nbytes for v in array_cache.read(str(builder.data_dir), _counts(builder)).values())
    print(
        f"dataset load ({FLAGS.dataset}, {size / 2**20:.0f} MiB): records {t_records:.2f} s, dense copy {t_copy:.2f} s"
    )
    return {"records_s": t_records, "dense_copy_s": t_copy, "bytes": size, "ratio": t_records / t_copy}


def _counts(builder) -> dict[str, int]:
    return {s: int(builder.info.splits[s].num_examples) for s in ("train", "test")}


def evaluation() -> dict:
    task, data, ds, source = bench_task(FLAGS.dataset, "mlp")
    params = task.init(jax.random.key(0))
    x, y, n, bs = data["test_x"], data["test_y"], len(ds.test_labels), 1000

    def loop():
        correct = nll = 0.0
        for a in range(0, n, bs):
            xb, yb = x[a : a + bs], y[a : a + bs]
            c, s = task._eval_batch(params, xb, yb, jnp.ones(len(yb), bool))
            correct, nll = correct + float(c), nll + float(s)
        return correct / n

    one = lambda: task.evaluate(params, data)["test_accuracy"]  # noqa: E731
    assert abs(loop() - one()) < 1e-9  # same accuracy (and both compiled)
    t_loop, t_one = best_time(loop, 10), best_time(one, 10)
    print(
        f"evaluation ({n} examples, {source}): per-batch loop {t_loop * 1e3:.1f} ms, one program {t_one * 1e3:.1f} ms"
    )
    return {
        "examples": n,
        "data": source,
        "loop_ms": t_loop * 1e3,
        "one_program_ms": t_one * 1e3,
        "ratio": t_loop / t_one,
    }


def main(argv):
    del argv
    bench_task(FLAGS.dataset, "mlp")  # prepares mnist from ../shared/data when it can
    out = {"benchmark": "startup", "evaluation": evaluation()}
    if is_prepared(FLAGS.dataset):
        out["dataset_load"] = dataset_load()
    emit(out)


if __name__ == "__main__":
    app.run(main)
