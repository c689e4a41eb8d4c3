"""A simulation cut into short calls (evaluations, a planner's rungs) against the same run uncut.

  python experiments/bench/cut_calls.py [--quick]

The scan strategy pads every call to its chunk of C event slots, so a run that evaluates every E events
pays C - E padded slots per call. ratio = uncut seconds / cut seconds (1.0: cuts cost nothing); goal: a
padded slot costs at most a tenth of a real event. Setting: the planner's MNIST MLP (batch 64, 2 workers, the scan strategy with C = 100), plain A-SGD and Downpour
(n_fetch = n_push = 4), the same simulator and schedule for both runs of a pair.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from absl import app, flags
from common import bench_task, best_time, emit, schedule

from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.rules import plain
from asgdjax.sim import Simulator

flags.DEFINE_bool("quick", False, "Short runs (under a minute).")
flags.DEFINE_string("cuts", "10,40", "Events per call of the cut runs.")
FLAGS = flags.FLAGS
CHUNK = 100
PROTOCOLS = {"async": {}, "downpour:4": {"n_fetch": 4, "n_push": 4}}


def measure(protocol: str, steps: int, task, data, ds) -> dict:
    spec, trace = schedule(2, 2, steps, **PROTOCOLS[protocol])
    params = task.init(jax.random.key(0))
    hp = {"learning_rate": 0.05, "local_learning_rate": 0.05}
    sim = Simulator(task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), spec, strategy="scan", chunk=CHUNK)
    sampler = ShardSampler(ds.num_train, 64, 0, 2)

    def run(cuts: tuple[int, ...]) -> None:
        st = sim.init(params, hp)
        st = sim.run(st, trace, data, hp, sampler, jax.random.key(1), cuts=cuts, callback=lambda *a: np.asarray(a[2]))
        jax.block_until_ready(st.server.params)

    run(())
    uncut = best_time(lambda: run(()))
    out = {"protocol": protocol, "events": len(trace), "chunk": CHUNK, "uncut_ms_per_event": uncut / len(trace) * 1e3}
    for every in (int(e) for e in FLAGS.cuts.split(",")):
        cuts = tuple(range(every, len(trace), every))
        cut = best_time(lambda cuts=cuts: run(cuts))
        calls = len(sim.boundaries(trace, cuts=cuts)) - 1
        padded = calls * CHUNK - len(trace)
        out[f"every_{every}_ratio"] = uncut / cut
        out[f"every_{every}_us_per_padded_slot"] = max(0.0, cut - uncut) / max(padded, 1) * 1e6
        out[f"every_{every}_padded_slot_share"] = max(0.0, cut - uncut) / max(padded, 1) / (uncut / len(trace))
        print(
            f"{protocol:10s} a call every {every:3d} events: {cut / len(trace) * 1e3:.3f} ms per event against "
            f"{uncut / len(trace) * 1e3:.3f} uncut (ratio {uncut / cut:.2f}; "
            f"{out[f'every_{every}_us_per_padded_slot']:.1f} us per padded slot, "
            f"{out[f'every_{every}_padded_slot_share']:.0%} of an event)"
        )
    return out


def main(argv):
    del argv
    task, data, ds, source = bench_task("mnist", "mlp")
    steps = 400 if FLAGS.quick else 2000
    results = [measure(p, steps, task, data, ds) for p in PROTOCOLS]
    emit({"benchmark": "cut_calls", "data": source, "goal": "padded_slot_share <= 0.1", "results": results})


if __name__ == "__main__":
    app.run(main)
