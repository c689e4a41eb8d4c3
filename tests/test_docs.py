"""Every command the README and the config files print runs as written: the short ones for real, the ones
marked "minutes" (and the config files' Run lines) through --dry_run, which checks the config, the data,
the workdir and the sizes without training."""

import ast
import importlib.util
import os
import re
import shlex

import pytest
from conftest import SHARED_DATA
from helpers import run_cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCRIPTS = {
    "asgdjax-train": "train",
    "asgdjax-prepare": "prepare",
    "asgdjax-predict": "predict",
    "asgdjax-sweep": "sweep",
    "asgdjax-plan": "plan",
}


def commands(text: str, pattern: str = r"```bash\n(.*?)```") -> list[tuple[str, bool]]:
    """(command, long) for every asgdjax-* command in the text's bash blocks (continuation lines joined)."""
    out = []
    for block in re.findall(pattern, text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            code, _, comment = line.partition("#")
            if code.strip().startswith("asgdjax-"):
                out.append((code.strip(), "minutes" in comment))
    return out


def readme_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        return commands(f.read())


@pytest.fixture
def checkout(tmp_path):
    """A folder laid out like the repository root (asgdjax/ and ../shared/data) that runs write into."""
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(os.path.join(ROOT, "asgdjax"), work / "asgdjax")
    (tmp_path / "shared").mkdir()
    if os.path.isdir(SHARED_DATA):
        os.symlink(SHARED_DATA, tmp_path / "shared" / "data")
    return work


def run(command: str, cwd, dry: bool):
    program, *args = shlex.split(command)
    if dry:
        if program != "asgdjax-train":
            pytest.skip(f"takes minutes and has no dry run: {command}")
        args.append("--dry_run")
    if any("../shared/data" in a for a in args) and not os.path.isdir(SHARED_DATA):
        pytest.skip(f"{SHARED_DATA} not present")
    return run_cli(SCRIPTS[program], args, cwd)


def readme_params():
    """Every README command; those that train beyond the bare default are the slow tier's."""
    return [
        pytest.param(c, long, marks=[pytest.mark.slow] if not long and c != "asgdjax-train" else [], id=c[:60])
        for c, long in readme_commands()
    ]


@pytest.mark.parametrize("command,long", readme_params())
def test_every_readme_command_runs_as_written(checkout, command, long):
    if ("configs/mnist.py" in command or "paine2013.py:mnist" in command) and not prepared(
        "mnist", "mnist.npz", checkout
    ):
        pytest.skip("MNIST cannot be prepared here (../shared/data/mnist.npz absent)")
    out = run(command, checkout, long)
    assert out.returncode == 0, (command, out.stderr[-3000:])


COMMAND = re.compile(r"^\s*(?:[A-Z][a-z]+:)?\s*(asgdjax-\w+(?: +--?[\w.=:/,-]+)*)\s*(?:\(|->|$)")


def config_run_lines():
    """(file, command) for every command line in the config files' docstrings (Run:, Sim:, ...)."""
    folder = os.path.join(ROOT, "asgdjax", "configs")
    found = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        if not any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body):
            continue
        for line in (ast.get_docstring(tree) or "").replace("\\\n", " ").splitlines():
            m = COMMAND.match(line)
            if m:
                found.append((name, m.group(1).strip()))
    return found


def config_dataset(name: str, command: str) -> str:
    """The dataset the command trains on: a --config.dataset flag, else the config file's (with its variant)."""
    flag = re.search(r"--config\.dataset=(\w+)", command)
    if flag:
        return flag.group(1)
    arg = re.search(r"--config=[\w/.]+\.py:([\w,]+)", command)
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, "asgdjax", "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg.group(1)) if arg else module.get_config()
    return config.dataset


def prepared(dataset: str, npz: str, cwd) -> bool:
    from asgdjax.data import is_prepared

    if is_prepared(dataset):
        return True
    return run_cli("prepare", [f"--dataset={dataset}", f"--npz={SHARED_DATA}/{npz}"], cwd).returncode == 0


@pytest.mark.parametrize("name,command", config_run_lines(), ids=[f"{n}: {c[:50]}" for n, c in config_run_lines()])
def test_every_config_files_run_line_checks(checkout, name, command):
    needs = {"mnist": "mnist.npz", "cifar10": "cifar10_jpeg_q75.npz"}
    dataset = config_dataset(name, command)
    if dataset in needs and not prepared(dataset, needs[dataset], checkout):
        pytest.skip(f"{dataset} cannot be prepared here ({SHARED_DATA}/{needs[dataset]} absent)")
    if "imagenet" in name:
        pytest.skip("needs the ILSVRC-2012 archives (the full tier trains this config on a miniature)")
    out = run(command, checkout, dry=True)
    assert out.returncode == 0, (command, out.stderr[-3000:])
