"""The README's main job and the one-line errors, through the real console script."""

import json
import os

import pytest
from conftest import shared_npz
from helpers import one_line_error, run_cli

RAY = "--config.mode=async --config.backend=ray"


def run(args, tmp_path, env=None):
    return run_cli("train", args, tmp_path, env)


def test_default_job_reaches_95_percent_on_held_out_digits(tmp_path):
    out = run(["--workdir=run", "--noprogress"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_test_accuracy"] >= 0.95 and summary["health"] == {"status": "ok"}
    for key in ("steps", "examples_per_second", "wall_seconds", "final_test_accuracy"):
        assert key in summary
    assert "test accuracy" in out.stdout and str(tmp_path / "run") in out.stdout
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and all("step" in json.loads(x) for x in lines)
    assert os.listdir(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--config.dataset=svhn", "unknown dataset 'svhn'; allowed: cifar10, digits, imagenet2012, mnist"),
        ("--config.model=resnet", "unknown model 'resnet'; allowed:"),
        ("--config.optimizer=lion", "unknown optimizer 'lion'; allowed:"),
        ("--config.mode=hogwild", "unknown mode 'hogwild'; allowed: sync, sim, async"),
        ("--config.batch_size=0", "batch_size=0 is not allowed; use a positive integer"),
        ("--config.steps=-5", "steps=-5 is not allowed; use a positive integer"),
        ("--config.learning_rate=nan", "learning_rate=nan is not allowed"),
        ("--config.num_workers=0", "num_workers=0 is not allowed"),
        ("--config.stepz=5", "unknown config key 'stepz'"),
        ("--config.steps=abc", "--config.steps='abc' is not allowed; use an integer"),
        ("--config.learning_rate=fast", "--config.learning_rate='fast' is not allowed; use a number"),
        ("--config.augment=maybe", "--config.augment='maybe' is not allowed; use true or false"),
        ("--config.modle=sim", "unknown config key 'modle' (did you mean 'mode' or 'model'?)"),
        ("--confg.mode=sim", "unknown flag --confg.mode (did you mean --config.mode or --config.model?)"),
        ("--progress=maybe", "--progress='maybe' is not allowed; use true or false"),
        ("--config.delay=3", "config.delay is a group of keys, set one: e.g. --config.delay.kind=..."),
        ("--config.delay.sped=2", "unknown config key 'delay.sped' (did you mean 'delay.spread' or 'delay.speeds'"),
        ("--config.rule.name=x", "unknown config key 'rule.name' ('rule' is a value, not a group of keys)"),
        ("--config.mode=async --config.devices=a", "devices='a' is not allowed; use comma-separated device ids"),
        ("--config.mode=sim --config.num_workers=4 --config.delay.speeds=1,2,3", "has 3 entries for num_workers=4"),
        ("--config.mode=sim --config.delay.kind=uniform_staleness --config.delay.staleness_bound=-3", "bound=-3 is"),
        ("--config.model=alexnet", "model 'alexnet' cannot take digits's 8x8x1 images"),
        ("--config.rule=fancy --config.mode=sim", "unknown rule 'fancy'; allowed: none, staleness_lr"),
        ("--config.mode=sim --config.max_staleness=-3", "max_staleness=-3 is not allowed"),
        ("--config.mode=sim --config.delay.kind=gamma", "unknown delay.kind 'gamma'"),
        ("--config.mode=async --config.n_push=0", "n_push=0 is not allowed; use a positive integer"),
        ("--config.momentum_compensation=auto", "unknown momentum_compensation 'auto'; allowed: staleness"),
        ("--config.sampler=random", "unknown sampler 'random'; allowed: shards, replacement"),
        ("--config.mode=async --config.fail_at=9:1", "fail_at names worker 9"),
        ("--config.mode=sim --config.staleness_cap=-2", "staleness_cap=-2 is not allowed"),
        ("--config.model_parallel=0", "model_parallel=0 is not allowed; use a positive integer"),
        ("--config.mode=async --config.model_parallel=16", "model_parallel=16 is not allowed: this machine has 8"),
        ("--config.mode=async --config.model_parallel=2 --config.devices=0,1,2", "give 2 ids in 0..7 (2 per worker"),
        ("--config.mode=sim --config.delay.speeds=1,x", "--config.delay.speeds entry 'x' is not allowed; use"),
        ("--config.mode=sim --config.delay.speeds=1,,2", "--config.delay.speeds='1,,2' has an empty entry"),
        ("--config.data_dir=/dev/null", "data_dir='/dev/null' is a file; give a folder"),
        ("--config.eval_examples=-5", "eval_examples=-5 is not allowed"),
        ("--config.mode=sim --config.rule_lambda=-1", "rule_lambda=-1.0 is not allowed; use a number >= 0"),
        ("--config.mode=sim --config.n_push=2 --config.local_learning_rate=nan", "local_learning_rate=nan is not"),
        (f"{RAY} --config.ray_address=127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1 within 5 s"),
        (f"{RAY} --config.ray_address=junk", "ray_address='junk' is not allowed; use 'auto', host:port or ray://"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path, flag, message):
    err = one_line_error(run([*flag.split(), "--workdir=run", "--noprogress"], tmp_path))
    assert err.startswith("asgdjax-train: error: ") and message in err


def test_what_a_dry_run_refuses_and_accepts_about_devices(tmp_path):
    """--dry_run checks the workers' devices as the real run does (and splits the CPU as it does first)."""
    out = run(["--config.mode=async", "--config.devices=0,a", "--dry_run"], tmp_path)
    assert "devices='0,a' is not allowed" in one_line_error(out)
    args = ["--config.mode=async", "--config.num_workers=2", "--config.model_parallel=2", "--config.devices=0,1,2,3"]
    out = run([*args, "--config.cpu_devices=4", "--dry_run", "--workdir=run"], tmp_path, {"XLA_FLAGS": ""})
    assert out.returncode == 0 and "ok: mode=async, 2 workers" in out.stdout, out.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_config_file_given_an_argument_it_does_not_take(tmp_path):
    out = run([f"--config={os.path.abspath('asgdjax/configs/mnist.py')}:foo", "--dry_run"], tmp_path)
    assert "mnist.py' takes no argument (its get_config() has no parameter)" in one_line_error(out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--npz=folder"], "--npz='folder' is not used by dataset 'digits', which takes nothing (it is embedded)"),
        (["--dataset=mnist", "--npz=folder"], "--npz='folder' is a folder; give the .npz file in it"),
        (["--dataset=imagenet2012", "--npz=x.npz"], "which takes --manual_dir=FOLDER; --npz is for mnist and cifar10"),
        (["--dataset=cifar10", "--manual_dir=folder"], "--manual_dir='folder' is only for imagenet2012"),
        (["mnist"], "unexpected arguments ['mnist']; name the dataset with --dataset=NAME"),
    ],
)
def test_prepare_refuses_a_source_the_dataset_does_not_read(tmp_path, args, message):
    (tmp_path / "folder").mkdir()
    out = run_cli("prepare", [*args, f"--data_dir={tmp_path / 'tfds'}"], tmp_path)
    assert message in one_line_error(out)
    assert not (tmp_path / "tfds").exists()


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    out = run(
        ["--config.dataset=mnist", "--workdir=run", "--noprogress"], tmp_path, {"TFDS_DATA_DIR": str(tmp_path / "x")}
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "asgdjax-prepare --dataset=mnist --npz=" in out.stderr


@pytest.mark.slow
def test_a_workdir_holding_another_config_is_refused(tmp_path):
    assert run(["--config.steps=20", "--workdir=run", "--noprogress"], tmp_path).returncode == 0
    before = (tmp_path / "run" / "summary.json").read_text()
    out = run(["--config.steps=20", "--config.learning_rate=0.2", "--workdir=run", "--noprogress"], tmp_path)
    assert "holds a run with learning_rate=0.05" in one_line_error(out)
    assert (tmp_path / "run" / "summary.json").read_text() == before  # nothing overwritten


@pytest.mark.slow
def test_cifar_async_across_four_two_way_model_parallel_groups(tmp_path):
    npz = shared_npz("cifar10_jpeg_q75.npz")
    env = {"TFDS_DATA_DIR": str(tmp_path / "tfds")}
    out = run_cli("prepare", ["--dataset=cifar10", f"--npz={npz}"], tmp_path, env)
    assert out.returncode == 0, out.stderr[-2000:]
    # The command, shortened to 24 gradients, on the 8 forced CPU devices.
    args = ["--config=" + os.path.abspath("asgdjax/configs/cifar10_18pct.py"), "--config.mode=async"]
    args += ["--config.num_workers=4", "--config.model_parallel=2", "--config.cpu_devices=8"]
    args += ["--config.steps=24", "--config.eval_every=24", "--workdir=run", "--noprogress"]
    out = run(args, tmp_path, env)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["devices"] == ["cpu:0+cpu:1", "cpu:2+cpu:3", "cpu:4+cpu:5", "cpu:6+cpu:7"]
    held = summary["parameter_bytes_per_device"]
    assert sorted(held) == ["cpu:0", "cpu:1"] and sum(held.values()) == 4 * summary["parameters"]
    assert summary["gradients"] == 24


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["--config.mode=async", "--config.num_workers=4"],
        ["--config.mode=async", "--config.num_workers=8"],
        ["--config.mode=sim", "--config.num_workers=16"],
    ],
)
def test_the_default_config_trains_under_asynchrony_with_no_other_flags(tmp_path, args):
    out = run([*args, "--workdir=run", "--noprogress"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_test_accuracy"] >= 0.95 and summary["health"]["status"] == "ok", summary


def test_help_lists_every_config_key_with_its_default(tmp_path):
    from asgdjax.configs.base import base_config

    out = run(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    c = base_config()
    keys = [k for k, v in c.items() if not hasattr(v, "items")] + [f"delay.{k}" for k in c.delay]
    missing = [k for k in keys if f"--config.{k}=" not in out.stdout]
    assert not missing, missing
    for section in ("Training:", "Asynchrony", "Staleness rules:", "Simulator", "Runtime", "Guards and faults:"):
        assert section in out.stdout
    assert "--config.momentum=0.9  # the total momentum wanted" in out.stdout
    # With a config file, its own values (a stranger read base.py's 1000 steps under --config=mnist.py).
    mnist_py = os.path.join(os.path.dirname(__file__), "..", "asgdjax", "configs", "mnist.py")
    mnist = run([f"--config={mnist_py}", "--help"], tmp_path)
    assert mnist.returncode == 0, mnist.stderr[-2000:]
    assert "--config.steps=2500  # gradients" in mnist.stdout and "(base: 1000)" in mnist.stdout
    assert "mnist.py: its values, base.py's where it differs" in mnist.stdout
    # Without --config, the default file's (what a plain asgdjax-train runs: 600 steps, not base.py's 1000).
    assert "--config.steps=600  # gradients computed in all (= updates in sync mode) (base: 1000)" in out.stdout
    broken = run(["--config=nowhere.py", "--help"], tmp_path)
    assert broken.returncode == 0 and "cannot be loaded" in broken.stdout and "--config.steps=1000" in broken.stdout


def test_settings_a_run_ignores_are_named_and_it_still_runs(tmp_path):
    """A key the mode does not read, augment on a dataset without it, and a warm start as long as the run
    each get a note line on stderr (the run itself is not refused: exit 0)."""
    from asgdjax.configs.default import get_config
    from asgdjax.train.validate import unused_settings

    c = get_config()
    c.mode, c.num_workers, c.steps = "sim", 4, 50
    (warm,) = unused_settings(c, [])
    assert "warm_start_steps=100 covers all steps=50: worker 0 trains alone throughout" in warm
    c.mode = "async"
    assert unused_settings(c, ["delay.mean", "backend", "sim_chunk"]) == [
        "--config.delay.mean is read by mode=sim only; this mode=async run ignores it",
        "--config.sim_chunk is read by mode=sim only; this mode=async run ignores it",
        warm,
    ]
    assert unused_settings(c, ["momentum"]) == [warm]  # optimizer=momentum reads it
    c.optimizer = "sgd"
    assert unused_settings(c, ["momentum"])[0] == (
        "--config.momentum is read by optimizer=momentum or nesterov only; this run's optimizer=sgd ignores it"
    )
    c.mode, c.optimizer, c.delay.kind = "sim", "momentum", "lognormal"  # keys another setting switches off
    read = ["softsync_n", "rule_lambda", "delay.spread", "delay.staleness_bound", "delay.straggler_factor"]
    assert [n.split()[0] for n in unused_settings(c, read) if n != warm] == [
        "--config.softsync_n", "--config.rule_lambda", "--config.delay.staleness_bound", "--config.delay.straggler_factor"
    ]  # fmt: skip
    c.protocol, c.rule, c.delay.kind, c.delay.straggler_prob = "softsync", "dc_asgd", "uniform_staleness", 0.1
    assert [n.split()[0] for n in unused_settings(c, read) if n != warm] == ["--config.delay.spread"]
    c.optimizer = "sgd"
    assert unused_settings(c, ["local_learning_rate"])[0] == (
        "--config.local_learning_rate is read by Downpour (n_fetch or n_push > 1) only; this run's n_fetch=1, "
        "n_push=1 ignores it"
    )
    c.eval_examples = 100  # in-memory sets score their whole test split
    assert "eval_examples is read for streamed datasets (imagenet2012) only" in unused_settings(c, ["eval_examples"])[0]
    c.dataset = "imagenet2012"
    assert unused_settings(c, ["eval_examples"]) == [warm]
    args = ["--config.num_workers=4", "--config.ray_address=auto", "--config.augment=true", "--dry_run"]
    out = run(args, tmp_path)
    assert out.returncode == 0 and "ok: mode=sync" in out.stdout, out.stderr[-2000:]
    notes = [line for line in out.stderr.splitlines() if line.startswith("asgdjax-train: note: ")]
    assert [n.split()[2] for n in notes] == ["--config.num_workers", "--config.ray_address", "--config.augment=true"]
    assert "ray_address is read by mode=async only; this mode=sync run ignores it" in notes[1]


@pytest.mark.slow
def test_a_dry_run_answers_what_the_real_run_would_about_its_workdir(tmp_path):
    """A workdir holding another config is refused by --dry_run as by the run; a finished one says nothing
    would run; a folder that cannot be created is one line."""
    args = ["--config.steps=20", "--config.eval_every=10", "--workdir=run", "--noprogress"]
    assert run(args, tmp_path).returncode == 0
    out = run([*args, "--dry_run"], tmp_path)
    assert out.returncode == 0 and "holds this run, complete at 20 steps: nothing would run" in out.stdout
    out = run([*args, "--config.learning_rate=0.2", "--dry_run"], tmp_path)
    assert "holds a run with learning_rate=0.05 (this config: 0.2)" in one_line_error(out)
    out = run(["--workdir=/proc/asgdjax_no_such_dir", "--noprogress"], tmp_path)
    assert "workdir '/proc/asgdjax_no_such_dir' cannot be created" in one_line_error(out)


def test_a_config_file_with_an_unknown_key_or_no_config_dict_is_one_line(tmp_path):
    typo = tmp_path / "typo.py"
    typo.write_text(
        "from asgdjax.configs.base import base_config\n\n\ndef get_config():\n    c = base_config()\n"
        "    c.learning_rte = 0.1\n    return c\n"
    )
    out = run([f"--config={typo}", "--dry_run"], tmp_path)
    assert "the config sets unknown key 'learning_rte' (did you mean 'learning_rate'" in one_line_error(out)
    plain = tmp_path / "plain.py"
    plain.write_text("def get_config():\n    return {'mode': 'sync'}\n")
    out = run([f"--config={plain}", "--dry_run"], tmp_path)
    assert "--config's get_config() returned a dict; return an ml_collections.ConfigDict" in one_line_error(out)
