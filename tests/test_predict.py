"""The predictor: the virtual clock's server queue, calibration recovering known step times from a real
coordinator run, calibration files, deterministic predictions, and the CLI's one-line errors."""

import json

import jax
import numpy as np
import pytest
from helpers import one_line_error, run_cli, sleeping_coordinator

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.predict import Calibration, calibrate
from asgdjax.sim import make_schedule


def sched(k, steps, delays, **kw):
    return make_schedule(jax.random.key(0), ProtocolSpec(num_workers=k, **kw), num_steps=steps, delays=delays)


def test_a_busy_server_caps_throughput_in_the_virtual_clock():
    free = sched(8, 400, DelayModel("constant", mean=1.0))
    assert free.num_gradients / free.virtual_time == pytest.approx(8.0, rel=0.02)
    queued = sched(8, 400, DelayModel("constant", mean=1.0, service=0.5))
    assert queued.num_gradients / queued.virtual_time == pytest.approx(2.0, rel=0.02)  # 1 / service
    one = sched(1, 100, DelayModel("constant", mean=1.0, latency=0.25, service=0.25))
    assert one.virtual_time == pytest.approx(100 * 1.5 - 0.5, rel=1e-6)  # step + latency + service per step
    # The coordinator notices and dispatches Downpour's local steps too: each costs its service time, but
    # only pushes pay the apply time.
    local = sched(1, 100, DelayModel("constant", mean=1.0, service=0.5), n_fetch=4, n_push=4)
    assert local.virtual_time == pytest.approx(100 * 1.5 - 0.5, rel=1e-6)
    applied = sched(1, 100, DelayModel("constant", mean=1.0, apply_seconds=0.5), n_fetch=4, n_push=4)
    assert applied.virtual_time == pytest.approx(100 + 24 * 0.5, rel=1e-6)


def test_calibration_recovers_known_step_times_within_5_percent(digits_task):
    rng = np.random.default_rng(0)
    means, steps = [0.05, 0.1], 70  # worker 1 is 2x slower; long enough that thread wake-ups do not matter
    times = [m * np.exp(0.1 * rng.standard_normal(steps + 8) - 0.005) for m in means]
    params = digits_task[0].init(jax.random.key(0))
    co = sleeping_coordinator(digits_task, params, times)
    _, trace, stats = co.run(params, co.spec.machine(75))
    cal = calibrate(stats, 2)
    done = {w: int((trace.worker[trace.step >= 0] == w).sum()) for w in (0, 1)}
    truth = [float(np.mean(times[w][2 : done[w]])) for w in (0, 1)]  # the samples it saw, warm-up skipped
    fitted = [cal.delay.mean * s for s in cal.delay.speeds]
    np.testing.assert_allclose(fitted, truth, rtol=0.05)
    assert cal.delay.speeds[1] / cal.delay.speeds[0] == pytest.approx(2.0, rel=0.05)
    assert cal.delay.kind == "lognormal" and cal.delay.spread == pytest.approx(0.1, rel=0.3)
    assert 0 < cal.delay.service < 0.02  # the coordinator's own time per arrival is small next to 50 ms


def test_calibration_files_round_trip_and_bad_fields_are_named(tmp_path):
    cal = Calibration(DelayModel("lognormal", 0.01, 0.2, (1.0, 3.0), latency=0.05, service=0.001), {"note": "x"})
    cal.save(str(tmp_path / "c.json"))
    back = Calibration.load(str(tmp_path / "c.json"))
    assert back == cal and back.for_workers(8).speed(1) == 3.0 and back.for_workers(8).speed(5) == 1.0
    raw = json.loads((tmp_path / "c.json").read_text())
    raw["delay"]["speed"] = 2
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="unknown delay field 'speed'"):
        Calibration.load(str(tmp_path / "bad.json"))
    raw["delay"].pop("speed")
    raw["delay"]["latency"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="bad.json': delay.latency=-1 is not allowed"):
        Calibration.load(str(tmp_path / "bad.json"))


@pytest.mark.slow
def test_prediction_is_deterministic_for_a_calibration_and_seed(tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.predict.predict import predict

    c = get_config()
    c.model, c.steps, c.momentum, c.rule, c.log_every, c.warm_start_steps = "mlp", 200, 0.5, "staleness_lr", 50, 0
    cal = Calibration(DelayModel("lognormal", 0.002, 0.15, (1.0, 1.5), latency=1e-4, service=5e-4))
    a = predict(c, cal, [1, 4], 0.9, str(tmp_path / "a"), eval_every=50)
    b = predict(c, cal, [1, 4], 0.9, str(tmp_path / "b"), eval_every=50)
    assert a == b
    assert a[0]["staleness_mean"] == 0 and a[1]["staleness_mean"] == pytest.approx(3.0, abs=0.3)
    assert a[1]["gradients_per_second"] > a[0]["gradients_per_second"]


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--workers=0,2", "--workers entry '0' is not allowed; use comma-separated integers >= 1"),
        ("--target=1.5", "--target=1.5 is not allowed"),
        ("--calibrate_steps=0", "--calibrate_steps=0 is not allowed; use an integer >= 1"),
        ("--eval_every=0", "--eval_every=0 is not allowed; use an integer >= 1"),
        ("--calibration=/nonexistent.json", "calibration '/nonexistent.json' cannot be read"),
    ],
)
def test_predict_cli_bad_input_is_one_line(tmp_path, flag, message):
    err = one_line_error(run_cli("predict", [flag, f"--workdir={tmp_path}"], tmp_path))
    assert err.startswith("asgdjax-predict: error: ") and message in err


def test_a_warm_starts_arrivals_fit_solo_and_only_the_rest_fit_the_shared_clock(tmp_path):
    """The first solo_steps arrivals (worker 0 alone) fit `solo`, their mean cycle (step + notice +
    service) over the shared one; the shared clock comes from the arrivals after them only."""
    from asgdjax.predict.calibration import fit

    n_solo, n_shared = 100, 400
    steps = [(0, 0.001)] * n_solo + [(i % 2, 0.002) for i in range(n_shared)]
    notice = [0.0002] * n_solo + [0.001] * n_shared
    service = [0.0008] * n_solo + [0.002] * n_shared
    cal = fit(steps, notice, service, 2, solo_steps=n_solo)
    assert cal.delay.mean == pytest.approx(0.002) and cal.delay.speeds == pytest.approx((1.0, 1.0))
    assert cal.delay.latency == pytest.approx(0.001) and cal.delay.service == pytest.approx(0.002)
    assert cal.delay.solo == pytest.approx(0.002 / 0.005)  # a 2 ms solo cycle against a 5 ms shared one
    assert fit(steps, notice, service, 2).delay.solo == 1.0  # no warm start named: no solo
    old = cal.to_json()  # files written before `solo` existed still load, as solo 1
    del old["delay"]["solo"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Calibration.load(str(tmp_path / "old.json")).delay.solo == 1.0


def test_a_prediction_on_another_clock_is_refused_naming_the_nested_key(tmp_path):
    """asgdjax-predict checks every workers_K folder before it writes calibration.json, and the refusal names
    the one delay field that differs (it printed two whole delay dicts)."""
    from asgdjax.configs.default import get_config
    from asgdjax.errors import ConfigError
    from asgdjax.predict.predict import check_folders, sim_config

    c = get_config()
    cal = Calibration(DelayModel("lognormal", 0.002, 0.15, (1.0, 1.5), latency=1e-4, service=5e-4))
    held = tmp_path / "workers_2"
    held.mkdir()
    (held / "config.json").write_text(json.dumps(sim_config(c, cal, 2, 50).to_dict()))
    (held / "summary.json").write_text("{}")
    check_folders(c, cal, [1, 2], str(tmp_path), 50)  # the same prediction: resumable
    other = Calibration(DelayModel("lognormal", 0.004, 0.15, (1.0, 1.5), latency=1e-4, service=5e-4))
    with pytest.raises(ConfigError, match=r"workers_2' holds a run with delay.mean=0.002 \(this config: 0.004\)"):
        check_folders(c, other, [1, 2], str(tmp_path), 50)


def test_a_clock_measured_on_another_model_dataset_or_batch_is_noted():
    """--calibrate_from / --calibration of a run with another batch size (or model, dataset) took its step
    times silently; the tools now print a note naming each setting that differs."""
    from asgdjax.configs.default import get_config
    from asgdjax.predict.clock import mismatch

    c = get_config()
    delay = DelayModel("lognormal", 0.002, 0.15, (1.0, 1.5))
    same = {"model": c.model, "dataset": c.dataset, "batch_size": c.batch_size, "workdir": "/x"}
    assert mismatch(c, Calibration(delay, same)) is None
    assert mismatch(c, Calibration(delay, {"name": "h100"})) is None  # a hardware profile records no model
    note = mismatch(c, Calibration(delay, {**same, "batch_size": c.batch_size * 2}))
    assert f"batch_size {c.batch_size * 2} (this config: {c.batch_size})" in note and "model" not in note
