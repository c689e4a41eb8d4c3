"""Writes the three notebooks from the cells below (edit here, then `python notebooks/make_notebooks.py`), so
the notebooks stay reviewable as code; tests execute the .ipynb files themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat as nbf

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = """import importlib.util
import json
import os
import subprocess
import sys
import tempfile

# asgdjax is not on PyPI: install it from a checkout (this notebook inside one: `pip install -e` of it;
# Colab: upload or clone your copy of the repository first and set ASGDJAX_CHECKOUT to its folder).
if importlib.util.find_spec("asgdjax") is None:
    checkout = os.environ.get("ASGDJAX_CHECKOUT", os.path.abspath(os.path.join(os.getcwd(), "..")))
    if not os.path.exists(os.path.join(checkout, "setup.cfg")):
        raise SystemExit(f"asgdjax is not installed and {checkout!r} is not a checkout of it: run `make demo` in "
                         "the repository and choose its .venv as the kernel, or set ASGDJAX_CHECKOUT")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", checkout], check=True)

import jax
import matplotlib.pyplot as plt
import numpy as np

QUICK = os.environ.get("ASGDJAX_NOTEBOOK_QUICK") == "1"  # the test suite runs the smallest setting
print("jax", jax.__version__, jax.devices(), "(quick setting)" if QUICK else "")"""

QUICKSTART = [
    (
        "md",
        """# asgdjax quickstart: what does asynchrony do to *your* training?

`asgdjax.simulate` takes your loss over any pytree of parameters, your data as arrays, any optax optimizer
and a model of your workers' speeds, and simulates asynchronous SGD exactly (every gradient is computed;
the arrival order comes from an event-driven schedule, replayed deterministically). `asgdjax.run_async`
takes the same call and trains with real asynchronous workers.""",
    ),
    ("code", SETUP),
    ("md", "## Your own loss: least squares with 40 workers, 10 of them 4x slower, against synchronous SGD"),
    (
        "code",
        """import jax.numpy as jnp, optax, asgdjax

rng = np.random.default_rng(0)
X = rng.normal(size=(10_000, 400)).astype(np.float32)
y = X @ rng.normal(size=400).astype(np.float32) + 0.1 * rng.normal(size=10_000).astype(np.float32)

def loss(w, batch):
    x, t = batch
    return jnp.mean((x @ w - t) ** 2)

speeds = asgdjax.DelayModel("exponential", speeds=(1.0,) * 30 + (4.0,) * 10)  # step-time model per worker
run = dict(num_workers=40, steps=8_000 if QUICK else 32_000, batch_size=32, delays=speeds, key=0)
async_ = asgdjax.simulate(loss, jnp.zeros(400), (X, y), optimizer=optax.sgd(2e-3), **run)
sync = asgdjax.simulate(loss, jnp.zeros(400), (X, y), optimizer=optax.sgd(2e-3 * 40), protocol="sync", **run)
print(async_, sync, sep="\\n")""",
    ),
    (
        "code",
        """from asgdjax.predict.targets import gradient_times

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, r in (("async, 40 workers", async_), ("sync, 40 workers (lr x 40)", sync)):
    t = gradient_times(r.trace)[r.history.step - 1]
    ax.plot(t, r.history.train_loss, label=f"{name}: staleness {r.stats.staleness_mean:.1f}")
ax.set(xlabel="virtual seconds (mean step = 1 s)", ylabel="training loss", yscale="log", title="least squares")
ax.legend()
fig.tight_layout()""",
    ),
    (
        "md",
        """Synchronous SGD waits for the slowest of 40 workers every round; asynchronous SGD never waits but
applies gradients computed on parameters about 39 updates old. `result.trace` is the exact order of events;
`asgdjax.simulate(..., trace=result.trace)` replays it, and a `run_async` result's trace replays the real run.

## The bundled trainer: 8 simulated workers on the digits CNN""",
    ),
    (
        "code",
        """from asgdjax.configs.default import get_config
from asgdjax.train import train

STEPS = 150 if QUICK else 600
out = tempfile.mkdtemp(prefix="asgdjax_quickstart_")

def config(mode, **kw):
    c = get_config()  # momentum compensation, lr0/tau and a warm start are the defaults
    c.mode, c.steps, c.eval_every, c.log_every = mode, STEPS, STEPS // 6, STEPS // 6
    for k, v in kw.items():
        c[k] = v
    return c

sync_cnn = train(config("sync"), f"{out}/sync", show_progress=False)
sim8 = train(config("sim", num_workers=8), f"{out}/sim8", show_progress=False)
print(f"sync SGD:        test accuracy {sync_cnn['final_test_accuracy']:.4f}")
print(f"8 async workers: test accuracy {sim8['final_test_accuracy']:.4f}, mean staleness {sim8['staleness_mean']:.2f}")""",
    ),
    (
        "code",
        """from asgdjax.predict.targets import accuracy_curve

fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
hist = np.asarray(sim8["staleness_hist"])
a.bar(np.arange(len(hist)), hist)
a.set(xlabel="staleness (updates between read and apply)", ylabel="gradients", title="8 workers, exponential delays")
for name, run_dir in (("sync", "sync"), ("8 async workers", "sim8")):
    g, acc = zip(*accuracy_curve(f"{out}/{run_dir}"), strict=True)
    b.plot(g, acc, "o-", label=name)
b.set(xlabel="gradients", ylabel="test accuracy", title="digits, small CNN")
b.legend()
fig.tight_layout()""",
    ),
]

SWEEP = [
    (
        "md",
        """# One compiled sweep: final accuracy over staleness bound x learning rate

Twelve configurations (SSP bound s in {0, 1, 3, unbounded} x three learning rates) of 4 workers, each with
its own schedule, through *one* compiled program (`asgdjax.sim.sweep`: vmapped on accelerators, one after
another through the same compiled step on the CPU, where that is faster).""",
    ),
    ("code", SETUP.replace("import json\n", "").replace("import tempfile\n", "")),  # neither is used here
    (
        "code",
        """import optax

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ShardSampler
from asgdjax.core.server import Server
from asgdjax.data import load_dataset
from asgdjax.delays import DelayModel
from asgdjax.models import get_model
from asgdjax.rules import plain
from asgdjax.sim import Simulator, make_schedule
from asgdjax.sim.sweep import Member, sweep
from asgdjax.train.task import ClassificationTask, device_data

K, STEPS = 4, (120 if QUICK else 600)
ds = load_dataset("digits")
task = ClassificationTask(get_model("mlp", 10, ds.spec.image_shape), ds.spec, augment=False)
data = device_data(ds)
bounds, lrs = [0, 1, 3, -1], [0.03, 0.1, 0.3]
cfgs = [(s, lr) for s in bounds for lr in lrs]
spec = lambda s: ProtocolSpec(num_workers=K, max_staleness=s)
traces = [make_schedule(jax.random.key(0), spec(s), num_steps=STEPS, delays=DelayModel("exponential")) for s, _ in cfgs]
sim = Simulator(task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), spec(0))
p0 = task.init(jax.random.key(0))
sampler = ShardSampler(ds.num_train, 16, 0, K)
members = [Member(p0, t, {"learning_rate": lr}, sampler, jax.random.key(1)) for t, (_, lr) in zip(traces, cfgs, strict=True)]
final = sweep(sim, members, data)  # one compiled program: vmapped on accelerators, one by one on the CPU


def config_params(i):
    return final[i].server.params


acc = np.array([task.evaluate(config_params(i), data)["test_accuracy"] for i in range(len(cfgs))])
acc = acc.reshape(len(bounds), len(lrs))
stale = [traces[i * len(lrs)].stats().staleness_mean for i in range(len(bounds))]
print(np.round(acc, 4))""",
    ),
    (
        "code",
        """fig, ax = plt.subplots(figsize=(5, 3.6))
im = ax.imshow(acc, cmap="viridis", aspect="auto")
ax.set(xticks=range(len(lrs)), xticklabels=lrs, xlabel="learning rate",
       yticks=range(len(bounds)), yticklabels=[f"s={s if s >= 0 else 'inf'} (mean {m:.1f})" for s, m in zip(bounds, stale, strict=True)],
       ylabel="SSP staleness bound", title=f"final test accuracy, {K} workers, {STEPS} gradients")
for i in range(len(bounds)):
    for j in range(len(lrs)):
        ax.text(j, i, f"{acc[i, j]:.3f}", ha="center", va="center", color="w")
fig.colorbar(im)
fig.tight_layout()""",
    ),
]

PAPER = [
    (
        "md",
        """# The paper and the staleness literature, reproduced

Loads what `experiments/paper_gpu_asgd.py` and `experiments/staleness_literature.py` wrote to
`experiments/results/` of a checkout (or the folder `ASGDJAX_RESULTS` names) and shows the tables and
plots. It fetches nothing: without results it says which command writes them.""",
    ),
    ("code", SETUP),
    (
        "code",
        """import glob

from IPython.display import Image, display

root = os.environ.get("ASGDJAX_RESULTS", os.path.abspath(os.path.join(os.getcwd(), "..", "experiments", "results")))
if not os.path.isdir(root):
    print(f"no results folder at {root!r}: run this notebook from notebooks/ in a checkout, or set ASGDJAX_RESULTS "
          "to the experiments/results folder that `python experiments/paper_gpu_asgd.py --quick` writes")
found = sorted(glob.glob(f"{root}/paper_gpu_asgd/*/results.json"))
for path in found:
    with open(path) as f:
        r = json.load(f)
    profile = r.get("profile") or "a clock calibrated on the machine that ran it"
    clock = profile["name"] if isinstance(profile, dict) else profile
    print(path.split("results/")[-1], "|", r["setting"], "|", clock)
    print(f"{'clients':>8} {'n_sync':>7} {'start':>6} {'error':>8} {'staleness':>10} {'s to target':>12} {'speedup':>8}")
    for s in r["speedups"] if "speedups" in r else r["runs"]:  # "runs": studies on a hardware profile
        t = f"{s['seconds_to_target']:.1f}" if s["seconds_to_target"] else "-"
        sp = f"{s['speedup']:.2f}x" if s["speedup"] else "-"
        start = "warm" if s.get("warm", True) else "cold"
        print(f"{s['workers']:>8} {s.get('n_sync', 1):>7} {start:>6} {s['final_test_error']:>8.4f} "
              f"{s['staleness_mean']:>10.2f} {t:>12} {sp:>8}")
    display(Image(os.path.join(os.path.dirname(path), "paper_gpu_asgd.png")))
if not found:
    print("no results yet: python experiments/paper_gpu_asgd.py --quick")""",
    ),
    (
        "code",
        """found = sorted(glob.glob(f"{root}/staleness/*/*.json"))
for path in found:
    with open(path) as f:
        r = json.load(f)
    print(f"{r['study']} ({path.split('results/')[-1]}): {'agrees' if r['agrees'] else 'does NOT agree'}")
    print("  published: ", r["published"])
    print("  reproduced:", r["reproduced"])
    png = {"Zhang et al. 2016": "zhang2016.png", "Zheng et al. 2017": "zheng2017.png", "Dai et al. 2019": "dai2019.png"}
    display(Image(os.path.join(os.path.dirname(path), png[r["study"]])))
if not found:
    print("no results yet: python experiments/staleness_literature.py --quick")""",
    ),
]


def write(name: str, cells) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    nbf.write(nb, os.path.join(HERE, name))


def execute(name: str) -> None:
    """Run the notebook top to bottom (its full setting) and save it with its outputs, so it reads on
    GitHub without running."""
    import nbclient

    path = os.path.join(HERE, name)
    nb = nbf.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": HERE}}).execute()
    nbf.write(nb, path)


if __name__ == "__main__":
    notebooks = {"quickstart.ipynb": QUICKSTART, "staleness_sweep.ipynb": SWEEP, "paper_reproduction.ipynb": PAPER}
    for name, cells in notebooks.items():
        write(name, cells)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", HERE], check=False)  # same style as the code
    if "--no-execute" not in sys.argv:
        for name in notebooks:
            execute(name)
