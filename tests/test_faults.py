"""Worker failures: a step that raises or hangs is reported, nothing of it is applied, the worker restarts
(or is dropped), the run finishes, the trace records it, replays exactly and keeps exactly-once."""

import json
import signal

import jax
import numpy as np
import pytest
from helpers import (
    assert_trees_close,
    assert_trees_equal,
    checkpoint_state,
    exactly_once,
    popen_cli,
    run_cli,
    run_runtime,
    sgd_server,
    simulate,
    wait_for_checkpoint,
)

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.runtime import RunOptions
from asgdjax.sim import make_schedule

MAKE = sgd_server(num_workers=4)


def run(digits_task, spec, steps, **options):
    task, data = digits_task
    server, trace, _, p0, _ = run_runtime(task, data, spec, steps, make_server=MAKE, options=RunOptions(**options))
    return server, trace, p0


def replay_matches(digits_task, trace, spec, p0, server):
    task, data = digits_task
    state, _, _ = simulate(task, data, trace, spec=spec, make_server=MAKE, p0=p0)
    assert_trees_close(state.server.params, server.params, atol=1e-6)


@pytest.mark.parametrize("local", [False, True])
def test_a_failing_worker_restarts_and_the_run_finishes(digits_task, local):
    spec = ProtocolSpec(num_workers=4, n_fetch=2 if local else 1, n_push=2 if local else 1)
    server, trace, p0 = run(digits_task, spec, 40, faults={(1, 3): "raise"})
    assert trace.num_gradients == 40 and exactly_once(trace)
    [failure] = trace.meta["failures"]
    assert (failure["worker"], failure["step"], failure["dropped"]) == (1, 3, False)
    assert "injected failure of worker 1 at step 3" in failure["error"]
    restart = [e for e in range(len(trace)) if trace.step[e] == -1]
    assert [int(trace.worker[e]) for e in restart] == [1] and trace.fetch[restart[0]] == 1
    assert 3 in [int(s) for w, s in zip(trace.worker, trace.step, strict=True) if w == 1]  # step 3 retried once
    replay_matches(digits_task, trace, spec, p0, server)


def test_the_worker_timeout_is_per_local_step_of_a_call(digits_task):
    """A pool call computing n local steps (a Ray Downpour segment) may take n timeouts: 0.3 s calls of
    3 steps under a 0.15 s timeout all finish; a hung one fails after 0.45 s."""
    from helpers import sleeping_coordinator

    params = digits_task[0].init(jax.random.key(0))
    co = sleeping_coordinator(digits_task, params, [np.full(12, 0.3)] * 2, steps_per_call=3)
    options = RunOptions(worker_timeout=0.15, faults={(1, 2): "hang"})
    _, trace, _ = co.run(params, co.spec.machine(8), options=options)
    assert trace.num_gradients == 8 and exactly_once(trace)
    [failure] = trace.meta["failures"]
    assert (failure["worker"], failure["step"]) == (1, 2) and "no gradient after 0.45 s" in failure["error"]


def test_a_hung_worker_times_out_and_is_treated_as_failed(digits_task):
    spec = ProtocolSpec(num_workers=4)
    server, trace, p0 = run(digits_task, spec, 32, faults={(2, 2): "hang"}, worker_timeout=2.0)
    assert trace.num_gradients == 32 and exactly_once(trace)
    [failure] = trace.meta["failures"]
    assert failure["worker"] == 2 and "no gradient after 2 s" in failure["error"]
    replay_matches(digits_task, trace, spec, p0, server)


def test_a_worker_failing_too_often_is_dropped_and_the_others_finish(digits_task):
    spec = ProtocolSpec(num_workers=4)
    server, trace, p0 = run(digits_task, spec, 40, faults={(3, 1): "raise"}, max_failures=0)
    assert trace.meta["failures"][0]["dropped"] is True
    assert trace.num_gradients == 40 and exactly_once(trace)
    assert max(int(s) for w, s in zip(trace.worker, trace.step, strict=True) if w == 3) == 0  # only step 0
    replay_matches(digits_task, trace, spec, p0, server)


def test_when_every_worker_is_dropped_the_run_says_so(digits_task):
    faults = {(w, 0): "raise" for w in range(4)}
    with pytest.raises(RuntimeError, match="all 4 workers failed more than max_failures=0 times"):
        run(digits_task, ProtocolSpec(num_workers=4), 20, faults=faults, max_failures=0)


def test_the_simulator_injects_the_same_failures_at_virtual_times():
    spec = ProtocolSpec(num_workers=3)
    t = make_schedule(jax.random.key(0), spec, num_steps=30, delays=DelayModel("constant"), failures=[(1, 2)])
    assert t.num_gradients == 30
    [f] = t.meta["failures"]
    assert (f["worker"], f["step"]) == (1, 2) and f["time"] == 3.0  # step 2 of a 1.0-per-step worker ends at 3
    restart = int(np.flatnonzero(t.step == -1)[0])
    assert t.worker[restart] == 1 and t.t_arrive[restart] == 3.0


@pytest.mark.slow
def test_fault_drill_through_the_cli_config(tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.train import train

    c = get_config()
    c.mode, c.num_workers, c.steps, c.model, c.fail_at = "async", 3, 60, "mlp", "1:4,2:6"
    c.warm_start_steps = 0
    s = train(c, str(tmp_path / "drill"), show_progress=False)
    assert s["gradients"] == 60 and sorted(f["worker"] for f in s["worker_failures"]) == [1, 2]  # order is timing
    assert s["dropped_workers"] == []
    c.mode = "sim"
    s = train(c, str(tmp_path / "drill_sim"), show_progress=False)
    assert s["gradients"] == 60


@pytest.mark.slow
def test_a_simulated_run_killed_with_sigkill_resumes_to_the_same_parameters(tmp_path):
    args = [
        "--config.mode=sim",
        "--config.model=mlp",
        "--config.num_workers=4",
        "--config.steps=400",
        "--config.checkpoint_every=40",
        "--config.log_every=40",
        "--config.eval_every=400",
        "--noprogress",
    ]
    full = run_cli("train", [*args, "--workdir=full"], tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    proc = popen_cli("train", [*args, "--workdir=cut"], tmp_path)
    wait_for_checkpoint(proc, str(tmp_path / "cut"), 80)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_cli("train", [*args, "--workdir=cut"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    s = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert 0 < s["resumed_from_step"] < 400
    params = lambda name: checkpoint_state(str(tmp_path / name))["sim"]["server"]["params"]
    assert_trees_equal(params("full"), params("cut"))


@pytest.mark.slow
def test_soak_2000_async_updates_with_random_failures(digits_task):
    rng = np.random.default_rng(0)
    faults = {(int(w), int(s)): "raise" for w, s in zip(rng.integers(0, 4, 40), rng.integers(1, 480, 40), strict=True)}
    task, data = digits_task
    results = {}
    for name, f in (("clean", {}), ("faulty", faults)):
        server, trace, p0 = run(digits_task, ProtocolSpec(num_workers=4), 2000, faults=f, max_failures=100)
        assert trace.num_gradients == 2000 and exactly_once(trace)
        results[name] = task.evaluate(server.params, data)["test_accuracy"]
        if f:  # a fault fires when its worker reaches that step (all but the last few do)
            executed = {(int(w), int(s)) for w, s in zip(trace.worker, trace.step, strict=True) if s >= 0}
            fired = {k for k in f if k in executed}
            assert {(x["worker"], x["step"]) for x in trace.meta["failures"]} == fired and len(fired) >= 35
    assert abs(results["clean"] - results["faulty"]) <= 0.01, results


@pytest.mark.slow
def test_an_async_run_killed_with_sigkill_resumes_without_losing_or_repeating_updates(tmp_path):
    args = [
        "--config.mode=async",
        "--config.model=mlp",
        "--config.num_workers=3",
        "--config.steps=500",
        "--config.checkpoint_every=50",
        "--config.log_every=50",
        "--config.eval_every=500",
        "--noprogress",
    ]
    proc = popen_cli("train", [*args, "--workdir=run"], tmp_path)
    wait_for_checkpoint(proc, str(tmp_path / "run"), 150)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = run_cli("train", [*args, "--workdir=run"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from checkpoint" in out.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 < s["resumed_from_step"] < 500 and s["gradients"] == 500
    trace = Trace.load(str(tmp_path / "run" / "trace.npz"))
    assert trace.num_gradients == 500 and exactly_once(trace)
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in steps]
    assert logged == sorted(logged)  # no step logged twice out of order after the resume
    # The whole story, checkpoint boundary included, replays exactly in the simulator.
    replay = [a.replace("--config.mode=async", "--config.mode=sim") for a in args]
    out = run_cli("train", [*replay, "--workdir=replay", f"--config.trace={tmp_path / 'run' / 'trace.npz'}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_params = checkpoint_state(str(tmp_path / "run"))["server"]["params"]
    replay_params = checkpoint_state(str(tmp_path / "replay"))["sim"]["server"]["params"]
    assert_trees_close(run_params, replay_params, atol=1e-6)
