"""The trainer in-process: sync resume, sim mode outputs, sim resume."""

import json
import shutil

import jax
import numpy as np

from asgdjax.configs.default import get_config
from asgdjax.sim import Trace
from asgdjax.train import train
from asgdjax.train.outputs import Checkpoints


def config(**kw):
    c = get_config()
    c.steps, c.log_every, c.eval_every, c.checkpoint_every = 60, 20, 30, 30
    for k, v in kw.items():
        c[k] = v
    return c


def final_params(workdir, like_step):
    ck = Checkpoints(str(workdir))
    step = ck.latest_step()
    raw = ck.manager.restore(step)
    ck.close()
    return step, raw


def test_sync_resume_continues_to_the_same_result(tmp_path):
    full = train(config(), str(tmp_path / "full"), show_progress=False)
    train(config(steps=30), str(tmp_path / "cut"), show_progress=False)
    resumed = train(config(), str(tmp_path / "cut"), show_progress=False)
    assert resumed["resumed_from_step"] == 30 and resumed["steps"] == 60
    _, a = final_params(tmp_path / "full", 60)
    _, b = final_params(tmp_path / "cut", 60)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert resumed["final_test_accuracy"] == full["final_test_accuracy"]


def test_sim_mode_reports_staleness_and_saves_its_trace(tmp_path):
    s = train(
        config(mode="sim", num_workers=4, rule="staleness_lr", steps=80), str(tmp_path / "sim"), show_progress=False
    )
    assert s["mode"] == "sim" and s["gradients"] == 80 and s["updates"] == 80
    assert 2.0 < s["staleness_mean"] < 4.5 and s["staleness_max"] >= 3 and s["virtual_time"] > 0
    trace = Trace.load(s["trace"])
    assert trace.num_gradients == 80 and trace.num_workers == 4
    records = [json.loads(x) for x in (tmp_path / "sim" / "metrics.jsonl").read_text().splitlines()]
    assert any("staleness_mean" in r and "virtual_time" in r for r in records)


def test_sim_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    kw = dict(mode="sim", num_workers=3, protocol="async", n_push=2, n_fetch=2, sim_chunk=5, checkpoint_every=25)
    train(config(**kw), str(tmp_path / "full"), show_progress=False)
    train(config(**kw), str(tmp_path / "cut"), show_progress=False)
    # Lose everything after the first checkpoint, as a run killed there would, then rerun the same command.
    ckdir = tmp_path / "cut" / "checkpoints"
    steps = sorted(int(p.name) for p in ckdir.iterdir() if p.name.isdigit())
    assert len(steps) >= 2 and steps[0] < 60
    for s in steps[1:]:
        shutil.rmtree(ckdir / str(s))
    resumed = train(config(**kw), str(tmp_path / "cut"), show_progress=False)
    assert resumed["resumed_from_step"] == steps[0]
    _, a = final_params(tmp_path / "full", 60)
    _, b = final_params(tmp_path / "cut", 60)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_sim_mode_replays_dai_et_al_uniform_staleness_from_a_version_ring(tmp_path):
    c = config(mode="sim", num_workers=4, steps=40)
    c.delay.kind, c.delay.staleness_bound = "uniform_staleness", 4
    s = train(c, str(tmp_path / "dai"), show_progress=False)
    assert s["sim_memory"] == "ring of 5 versions" and s["staleness_max"] <= 4


def test_async_mode_reports_runtime_metrics_and_its_trace_replays(tmp_path):

    c = config(mode="async", num_workers=4, rule="staleness_lr", steps=60)
    s = train(c, str(tmp_path / "async"), show_progress=False)
    assert s["mode"] == "async" and s["gradients"] == 60 and s["updates"] == 60
    assert len(s["worker_steps_per_second"]) == 4 and s["devices"] == [f"cpu:{i}" for i in range(4)]
    assert 0 <= s["staleness_mean"] <= s["staleness_max"]
    trace = Trace.load(s["trace"])
    assert trace.meta["source"] == "runtime" and trace.num_gradients == 60
    # Replay the recorded trace in the simulator (mode=sim, trace=...): the same final parameters.
    r = train(
        config(mode="sim", num_workers=4, rule="staleness_lr", steps=60, trace=s["trace"]),
        str(tmp_path / "replay"),
        show_progress=False,
    )
    assert r["updates"] == 60
    _, saved = final_params(tmp_path / "async", 60)
    _, replayed = final_params(tmp_path / "replay", 60)
    for x, y in zip(
        jax.tree.leaves(replayed["sim"]["server"]["params"]), jax.tree.leaves(saved["server"]["params"]), strict=True
    ):
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-5)
