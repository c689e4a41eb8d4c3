"""The paper's own setting end to end on a miniature ILSVRC-2012: prepared through asgdjax-prepare from the
official archive layout, trained through asgdjax-train with the AlexNet config (streamed from disk, host
crops), and an asynchronous run replayed exactly by the simulator. Full tier: AlexNet on a CPU is slow."""

import json

import pytest
from helpers import assert_trees_close, checkpoint_state, run_cli

from asgdjax.data.imagenet import make_miniature

pytestmark = pytest.mark.slow
SMALL = ["--config.batch_size=4", "--config.log_every=2", "--config.eval_examples=8", "--noprogress"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc")
    make_miniature(str(root / "manual"), classes=3, train_per_class=12, val=8)
    env = {"TFDS_DATA_DIR": str(root / "tfds")}
    out = run_cli("prepare", ["--dataset=imagenet2012", f"--manual_dir={root / 'manual'}"], root, env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "imagenet2012: 36 train / 8 test examples" in out.stdout
    return root, env


def test_the_alexnet_imagenet_config_trains_from_the_miniature(prepared):
    root, env = prepared
    args = ["--config=asgdjax/configs/alexnet_imagenet.py", "--config.steps=4", "--config.eval_every=4"]
    args = [a.replace("asgdjax/", f"{_repo()}/asgdjax/") for a in args]
    out = run_cli("train", [*args, *SMALL, "--config.checkpoint_every=4", "--workdir=sync"], root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads((root / "sync" / "summary.json").read_text())
    assert s["dataset"] == "imagenet2012" and s["parameters"] == 61_100_840 and s["gradients"] == 4


def test_an_async_imagenet_run_replays_exactly(prepared):
    root, env = prepared
    base = [f"--config={_repo()}/asgdjax/configs/alexnet_imagenet.py", "--config.num_workers=2", "--config.steps=6"]
    base += ["--config.eval_every=6", "--config.checkpoint_every=6", "--config.warm_start_steps=0", *SMALL]
    out = run_cli("train", [*base, "--config.mode=async", "--workdir=async"], root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    trace = root / "async" / "trace.npz"
    out = run_cli("train", [*base, "--config.mode=sim", f"--config.trace={trace}", "--workdir=replay"], root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    real = checkpoint_state(str(root / "async"))["server"]["params"]
    replayed = checkpoint_state(str(root / "replay"))["sim"]["server"]["params"]
    assert_trees_close(real, replayed, atol=1e-5)


def test_the_paper_study_runs_on_the_miniature(prepared):
    """experiments/paper_gpu_asgd.py in the paper's own setting (one-GPU AlexNet on ILSVRC-2012, the 2013
    hardware profile), shortened through --config overrides: one client against two with n_sync 1 and 2,
    equal virtual time, JSON with the command and profile, and the plot."""
    import os
    import subprocess
    import sys

    root, env = prepared
    script = os.path.join(_repo(), "experiments", "paper_gpu_asgd.py")
    args = [f"--config={_repo()}/asgdjax/configs/paine2013.py:imagenet", "--config.steps=6"]
    args += ["--config.warm_start_steps=2", "--config.eval_every=3", *SMALL[:-1]]
    args += ["--clients=1,2", "--n_sync=1,2", "--cold=1", f"--outdir={root / 'study'}"]
    e = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=root, env=e, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = root / "study" / "imagenet_paine2013_gigabit"
    result = json.loads((folder / "results.json").read_text())
    assert result["setting"].startswith("imagenet: imagenet2012, alexnet, batch 4, 6 gradients")
    assert result["profile"]["delay"]["payload_bytes"] == 244_403_360
    assert [(r["workers"], r["n_sync"]) for r in result["runs"]] == [(1, 1), (2, 1), (2, 2)]
    assert result["runs"][0]["gradients"] == 6 and all(r["curve"] for r in result["runs"])
    assert (folder / "paper_gpu_asgd.png").stat().st_size > 0
    # Extending the committed study (its run folders are not committed): only the new point trains.
    import shutil

    shutil.rmtree(folder / "runs")
    wider = [a if a != "--n_sync=1,2" else "--n_sync=1,2,3" for a in args]
    out = subprocess.run([sys.executable, script, *wider], capture_output=True, text=True, cwd=root, env=e, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 run(s) read from" in out.stdout and "1 to train" in out.stdout, out.stdout
    extended = json.loads((folder / "results.json").read_text())
    assert extended["runs"][:3] == result["runs"] and extended["runs"][3]["n_sync"] == 3
    assert extended["earlier_commands"] == [result["command"]]
    assert sorted(p.name for p in (folder / "runs").iterdir()) == [extended["runs"][3]["name"]]
    # A command covering a corner of the study trains nothing new and keeps the rest of the file.
    corner = [a if a != "--n_sync=1,2" else "--n_sync=3" for a in args]
    out = subprocess.run(
        [sys.executable, script, *corner], capture_output=True, text=True, cwd=root, env=e, timeout=900
    )
    assert out.returncode == 0 and "2 earlier run(s) outside this command's grid kept" in out.stdout, out.stdout
    kept = json.loads((folder / "results.json").read_text())
    assert kept["runs"] == extended["runs"] and kept["earlier_commands"] == [result["command"], extended["command"]]
    # A damaged results.json is refused in one line and left as it is (nothing overwritten).
    (folder / "results.json").write_text("{truncated")
    out = subprocess.run([sys.executable, script, *wider], capture_output=True, text=True, cwd=root, env=e, timeout=900)
    assert out.returncode == 2 and "cannot be read as a study's results" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and (folder / "results.json").read_text() == "{truncated"


def _repo():
    import os

    return os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
