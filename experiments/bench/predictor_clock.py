"""The predictor's clock against real runs: gradients/s and mean staleness of K real asynchronous workers,
predicted from a calibration taken on a separate short run of the same K (the accuracy half of the
validation is experiments/predictor_validation.py; this half needs no dataset, so it runs anywhere).

  python experiments/bench/predictor_clock.py [--quick] [--model=small_cnn --dataset=mnist --workers=1,2,4,8]

Goal (issue 9): within 15% on throughput (time) and 10% on mean staleness.
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
from asgdjax.parallel import group_devices  # noqa: E402
from asgdjax.predict import calibrate  # noqa: E402
from asgdjax.predict.targets import steady_rate  # noqa: E402
from asgdjax.rules import staleness_scaled_lr  # noqa: E402
from asgdjax.sim import make_schedule  # noqa: E402

flags.DEFINE_bool("quick", False, "Shorter runs.")
flags.DEFINE_string("model", "small_cnn", "Model.")
flags.DEFINE_string("dataset", "mnist", "Dataset (synthetic of its shape when not prepared).")
flags.DEFINE_integer("batch", 64, "Batch size per step.")
flags.DEFINE_string("workers", "1,2,4,8", "Worker counts.")
FLAGS = flags.FLAGS


def steady(trace, k):
    """Gradients/s from gradient 2K on (compilation excluded) and mean staleness."""
    return steady_rate(trace, k), trace.stats().staleness_mean


def main(argv):
    del argv
    cal_steps, steps = (150, 400) if FLAGS.quick else (400, 1500)
    task, data, ds, source = bench_task(FLAGS.dataset, FLAGS.model)
    host = jax.tree.map(np.asarray, data)
    params = task.init(jax.random.key(0))
    make = lambda h: Server(staleness_scaled_lr(), optax.sgd(h["learning_rate"], momentum=0.5))
    rows = []
    for k in [int(x) for x in FLAGS.workers.split(",")]:
        spec = ProtocolSpec(num_workers=k)
        smp = ShardSampler(ds.num_train, FLAGS.batch, 0, k)
        co = coordinator(task, make, {"learning_rate": 0.05}, spec, group_devices(k), host, smp, jax.random.key(1))
        co.run(params, spec.machine(4 * k))  # compile
        _, _, stats = co.run(params, spec.machine(cal_steps))  # the calibration run
        cal = calibrate(stats, k)
        _, real, _ = co.run(params, spec.machine(steps))  # the measured run
        predicted = make_schedule(jax.random.key(7), spec, num_steps=steps, delays=cal.for_workers(k))
        (m_rate, m_stale), (p_rate, p_stale) = steady(real, k), steady(predicted, k)
        rows.append(
            {
                "workers": k,
                "measured_gradients_per_s": m_rate,
                "predicted_gradients_per_s": p_rate,
                "rate_ratio": p_rate / m_rate,
                "measured_staleness": m_stale,
                "predicted_staleness": p_stale,
                "staleness_ratio": p_stale / m_stale if m_stale else None,
                "calibration": cal.to_json()["delay"],
            }
        )
        sr = f"{p_stale / m_stale:.3f}" if m_stale else "-"
        print(
            f"K={k}: gradients/s predicted {p_rate:8.1f} measured {m_rate:8.1f} (ratio {p_rate / m_rate:.3f}); "
            f"staleness {p_stale:.2f} vs {m_stale:.2f} (ratio {sr}); step {cal.delay.mean * 1e3:.2f} ms, "
            f"service {cal.delay.service * 1e3:.3f} ms, latency {cal.delay.latency * 1e3:.3f} ms",
            flush=True,
        )
    emit(
        {
            "benchmark": "predictor_clock",
            "model": FLAGS.model,
            "data": source,
            "batch": FLAGS.batch,
            "devices": [str(d) for d in jax.devices()][:8],
            "rows": rows,
        }
    )


if __name__ == "__main__":
    app.run(main)
