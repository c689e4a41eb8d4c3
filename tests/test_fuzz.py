"""The fuzz harness: seeded random invalid configs and corrupted files (truncations, bit flips, wrong shapes,
wrong types) fed to the three console scripts. Whatever the input: exit 0, 2 or 3, never a traceback, and
the workdir either untouched or a valid run. A few dozen cases in the fast tier, a few hundred in the slow.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgdjax.configs.base import base_config
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.delays import DelayModel
from asgdjax.predict import Calibration
from asgdjax.sim import make_schedule

FAST, SLOW = 5, 50  # examples per family in each tier (six families)
BASE = {
    "model": "mlp",
    "steps": "4",
    "log_every": "2",
    "eval_every": "4",
    "checkpoint_every": "4",
    "warm_start_steps": "0",
}
BAD_VALUES = ["-1", "0", "1e30", "nan", "inf", "-inf", "abc", "", "1.5", "-3", "True", "[1, 2]", "2", "sim", "async"]
STRAY = ["--bogus=1", "stray", "--workdir", "--config.", "--=", "-x", "--progress=maybe", "--config=", "--help=3"]
NEVER = {"backend", "ray_address", "cpu_devices", "worker_timeout"}  # would start Ray or split the CPU mid-suite


def config_keys() -> list[str]:
    flat = []
    for k, v in base_config().items():
        if k in NEVER:
            continue
        flat += [f"{k}.{kk}" for kk in v] if hasattr(v, "items") else [k]
    return sorted(flat)


@pytest.fixture(scope="module")
def driver(tmp_path_factory, tfds_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": tfds_dir, "XLA_FLAGS": ""}
    here = os.path.dirname(__file__)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, "fuzz_driver.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(tmp_path_factory.mktemp("fuzz")),
    )
    assert json.loads(proc.stdout.readline())["ready"]

    def run(script, args, cwd, timeout=120):
        proc.stdin.write(json.dumps({"script": script, "args": args, "cwd": str(cwd), "timeout": timeout}) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield run
    proc.stdin.close()
    proc.wait(timeout=60)


def check(out, workdir=None, before=None):
    """The harness's invariant for one case."""
    assert out["code"] in (0, 2, 3), (out["code"], out["stderr"][-3000:])
    assert "Traceback" not in out["stderr"], out["stderr"][-3000:]
    if workdir is None:
        return
    if out["code"] == 0:
        json.loads((workdir / "summary.json").read_text())  # a valid, finished run
    elif out["code"] == 2:
        assert snapshot(workdir) == before, "a refused start changed the workdir"
    else:  # diverged: the metrics say so and whatever checkpoint is there is complete
        assert any('"diverged": true' in x for x in (workdir / "metrics.jsonl").read_text().splitlines())


def snapshot(path):
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())


def train_args(overrides: dict, workdir="w") -> list[str]:
    args = {**BASE, **overrides}
    return [f"--config.{k}={v}" for k, v in args.items()] + [f"--workdir={workdir}", "--noprogress"]


def corrupt(data: bytes, how: str, at: float) -> bytes:
    i = int(at * max(len(data) - 1, 1))
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    return data[:i] + b"\0" * min(64, len(data) - i) + data[i + 64 :]


# ---------------------------------------------------------------------------------------------- families
overrides = st.dictionaries(st.sampled_from(config_keys()), st.sampled_from(BAD_VALUES), min_size=1, max_size=2)
damage = st.tuples(st.sampled_from(["truncate", "flip", "zero"]), st.floats(0.0, 1.0))


def bad_config_case(driver, tmp_path, mutation):
    out = driver("train", train_args(mutation), tmp_path)
    check(out, tmp_path / "w", None)


def corrupted_trace_case(driver, tmp_path, how, at, edit):
    spec = ProtocolSpec(num_workers=2)
    trace = make_schedule(jax.random.key(0), spec, num_steps=4, delays=DelayModel("exponential"))
    path = tmp_path / "trace.npz"
    trace.save(str(path))
    if edit == "bytes":
        path.write_bytes(corrupt(path.read_bytes(), how, at))
    else:  # a well-formed npz with one column of the wrong shape or type
        with np.load(path) as d:
            cols = {k: d[k] for k in d.files}
        cols[edit] = np.asarray(["x"] * 3) if how == "flip" else cols[edit][:-1]
        np.savez(path, **cols)
    args = train_args({"mode": "sim", "num_workers": "2", "trace": str(path)})
    check(driver("train", args, tmp_path), tmp_path / "w", None)


def corrupted_npz_case(driver, tmp_path, how, at, edit):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 20),
        "x_test": rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10),
    }
    if edit == "shape":
        arrays["x_train"] = arrays["x_train"][..., 0]
    elif edit == "labels":
        arrays["y_test"] = arrays["y_test"] + 10
    elif edit == "dtype":
        arrays["x_test"] = arrays["x_test"].astype(np.float32)
    elif edit == "missing":
        arrays.pop("y_train")
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    if edit == "bytes":
        path.write_bytes(corrupt(path.read_bytes(), how, at))
    out = driver("prepare", ["--dataset=mnist", f"--npz={path}", f"--data_dir={tmp_path / 'tfds'}"], tmp_path)
    check(out)


def corrupted_calibration_case(driver, tmp_path, how, at, edit):
    path = tmp_path / "cal.json"
    Calibration(DelayModel("lognormal", 0.01, 0.2, (1.0, 2.0))).save(str(path))
    raw = json.loads(path.read_text())
    if edit == "bytes":
        path.write_bytes(corrupt(path.read_bytes(), how, at))
    else:
        field = sorted(raw["delay"])[int(at * (len(raw["delay"]) - 1))]
        if edit == "missing":
            raw["delay"].pop(field)
        else:
            raw["delay"][field] = {"type": "abc", "none": None, "list": [1, "x"]}[edit]
        path.write_text(json.dumps(raw))
    args = [f"--calibration={path}", "--workers=1,2", "--target=0.5", f"--workdir={tmp_path / 'p'}", "--noprogress"]
    args += [f"--config.{k}={v}" for k, v in BASE.items()]
    check(driver("predict", args, tmp_path, timeout=240))


def corrupted_config_file_case(driver, tmp_path, how, at):
    src = pathlib.Path(__file__).parent.parent / "asgdjax" / "configs" / "default.py"
    path = tmp_path / "cfg.py"
    path.write_bytes(corrupt(src.read_bytes(), how, at))
    out = driver("train", [f"--config={path}", *train_args({})], tmp_path)
    check(out, tmp_path / "w", None)


def stray_flags_case(driver, tmp_path, script, extra):
    base = {"train": train_args({}), "prepare": ["--dataset=digits"], "predict": ["--workers=1", "--noprogress"]}
    check(driver(script, [*base[script], *extra], tmp_path))


def _settings(n):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _tier(n, slow):
    """The five families as tests with `n` examples each."""
    mark = pytest.mark.slow if slow else (lambda f: f)

    @mark
    @_settings(n)
    @given(mutation=overrides)
    def t_config(driver, tmp_path_factory, mutation):
        bad_config_case(driver, tmp_path_factory.mktemp("c"), mutation)

    @mark
    @_settings(n)
    @given(d=damage, edit=st.sampled_from(["bytes", "bytes", "worker", "step", "fetch", "t_arrive"]))
    def t_trace(driver, tmp_path_factory, d, edit):
        corrupted_trace_case(driver, tmp_path_factory.mktemp("t"), *d, edit)

    @mark
    @_settings(n)
    @given(d=damage, edit=st.sampled_from(["bytes", "bytes", "shape", "labels", "dtype", "missing"]))
    def t_npz(driver, tmp_path_factory, d, edit):
        corrupted_npz_case(driver, tmp_path_factory.mktemp("n"), *d, edit)

    @mark
    @_settings(max(2, n // 2))  # each valid one runs two tiny simulated trainings
    @given(d=damage, edit=st.sampled_from(["bytes", "missing", "type", "none", "list"]))
    def t_calibration(driver, tmp_path_factory, d, edit):
        corrupted_calibration_case(driver, tmp_path_factory.mktemp("k"), *d, edit)

    @mark
    @_settings(n)
    @given(d=damage)
    def t_config_file(driver, tmp_path_factory, d):
        corrupted_config_file_case(driver, tmp_path_factory.mktemp("f"), *d)

    @mark
    @_settings(n)
    @given(
        script=st.sampled_from(["train", "prepare", "predict"]),
        extra=st.lists(st.sampled_from(STRAY), min_size=1, max_size=2),
    )
    def t_flags(driver, tmp_path_factory, script, extra):
        stray_flags_case(driver, tmp_path_factory.mktemp("s"), script, extra)

    return t_config, t_trace, t_npz, t_calibration, t_config_file, t_flags


(
    test_fuzz_config_values,
    test_fuzz_trace_files,
    test_fuzz_npz_files,
    test_fuzz_calibration_files,
    test_fuzz_config_files,
    test_fuzz_stray_flags,
) = _tier(FAST, slow=False)
(
    test_fuzz_config_values_many,
    test_fuzz_trace_files_many,
    test_fuzz_npz_files_many,
    test_fuzz_calibration_files_many,
    test_fuzz_config_files_many,
    test_fuzz_stray_flags_many,
) = _tier(SLOW, slow=True)
