"""What many tests share: tree comparisons, server factories, the digits tasks, simulator and runtime runs,
an independent numpy-free reference of the trace semantics, and the console scripts as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.core.task import batch_key
from asgdjax.parallel import group_devices
from asgdjax.rules import plain
from asgdjax.runtime import Coordinator, RunOptions
from asgdjax.sim import Simulator

KEY = jax.random.key(1)
HP = {"learning_rate": 0.05, "local_learning_rate": 0.02}
B = 16


# ------------------------------------------------------------------------------------------- comparisons
def assert_trees_close(a, b, atol=2e-6, rtol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------------- servers
def sgd_server(rule=None, momentum=0.0, num_workers=1, cap=-1):
    """hparams -> Server: `rule` (default plain) then SGD at hparams['learning_rate']."""

    def make(h):
        opt = optax.sgd(h["learning_rate"], momentum=momentum or None)
        return Server(rule or plain(), opt, num_workers=num_workers, staleness_cap=cap)

    return make


# ------------------------------------------------------------------------------------------------- runs
def sampler(num_examples, k, batch=B, seed=0):
    return ShardSampler(num_examples, batch, seed, k)


def simulate(task, data, trace, *, make_server=None, spec=None, strategy="sequential", chunk=2, hp=HP, p0=None):
    """Replay `trace` (protocol `spec`, default plain async of the trace's workers) from `p0`."""
    spec = spec or ProtocolSpec(num_workers=trace.num_workers)
    sim = Simulator(task, make_server or sgd_server(), spec, strategy=strategy, chunk=chunk)
    p0 = task.init(jax.random.key(0)) if p0 is None else p0
    smp = sampler(_num_examples(data), trace.num_workers)
    return sim.run(sim.init(p0, hp), trace, data, hp, smp, KEY), p0, smp


def run_runtime(
    task,
    data,
    spec,
    steps,
    *,
    make_server=None,
    devices=None,
    options=RunOptions(),
    backend="local",
    backend_options=None,
):
    """A real coordinator run of `spec` for `steps` gradients; returns (server, trace, stats, p0, sampler)."""
    smp = sampler(_num_examples(data), spec.num_workers)
    co = Coordinator(
        task,
        make_server or sgd_server(),
        HP,
        spec,
        devices=devices or group_devices(spec.num_workers),
        data=jax.tree.map(np.asarray, data),
        sampler=smp,
        data_key=KEY,
        backend=backend,
        backend_options=backend_options,
    )
    p0 = task.init(jax.random.key(0))
    try:
        server, trace, stats = co.run(p0, spec.machine(steps), options=options)
    finally:
        co.shutdown()
    return server, trace, stats, p0, smp


def _num_examples(data):
    return int(data["train_y"].shape[0])


def reference(task, data, trace, smp, p0, *, lr=HP["learning_rate"], llr=HP["local_learning_rate"], local=False):
    """The trace semantics in plain Python: per event compute the worker's gradient on its copy, (local
    step), push, apply averaged groups with SGD, fetch. Independent of the simulator's state layout."""
    sub = lambda a, b, c: jax.tree.map(lambda x, y: x - c * y, a, b)
    k = trace.num_workers
    params, copies = p0, [p0] * k
    acc = [jax.tree.map(jnp.zeros_like, p0)] * k
    pending, fetch_on_apply = [], []
    grad = jax.jit(task.grad)
    for e in range(len(trace)):
        w, s = int(trace.worker[e]), int(trace.step[e])
        if s >= 0:
            _, g = grad(copies[w], data, smp.batch(w, s), batch_key(KEY, w, s))
            if local:
                copies[w] = sub(copies[w], g, llr)
            acc[w] = jax.tree.map(jnp.add, acc[w], g)
        if trace.push[e]:
            pending.append(acc[w])
            acc[w] = jax.tree.map(jnp.zeros_like, p0)
            if trace.fetch[e] == 2:
                fetch_on_apply.append(w)
        if trace.apply[e]:
            mean = jax.tree.map(lambda *gs: sum(gs) / len(gs), *pending)
            params = sub(params, mean, lr)
            for v in fetch_on_apply:
                copies[v] = params
            pending, fetch_on_apply = [], []
        if trace.fetch[e] == 1:
            copies[w] = params
            if s < 0:
                acc[w] = jax.tree.map(jnp.zeros_like, p0)
    return params


def exactly_once(trace) -> bool:
    keys = [(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0]
    return len(keys) == len(set(keys))


# -------------------------------------------------------------------------------------------- the CLIs
SCRIPTS = {
    "train": "from asgdjax.main import run; run()",
    "prepare": "from asgdjax.prepare import run; run()",
    "predict": "from asgdjax.predict_main import entry; entry()",
    "sweep": "from asgdjax.sweep_main import entry; entry()",
    "plan": "from asgdjax.plan_main import entry; entry()",
}


def run_cli(script, args, cwd, env=None, timeout=900):
    """Run a console script (train, prepare, predict, sweep) on the CPU: its own entry point in a child
    forked from a warm server (ASGDJAX_TEST_SUBPROCESS=1: a fresh interpreter each time)."""
    if os.environ.get("ASGDJAX_TEST_SUBPROCESS") == "1":
        e = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
        cmd = [sys.executable, "-c", SCRIPTS[script], *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=e, timeout=timeout)
    out = _fork_server().run(script, [str(a) for a in args], cwd, env, timeout)
    return subprocess.CompletedProcess(args, out["code"], out["stdout"], out["stderr"])


class _ForkServer:
    """tests/fuzz_driver.py, started once per test session."""

    def __init__(self, env=None):
        import atexit
        import json

        self._json = json
        e = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
        driver = os.path.join(os.path.dirname(__file__), "fuzz_driver.py")
        self.proc = subprocess.Popen(
            [sys.executable, driver], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=e
        )
        assert json.loads(self.proc.stdout.readline())["ready"]
        atexit.register(self.close)

    def run(self, script, args, cwd, env=None, timeout=900):
        case = {"script": script, "args": args, "cwd": str(cwd), "env": env or {}, "timeout": timeout}
        self.proc.stdin.write(self._json.dumps(case) + "\n")
        self.proc.stdin.flush()
        return self._json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


_SERVER: list = []


def _fork_server() -> _ForkServer:
    if not _SERVER:
        _SERVER.append(_ForkServer())
    return _SERVER[0]


def one_line_error(out, code=2) -> str:
    """Assert the command failed with `code`, printing one line and no traceback; return the line."""
    assert out.returncode == code, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [x for x in out.stderr.splitlines() if "error:" in x or "stopped:" in x]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


def checkpoint_state(workdir):
    """The state pytree of a workdir's latest checkpoint, restored as saved (host arrays)."""
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
    try:
        out = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    finally:
        mgr.close()
    return out["state"]


def wait_for_checkpoint(proc, workdir, at_least, timeout=300):
    """Poll until the running `proc` has written a checkpoint of step >= at_least (or ended)."""
    import time

    ckdir = os.path.join(workdir, "checkpoints")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        names = os.listdir(ckdir) if os.path.isdir(ckdir) else []
        if any(n.isdigit() and int(n) >= at_least for n in names):
            return
        time.sleep(0.02)


def popen_cli(script, args, cwd):
    e = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", SCRIPTS[script], *args]
    return subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sleeping_coordinator(digits_task, params, times, **pool_options):
    """A coordinator (one worker per entry of `times`) over `fakes.SleepWorkers` (steps taking `times[w][s]` seconds, zero gradients)."""
    from fakes import SleepWorkers

    task, data = digits_task
    return Coordinator(
        task,
        sgd_server(),
        {"learning_rate": 0.01},
        ProtocolSpec(num_workers=len(times)),
        devices=[None] * len(times),
        data=jax.tree.map(np.asarray, data),
        sampler=sampler(int(data["train_y"].shape[0]), len(times), batch=8),
        data_key=jax.random.key(1),
        backend=SleepWorkers(params, times, **pool_options),
    )
