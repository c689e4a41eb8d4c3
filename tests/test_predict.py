"""The predictor: the virtual clock's server queue, calibration recovering known step times from a real
coordinator run, calibration files, deterministic predictions, and the CLI's one-line errors."""

import concurrent.futures as cf
import json
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import optax
import pytest

from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.predict import Calibration, calibrate
from asgdjax.rules import plain
from asgdjax.runtime import Coordinator
from asgdjax.server import Server
from asgdjax.sim import make_schedule, make_streams
from asgdjax.sim.protocol import Protocol


def test_a_busy_server_caps_throughput_in_the_virtual_clock():
    fast = DelayModel("constant", mean=1.0)
    free = make_schedule(jax.random.key(0), 8, 400, fast)
    assert free.num_gradients / free.virtual_time == pytest.approx(8.0, rel=0.02)
    queued = make_schedule(jax.random.key(0), 8, 400, DelayModel("constant", mean=1.0, service=0.5))
    assert queued.num_gradients / queued.virtual_time == pytest.approx(2.0, rel=0.02)  # 1 / service
    one = make_schedule(jax.random.key(0), 1, 100, DelayModel("constant", mean=1.0, latency=0.25, service=0.25))
    assert one.virtual_time == pytest.approx(100 * 1.5 - 0.5, rel=1e-6)  # step + latency + service per step
    # Downpour's local steps do not touch the server: only every 4th arrival (push + fetch) waits for it.
    local = make_schedule(jax.random.key(0), 1, 100, DelayModel("constant", mean=1.0, service=0.5), n_fetch=4, n_push=4)
    assert local.virtual_time == pytest.approx(100 + 24 * 0.5, rel=1e-6)


class SleepWorkers:
    """A worker pool whose steps take known times (timers), so calibration has a ground truth."""

    def __init__(self, params, times):
        self.K, self.times, self.zeros = len(times), times, jax.tree.map(np.zeros_like, params)
        self.devices = [f"sleep:{w}" for w in range(self.K)]

    def start(self, params, version):
        pass

    def submit(self, w, s):
        f = cf.Future()
        threading.Timer(self.times[w][s], lambda: f.set_result(time.perf_counter())).start()
        return f

    def take(self, w, s):
        return self.zeros

    def discard(self, w, s):
        pass

    def fetch(self, w, params, version):
        pass

    def close(self):
        pass


def test_calibration_recovers_known_step_times_within_5_percent(digits_task, digits):
    task, data = digits_task
    rng = np.random.default_rng(0)
    means, steps = [0.05, 0.1], 70  # worker 1 is 2x slower; long enough that thread wake-ups do not matter
    times = [m * np.exp(0.1 * rng.standard_normal(steps + 8) - 0.005) for m in means]
    params = task.model.init(jax.random.key(0))
    co = Coordinator(
        task,
        lambda h: Server(plain(), optax.sgd(h["learning_rate"])),
        {"learning_rate": 0.01},
        [None, None],
        jax.tree.map(np.asarray, data),
        make_streams(digits.num_train, 8, 0, 2),
        jax.random.key(1),
        backend=SleepWorkers(params, times),
    )
    _, trace, stats = co.run(params, Protocol(2, 75))
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


def test_prediction_is_deterministic_for_a_calibration_and_seed(tmp_path):
    from asgdjax.configs.default import get_config
    from asgdjax.predict.predict import predict

    c = get_config()
    c.model, c.steps, c.momentum, c.rule, c.log_every = "mlp", 200, 0.5, "staleness_lr", 50
    cal = Calibration(DelayModel("lognormal", 0.002, 0.15, (1.0, 1.5), latency=1e-4, service=5e-4))
    a = predict(c, cal, [1, 4], 0.9, str(tmp_path / "a"), eval_every=50)
    b = predict(c, cal, [1, 4], 0.9, str(tmp_path / "b"), eval_every=50)
    assert a == b
    assert a[0]["staleness_mean"] == 0 and a[1]["staleness_mean"] == pytest.approx(3.0, abs=0.3)
    assert a[1]["gradients_per_second"] > a[0]["gradients_per_second"]


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--workers=0,2", "--workers='0,2' is not allowed"),
        ("--target=1.5", "--target=1.5 is not allowed"),
        ("--calibration=/nonexistent.json", "calibration '/nonexistent.json' cannot be read"),
    ],
)
def test_predict_cli_bad_input_is_one_line(tmp_path, flag, message):
    cmd = [sys.executable, "-c", "from asgdjax.predict_main import entry; entry()", flag, f"--workdir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("asgdjax-predict: error: ") and message in out.stderr
