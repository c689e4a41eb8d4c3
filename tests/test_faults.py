"""Worker failures: a step that raises or hangs is reported, nothing of it is applied, the worker restarts
(or is dropped), the run finishes, the trace records it, replays exactly and keeps exactly-once."""

import jax
import numpy as np
import optax
import pytest

from asgdjax.delays import DelayModel
from asgdjax.parallel import group_devices
from asgdjax.rules import plain
from asgdjax.runtime import Coordinator
from asgdjax.server import Server
from asgdjax.sim import Simulator, make_schedule, make_streams
from asgdjax.sim.protocol import Protocol

HP = {"learning_rate": 0.05, "local_learning_rate": 0.02}
KEY = jax.random.key(1)


def make(h):
    return Server(plain(), optax.sgd(h["learning_rate"]), num_workers=4)


def run(digits_task, digits, protocol, local=False, **kw):
    task, data = digits_task
    streams = make_streams(digits.num_train, 16, 0, 4)
    co = Coordinator(task, make, HP, group_devices(4), jax.tree.map(np.asarray, data), streams, KEY, 1, local)
    p0 = task.model.init(jax.random.key(0))
    server, trace, _ = co.run(p0, protocol, **kw)
    return server, trace, p0, streams


def replay_matches(digits_task, trace, p0, streams, server, local=False):
    task, data = digits_task
    sim = Simulator(task, make, 4, 1, local, chunk=4)
    out = sim.run(sim.init(p0, HP), trace, data, HP, streams, KEY)
    for x, y in zip(jax.tree.leaves(out.server.params), jax.tree.leaves(server.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def exactly_once(trace):
    keys = [(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0]
    return len(keys) == len(set(keys))


@pytest.mark.parametrize("local", [False, True])
def test_a_failing_worker_restarts_and_the_run_finishes(digits_task, digits, local):
    proto = Protocol(4, 40, n_fetch=2 if local else 1, n_push=2 if local else 1)
    server, trace, p0, streams = run(digits_task, digits, proto, local, faults={(1, 3): "raise"})
    assert trace.num_gradients == 40 and exactly_once(trace)
    [failure] = trace.meta["failures"]
    assert (failure["worker"], failure["step"], failure["dropped"]) == (1, 3, False)
    assert "injected failure of worker 1 at step 3" in failure["error"]
    restart = [e for e in range(len(trace)) if trace.step[e] == -1]
    assert [int(trace.worker[e]) for e in restart] == [1] and trace.fetch[restart[0]] == 1
    assert 3 in [int(s) for w, s in zip(trace.worker, trace.step, strict=True) if w == 1]  # step 3 retried once
    replay_matches(digits_task, trace, p0, streams, server, local)


def test_a_hung_worker_times_out_and_is_treated_as_failed(digits_task, digits):
    server, trace, p0, streams = run(digits_task, digits, Protocol(4, 32), faults={(2, 2): "hang"}, worker_timeout=2.0)
    assert trace.num_gradients == 32 and exactly_once(trace)
    [failure] = trace.meta["failures"]
    assert failure["worker"] == 2 and "no gradient after 2 s" in failure["error"]
    replay_matches(digits_task, trace, p0, streams, server)


def test_a_worker_failing_too_often_is_dropped_and_the_others_finish(digits_task, digits):
    faults = {(3, 1): "raise"}
    server, trace, p0, streams = run(digits_task, digits, Protocol(4, 40), faults=faults, max_failures=0)
    assert trace.meta["failures"][0]["dropped"] is True
    assert trace.num_gradients == 40 and exactly_once(trace)
    assert max(int(s) for w, s in zip(trace.worker, trace.step, strict=True) if w == 3) == 0  # only step 0
    replay_matches(digits_task, trace, p0, streams, server)


def test_when_every_worker_is_dropped_the_run_says_so(digits_task, digits):
    faults = {(w, 0): "raise" for w in range(4)}
    with pytest.raises(RuntimeError, match="all 4 workers failed more than max_failures=0 times"):
        run(digits_task, digits, Protocol(4, 20), faults=faults, max_failures=0)


def test_the_simulator_injects_the_same_failures_at_virtual_times():
    t = make_schedule(jax.random.key(0), 3, 30, DelayModel("constant"), failures=[(1, 2)])
    assert t.num_gradients == 30
    [f] = t.meta["failures"]
    assert (f["worker"], f["step"]) == (1, 2) and f["time"] == 3.0  # step 2 of a 1.0-per-step worker ends at 3
    restart = int(np.flatnonzero(t.step == -1)[0])
    assert t.worker[restart] == 1 and t.t_arrive[restart] == 3.0


def test_fault_drill_through_the_cli_config(tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.train import train

    c = get_config()
    c.mode, c.num_workers, c.steps, c.rule, c.fail_at = "async", 3, 60, "staleness_lr", "1:4,2:6"
    s = train(c, str(tmp_path / "drill"), show_progress=False)
    assert s["gradients"] == 60 and sorted(f["worker"] for f in s["worker_failures"]) == [1, 2]  # order is timing
    assert s["dropped_workers"] == []
    c.mode = "sim"
    s = train(c, str(tmp_path / "drill_sim"), show_progress=False)
    assert s["gradients"] == 60


def test_a_simulated_run_killed_with_sigkill_resumes_to_the_same_parameters(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [
        "--config.mode=sim",
        "--config.num_workers=4",
        "--config.steps=400",
        "--config.checkpoint_every=40",
        "--config.log_every=40",
        "--config.eval_every=400",
        "--config.sim_chunk=5",
        "--noprogress",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", "from asgdjax.main import run; run()", *args]
    full = subprocess.run([*cmd, "--workdir=full"], cwd=tmp_path, env=env, capture_output=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    proc = subprocess.Popen(
        [*cmd, "--workdir=cut"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckdir = tmp_path / "cut" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in (ckdir.iterdir() if ckdir.exists() else []) if p.name.isdigit()]
        if any(int(p.name) >= 80 for p in done):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([*cmd, "--workdir=cut"], cwd=tmp_path, env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    import json

    s = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert 0 < s["resumed_from_step"] < 400
    from asgdjax.train.outputs import Checkpoints

    def final(name):
        ck = Checkpoints(str(tmp_path / name))
        out = ck.manager.restore(ck.latest_step())
        ck.close()
        return out["sim"]["server"]["params"]

    for x, y in zip(jax.tree.leaves(final("full")), jax.tree.leaves(final("cut")), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_soak_2000_async_updates_with_random_failures(digits_task, digits):
    rng = np.random.default_rng(0)
    faults = {(int(w), int(s)): "raise" for w, s in zip(rng.integers(0, 4, 40), rng.integers(1, 480, 40), strict=True)}
    task, data = digits_task
    results = {}
    for name, f in (("clean", {}), ("faulty", faults)):
        server, trace, p0, streams = run(digits_task, digits, Protocol(4, 2000), faults=f, max_failures=100)
        assert trace.num_gradients == 2000 and exactly_once(trace)
        results[name] = task.evaluate(server.params, data)["test_accuracy"]
        if f:  # a fault fires when its worker reaches that step (all but the last few do)
            executed = {(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0}
            fired = {k for k in f if k in executed}
            assert {(x["worker"], x["step"]) for x in trace.meta["failures"]} == fired and len(fired) >= 35
    assert abs(results["clean"] - results["faulty"]) <= 0.01, results


def test_an_async_run_killed_with_sigkill_resumes_without_losing_or_repeating_updates(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from asgdjax.sim import Trace

    args = [
        "--config.mode=async",
        "--config.num_workers=3",
        "--config.rule=staleness_lr",
        "--config.steps=500",
        "--config.checkpoint_every=50",
        "--config.log_every=50",
        "--config.eval_every=500",
        "--noprogress",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", "from asgdjax.main import run; run()", *args, "--workdir=run"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume_dir = tmp_path / "run" / "resume"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if resume_dir.exists() and any(int(p.stem) >= 150 for p in resume_dir.glob("*.npz")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from checkpoint" in out.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 < s["resumed_from_step"] < 500 and s["gradients"] == 500
    trace = Trace.load(str(tmp_path / "run" / "trace.npz"))
    assert trace.num_gradients == 500 and exactly_once(trace)
    # The whole story, checkpoint boundary included, replays exactly in the simulator.
    replay = [a.replace("--config.mode=async", "--config.mode=sim") for a in args]
    cmd = [
        sys.executable,
        "-c",
        "from asgdjax.main import run; run()",
        *replay,
        "--workdir=replay",
        f"--config.trace={tmp_path / 'run' / 'trace.npz'}",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from asgdjax.train.outputs import Checkpoints

    def final(name):
        ck = Checkpoints(str(tmp_path / name))
        got = ck.manager.restore(ck.latest_step())
        ck.close()
        return got.get("sim", got)["server"]["params"]

    for x, y in zip(jax.tree.leaves(final("run")), jax.tree.leaves(final("replay")), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-5)
