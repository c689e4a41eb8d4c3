"""Every input class the tools read, refused in one line before anything is written (BUILD.md's input table
points here), and the workdir rules: a lock, a refused start that leaves it untouched, a complete run left
alone, no duplicate metrics after a resume, resource exhaustion in one line."""

import json
import os
import shutil

import numpy as np
import pytest
from helpers import one_line_error, popen_cli, run_cli, wait_for_checkpoint

from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.predict import Calibration

FAST = ["--config.model=mlp", "--noprogress"]


def files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else None


# --------------------------------------------------------------------------------------------- workdirs
def test_a_batch_larger_than_a_shard_leaves_the_workdir_untouched_and_the_fix_runs(tmp_path):
    err = one_line_error(run_cli("train", ["--config.batch_size=5000", "--workdir=run", *FAST], tmp_path))
    assert "batch_size=5000 exceeds a worker's shard of 1438 examples" in err
    assert not (tmp_path / "run").exists()
    ok = run_cli("train", ["--config.steps=20", "--workdir=run", *FAST], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_a_start_that_crashed_before_any_checkpoint_does_not_block_the_corrected_command(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"batch_size": 5000}))  # what an old crashed start left
    ok = run_cli("train", ["--config.steps=20", "--workdir=run", *FAST], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_a_workdir_that_is_a_file_or_not_writable_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert "is a file" in one_line_error(run_cli("train", ["--workdir=afile", *FAST], tmp_path))
    locked = tmp_path / "ro"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        err = one_line_error(run_cli("train", [f"--workdir={locked}/run", *FAST], tmp_path))
        assert "cannot be written" in err
    finally:
        os.chmod(locked, 0o700)


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_naming_the_holder(tmp_path):
    args = ["--config.steps=3000", "--config.checkpoint_every=100", "--workdir=run", *FAST]
    proc = popen_cli("train", args, tmp_path)
    try:
        wait_for_checkpoint(proc, str(tmp_path / "run"), 100)
        err = one_line_error(run_cli("train", args, tmp_path))
        assert f"is in use by process {proc.pid}" in err
    finally:
        proc.kill()
        proc.wait()
    # The holder died: its lock file remains, but the lock went with it (flock), so the next run resumes.
    assert (tmp_path / "run" / ".lock").exists()
    out = run_cli("train", [*args[:-3], "--config.steps=300", "--workdir=run", *FAST], tmp_path)
    assert out.returncode == 0 or "holds a run" not in out.stderr, out.stderr[-2000:]


def test_rerunning_a_finished_run_says_it_is_complete_and_changes_nothing(tmp_path):
    args = ["--config.steps=20", "--workdir=run", *FAST]
    assert run_cli("train", args, tmp_path).returncode == 0
    before = {p: (tmp_path / "run" / p).read_bytes() for p in ("metrics.jsonl", "summary.json", "config.json")}
    again = run_cli("train", args, tmp_path)
    assert again.returncode == 0 and "complete at 20 steps; nothing was changed" in again.stderr
    assert {p: (tmp_path / "run" / p).read_bytes() for p in before} == before


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "sim"])
def test_metrics_have_no_duplicate_steps_after_a_resume(tmp_path, mode):
    args = [f"--config.mode={mode}", "--config.num_workers=2", "--config.log_every=10", "--workdir=run", *FAST]
    assert run_cli("train", [*args, "--config.steps=40", "--config.checkpoint_every=20"], tmp_path).returncode == 0
    # Lose the last checkpoint, as a run killed between checkpoints would: steps 21..40 get recomputed.
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "40")
    os.remove(tmp_path / "run" / "summary.json")
    out = run_cli("train", [*args, "--config.steps=60", "--config.checkpoint_every=20"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    logged = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [
        s
        for s, x in zip(logged, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines(), strict=True)
        if "train_loss" in x
    ]
    assert losses == sorted(set(losses)) == [10, 20, 30, 40, 50, 60]


def test_running_out_of_disk_is_one_line_naming_what_was_kept(tmp_path):
    script = (
        "import errno\n"
        "import asgdjax.train.outputs as o\n"
        "orig, n = o.MetricsWriter.write, [0]\n"
        "def write(self, step, **kw):\n"
        "    n[0] += 1\n"
        "    if n[0] > 3: raise OSError(errno.ENOSPC, 'No space left on device', 'metrics.jsonl')\n"
        "    return orig(self, step, **kw)\n"
        "o.MetricsWriter.write = write\n"
        "from asgdjax.main import run; run()\n"
    )
    import subprocess
    import sys

    cmd = [sys.executable, "-c", script, "--workdir=run", "--config.steps=100", "--config.log_every=10"]
    cmd += ["--config.checkpoint_every=20", *FAST]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    err = one_line_error(out)
    assert "the disk is full (writing metrics.jsonl)" in err and "the last checkpoint (step 20) is kept" in err


# ------------------------------------------------------------------------------------------ input files
@pytest.mark.parametrize(
    "content,message",
    [
        (None, "does not exist"),
        ("x =", "is not valid Python (line 1"),
        ("y = 1\n", "defines no get_config()"),
        ("def get_config():\n    raise RuntimeError('boom')\n", "cannot be loaded (RuntimeError: boom)"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "cfg.py"
    if content is not None:
        path.write_text(content)
    assert message in one_line_error(run_cli("train", [f"--config={path}", "--workdir=run"], tmp_path))
    assert not (tmp_path / "run").exists()


def test_a_config_variant_the_file_lacks_is_one_line(tmp_path):
    path = os.path.join(os.path.dirname(__file__), "..", "asgdjax", "configs", "paine2013.py:nope")
    message = "cannot be loaded (ValueError: paine2013 variant 'nope'; allowed: cifar10, mnist, imagenet)"
    assert message in one_line_error(run_cli("train", [f"--config={path}", "--workdir=run"], tmp_path))
    assert not (tmp_path / "run").exists()


def _npz(path, **change):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 20),
        "x_test": rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10),
    }
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "change,message",
    [
        ({"x_train": np.zeros((20, 28, 28), np.uint8)}, "x_train has shape (20, 28, 28); expected (N, 28, 28, 1)"),
        ({"y_test": np.full(10, 12)}, "y_test holds label 12; allowed: 0..9"),
        ({"x_test": np.zeros((10, 28, 28, 1), np.float32)}, "x_test has dtype float32; expected uint8"),
        ({"y_train": None}, "has no array 'y_train'"),
        ({"y_train": np.zeros(19, int)}, "y_train has shape (19,); expected (20,)"),
        ({"y_train": np.zeros(20, np.float32)}, "expected integer labels"),
    ],
)
def test_prepare_checks_every_array_of_the_npz(tmp_path, change, message):
    path = _npz(tmp_path / "d.npz", **change)
    out = run_cli("prepare", ["--dataset=mnist", f"--npz={path}", f"--data_dir={tmp_path / 't'}"], tmp_path)
    assert message in one_line_error(out)


def test_a_truncated_npz_is_one_line(tmp_path):
    path = _npz(tmp_path / "d.npz")
    path.write_bytes(path.read_bytes()[:300])
    out = run_cli("prepare", ["--dataset=mnist", f"--npz={path}", f"--data_dir={tmp_path / 't'}"], tmp_path)
    assert "cannot be read as .npz (BadZipFile)" in one_line_error(out)


def test_a_truncated_or_inconsistent_trace_is_one_line(tmp_path):
    import jax

    from asgdjax.core.protocol import ProtocolSpec
    from asgdjax.sim import make_schedule

    trace = make_schedule(jax.random.key(0), ProtocolSpec(num_workers=2), num_steps=10)
    trace.save(str(tmp_path / "t.npz"))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    args = ["--config.mode=sim", "--config.num_workers=2", "--config.steps=10", "--workdir=run", *FAST]
    err = one_line_error(run_cli("train", [*args, f"--config.trace={tmp_path / 'cut.npz'}"], tmp_path))
    assert "cannot be read" in err and not (tmp_path / "run").exists()
    with np.load(tmp_path / "t.npz") as d:
        cols = {k: d[k] for k in d.files}
    cols["worker"] = cols["worker"] + 5
    np.savez(tmp_path / "bad.npz", **cols)
    err = one_line_error(run_cli("train", [*args, f"--config.trace={tmp_path / 'bad.npz'}"], tmp_path))
    assert "names worker" in err and "allowed: 0..1" in err
    cols["worker"] = cols["worker"] - 5
    cols["step"][1] = cols["step"][0]
    cols["worker"][1] = cols["worker"][0]
    np.savez(tmp_path / "dup.npz", **cols)
    err = one_line_error(run_cli("train", [*args, f"--config.trace={tmp_path / 'dup.npz'}"], tmp_path))
    assert "repeats a (worker, step) key" in err
    (tmp_path / "text.npz").write_text("not a trace")
    with pytest.raises(ConfigError, match=r"cannot be read \(ValueError: not an .npz archive\); expected the trace"):
        Trace.load(str(tmp_path / "text.npz"))


def test_calibration_files_need_every_field_typed(tmp_path):
    path = tmp_path / "c.json"
    Calibration(DelayModel("lognormal", 0.01, 0.2, (1.0, 2.0))).save(str(path))
    raw = json.loads(path.read_text())
    del raw["delay"]["service"]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="has no delay field 'service'"):
        Calibration.load(str(path))
    raw["delay"]["service"] = "fast"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="delay.service='fast' is not a number"):
        Calibration.load(str(path))
    raw["delay"]["service"], raw["delay"]["speeds"] = 0.0, [1, "x"]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="is not a list of numbers"):
        Calibration.load(str(path))
    path.write_text("{")
    with pytest.raises(ConfigError, match="cannot be read"):
        Calibration.load(str(path))


def test_a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate(tmp_path):
    args = ["--config.mode=sim", "--config.num_workers=5000000", "--config.sampler=replacement", "--workdir=run"]
    err = one_line_error(run_cli("train", [*args, "--noprogress"], tmp_path))
    assert "needs about" in err and "worker copies" in err and "available host memory" in err
    assert "GiB a run may take (90% of the " in err  # the figure compared is the one shown
    assert not (tmp_path / "run").exists()


def test_raising_steps_of_a_cosine_run_is_noted(tmp_path):
    """A cosine schedule's length follows steps: resuming a decayed run with more steps jumps the learning
    rate back up mid-curve, which a fresh run of the new steps would not; asgdjax-train says so."""
    from asgdjax.configs.default import get_config
    from asgdjax.train.workdir import Workdir

    resume_notes = lambda c, path: Workdir(path).resume_notes(c.to_dict())  # noqa: E731

    c = get_config()
    c.lr_schedule, c.steps = "cosine", 100
    (tmp_path / "config.json").write_text(json.dumps(c.to_dict()))
    (tmp_path / "summary.json").write_text("{}")
    assert resume_notes(c, str(tmp_path)) == []  # the same steps: a plain resume
    c.steps = 300
    (note,) = resume_notes(c, str(tmp_path))
    assert "decayed over steps=100" in note and "cosine over steps=300" in note
    c.lr_schedule = "constant"
    assert resume_notes(c, str(tmp_path)) == []
    assert resume_notes(c, str(tmp_path / "missing")) == []


def test_steps_below_the_runs_checkpoint_are_refused(tmp_path):
    """A run trained to 120 steps rerun with steps=50 resumed from 120 and reported that model as a 50-step
    run (examples/s negative); now one line, in the dry run too, and the folder is untouched."""
    from asgdjax.train.workdir import Workdir

    (tmp_path / "checkpoints" / "120").mkdir(parents=True)
    (tmp_path / "checkpoints" / "60").mkdir()
    wd = Workdir(str(tmp_path))
    wd.check_not_past(120)
    wd.check_not_past(200)
    with pytest.raises(ConfigError, match="trained to 120 steps, past steps=50; give --config.steps >= 120"):
        wd.check_not_past(50)
    Workdir(str(tmp_path / "new")).check_not_past(1)


def test_a_dry_run_with_a_new_data_dir_writes_nothing_there(tmp_path):
    """--dry_run promises to write nothing; it prepared the embedded digits into a new data_dir."""
    from asgdjax.configs.default import get_config
    from asgdjax.train import check

    c = get_config()
    c.data_dir = str(tmp_path / "data")
    said = check(c, str(tmp_path / "run"))
    assert "1438 training examples" in said
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()
