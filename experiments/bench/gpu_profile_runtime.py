"""Where the runtime's time goes on a GPU for AlexNet b128: gradient-only, apply-only, plain step, runtime."""

import time

import jax
import numpy as np
import optax
from common import alexnet_task, best_time, plain_sgd_loop

from asgdjax.data import WorkerStream
from asgdjax.rules import plain
from asgdjax.runtime import Coordinator
from asgdjax.server import Server
from asgdjax.sim.protocol import Protocol
from asgdjax.train.sync import make_sync_step
from asgdjax.train.task import batch_key

b, n, steps = 128, 512, 30
task, data, params = alexnet_task(n)
key = jax.random.key(1)
stream = WorkerStream(n, b, 0)
grad = jax.jit(lambda p, d, idx, w, s: task.grad(p, d, idx, batch_key(key, w, s)))
_, g = grad(params, data, stream.batch(0), np.int32(0), np.int32(0))
t = best_time(
    lambda: jax.block_until_ready(
        [grad(params, data, stream.batch(s), np.int32(0), np.int32(s)) for s in range(steps)]
    ),
    2,
)
print(f"grad only: {t / steps * 1e3:.2f} ms/step")
srv = Server(plain(), optax.sgd(0.01, momentum=0.9))
st = srv.init(params)
ap = jax.jit(lambda st, g, rv, w, rp: srv.apply_one(st, g, rv, w, rp))
st = ap(st, g, np.int32(0), np.int32(0), params)


def applies():
    s = st
    for _ in range(steps):
        s = ap(s, g, np.int32(0), np.int32(0), params)
    jax.block_until_ready(s)


print(f"apply only: {best_time(applies, 2) / steps * 1e3:.2f} ms/step")
opt = optax.sgd(0.01, momentum=0.9)
step = make_sync_step(task, opt)


loop = plain_sgd_loop(task, opt, params, data, [stream.batch(s) for s in range(steps)], key)


loop()
print(f"plain step: {best_time(loop, 2) / steps * 1e3:.2f} ms/step")


def chained():
    p, s_ = params, st
    for s in range(steps):
        _, gg = grad(p, data, stream.batch(s), np.int32(0), np.int32(s))
        jax.block_until_ready(gg)
        s_ = ap(s_, gg, np.int32(0), np.int32(0), p)
        p = s_.params
    jax.block_until_ready(p)


chained()
print(f"grad+block+apply chained: {best_time(chained, 2) / steps * 1e3:.2f} ms/step")
co = Coordinator(
    task,
    lambda h: Server(plain(), optax.sgd(h["learning_rate"], momentum=0.9)),
    {"learning_rate": 0.01},
    [jax.devices()[0]],
    jax.tree.map(np.asarray, data),
    [stream],
    key,
)
co.run(params, Protocol(1, 2))
t = time.perf_counter()
co.run(params, Protocol(1, steps))
t = time.perf_counter() - t
print(f"runtime K=1: {t / steps * 1e3:.2f} ms/step")
