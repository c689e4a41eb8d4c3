"""What every experiment script shares: run one configuration through the trainer (resumable: a finished
run is read back, not recomputed), read its accuracy curve, find when it reached a target, and write a
study's JSON (with the exact command and machine) next to its PNG."""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import jax  # noqa: E402
from absl import logging  # noqa: E402

from asgdjax.cli import quiet_libraries  # noqa: E402
from asgdjax.errors import Diverged  # noqa: E402
from asgdjax.predict.targets import accuracy_curve  # noqa: E402
from asgdjax.train import train  # noqa: E402

logging.set_verbosity(logging.WARNING)
quiet_libraries()


def configure(base, **overrides):
    """A copy of `base` with dotted-key overrides (delay__kind=... sets delay.kind)."""
    c = copy.deepcopy(base)
    for key, value in overrides.items():
        node, *path = key.split("__")
        if path:
            c[node][path[0]] = value
        else:
            c[key] = value
    return c


def run(config, workdir: str) -> dict:
    """Train `config` in `workdir` (or read the finished run there): summary, accuracy curve, divergence."""
    done = os.path.join(workdir, "summary.json")
    if os.path.exists(done):
        with open(done) as f:
            summary = json.load(f)
        return {"summary": summary, "curve": accuracy_curve(workdir), "diverged": False}
    try:
        summary = train(config, workdir, show_progress=False)
    except Diverged as e:
        return {
            "summary": {"final_test_accuracy": float("nan")},
            "curve": accuracy_curve(workdir),
            "diverged": True,
            "message": str(e),
        }
    return {"summary": summary, "curve": accuracy_curve(workdir), "diverged": False}


def run_script(main) -> None:
    """absl's app.run, with asgdjax's input errors (a bad flag or --config override, a bad --profile, config
    value or calibration, an --outdir that is a file) as one line on stderr and exit status 2, not a
    traceback."""
    from absl import app

    from asgdjax.cli import PROGRAM, fail, parse_flags
    from asgdjax.errors import ConfigError

    PROGRAM[0] = os.path.basename(sys.argv[0])
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):  # absl's own help exits 1
        from absl import flags

        print((sys.modules["__main__"].__doc__ or PROGRAM[0]).strip())
        print("\nflags:\n" + flags.FLAGS.main_module_help())
        sys.exit(0)

    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]!r}; pass settings as --FLAG=VALUE (--help lists them)")
        try:
            return main(argv)
        except ConfigError as e:
            fail(str(e))
        except subprocess.CalledProcessError as e:  # a tool run by the script already said why, in one line
            sys.exit(e.returncode if 0 < e.returncode < 128 else 1)
        except (NotADirectoryError, FileExistsError, IsADirectoryError, PermissionError) as e:
            fail(f"{e.filename!r}: {e.strerror}; give a folder this script may write to (--outdir)")

    app.run(guarded, flags_parser=parse_flags)


def first_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    """Gradients at the first evaluation with test accuracy >= target (None: never)."""
    return next((g for g, acc in curve if acc >= target), None)


def machine() -> dict:
    d = jax.devices()[0]
    return {
        "device": str(d),
        "platform": d.platform,
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def command() -> str:
    """The command line that is running, as a results file records it."""
    return "python " + " ".join(sys.argv)


def save(path: str, result: dict) -> None:
    """Write `result` with the command that made it and the machine."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"command": command(), "machine": machine(), **result}, f, indent=2)
        f.write("\n")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ensure_dataset(name: str) -> None:
    """Prepare `name` from ../shared/data when it is not prepared yet (mnist, cifar10); any other dataset
    must be prepared already (ILSVRC-2012 from its archives), else the study stops saying how."""
    from asgdjax.data import get_spec, is_prepared, prepare

    spec = get_spec(name)
    if spec.embedded or is_prepared(name):
        return
    files = {"mnist": "mnist.npz", "cifar10": "cifar10_jpeg_q75.npz"}
    if name not in files:
        raise SystemExit(f"{name} is not prepared; prepare it first: {spec.prepare_hint}")
    npz = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", files[name])
    if not os.path.exists(npz):
        raise SystemExit(f"{name} is not prepared and {npz} is absent: asgdjax-prepare --dataset={name} --npz=...")
    prepare(name, None, npz)


def savefig(fig, path: str) -> None:
    """Lay out, write (PNG) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
