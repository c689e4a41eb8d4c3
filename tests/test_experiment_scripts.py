"""The experiment scripts' bad input: one line, exit 2, before any work and with nothing written."""

import os
import subprocess
import sys

import pytest
from helpers import one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    (
        "staleness_literature.py",
        ["--study=zhang,zang"],
        "--study='zhang,zang' names 'zang'; allowed: zhang, zheng, dai",
    ),
    ("staleness_literature.py", ["--quick", "stray"], "unexpected arguments ['stray']"),
    ("predictor_validation.py", ["--config.stepz=5"], "unknown config key 'stepz' (did you mean 'steps'?)"),
    ("predictor_validation.py", ["--config=nope.py"], "--config='nope.py' does not exist"),
    ("predictor_validation.py", ["--tag="], "--tag='' is not allowed"),
    ("predictor_validation.py", ["--steps=0"], "--steps=0 is not allowed; use an integer >= 1"),
    ("plan_validation.py", ["--config.stepz=3"], "unknown config key 'stepz'"),
    ("plan_validation.py", ["--eval_every=0"], "--eval_every=0 is not allowed; use an integer >= 1"),
    ("plan_validation.py", ["--resummarize"], "validation.json' is missing; run the validation without"),
    ("paper_gpu_asgd.py", ["--config.steps=20"], "--config.steps overrides a config file, and none is named"),
    ("paper_gpu_asgd.py", ["--quick", "--clients=1"], "--clients='1' needs a count above 1"),
    ("paper_gpu_asgd.py", ["--quick", "--clients=2,4", "--cold=8"], "--cold='8' names [8], not among"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, message", CASES)
def test_an_experiment_script_refuses_bad_input_in_one_line(tmp_path, script, args, message):
    cmd = [sys.executable, os.path.join(ROOT, "experiments", script), *args, f"--outdir={tmp_path / 'out'}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert message in one_line_error(out)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_experiment_scripts_help_exits_0():
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "staleness_literature.py"), "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "--study" in out.stdout and "Traceback" not in out.stderr
