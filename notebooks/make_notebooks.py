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

import jax
import matplotlib.pyplot as plt
import numpy as np

# Colab / a fresh kernel: install asgdjax if it is not importable (set ASGDJAX_REPO to your clone's URL).
if importlib.util.find_spec("asgdjax") is None:
    repo = os.environ.get("ASGDJAX_REPO", "https://github.com/asgdjax/asgdjax")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{repo}"], check=True)
QUICK = os.environ.get("ASGDJAX_NOTEBOOK_QUICK") == "1"  # the test suite runs the smallest setting
print("jax", jax.__version__, jax.devices(), "quick" if QUICK else "", np.__version__, plt.get_backend())
print("scratch space:", json.dumps(tempfile.gettempdir()))"""

QUICKSTART = [
    (
        "md",
        """# asgdjax quickstart: what does asynchrony do to training?

Simulate 8 asynchronous workers training the small CNN on the embedded digits set, then compare with
synchronous SGD on the same number of gradients. Every gradient is really computed; staleness comes from
an event-driven schedule of exponential step times (the simulator replays it, deterministically).""",
    ),
    ("code", SETUP),
    (
        "code",
        """from asgdjax.configs.default import get_config
from asgdjax.train import train

STEPS = 150 if QUICK else 600
out = tempfile.mkdtemp(prefix="asgdjax_quickstart_")

def config(mode, **kw):
    c = get_config()
    c.mode, c.steps, c.eval_every, c.log_every = mode, STEPS, STEPS // 6, STEPS // 6
    c.momentum, c.learning_rate, c.rule = 0.5, 0.1, "staleness_lr"
    for k, v in kw.items():
        c[k] = v
    return c

sync = train(config("sync"), f"{out}/sync", show_progress=False)
sim8 = train(config("sim", num_workers=8), f"{out}/sim8", show_progress=False)
print(f"sync SGD:        test accuracy {sync['final_test_accuracy']:.4f}")
print(f"8 async workers: test accuracy {sim8['final_test_accuracy']:.4f}, "
      f"mean staleness {sim8['staleness_mean']:.2f} (K - 1 = 7 expected)")""",
    ),
    ("md", "## Staleness histogram and accuracy against gradients"),
    (
        "code",
        """from asgdjax.predict.targets import accuracy_curve

fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
hist = np.asarray(sim8["staleness_hist"])
a.bar(np.arange(len(hist)), hist)
a.set(xlabel="staleness (updates between read and apply)", ylabel="gradients", title="8 workers, exponential delays")
for name, run in (("sync", "sync"), ("8 async workers", "sim8")):
    g, acc = zip(*accuracy_curve(f"{out}/{run}"), strict=True)
    b.plot(g, acc, "o-", label=name)
b.set(xlabel="gradients", ylabel="test accuracy", title="digits, small CNN")
b.legend()
fig.tight_layout()""",
    ),
    (
        "md",
        """The same trace format is written by real asynchronous runs (`mode=async`); replaying one with
`--config.trace=.../trace.npz` in `mode=sim` reproduces its final parameters exactly.""",
    ),
]

SWEEP = [
    (
        "md",
        """# One vmapped sweep: final accuracy over staleness bound x learning rate

Twelve configurations (SSP bound s in {0, 1, 3, unbounded} x three learning rates) of 4 workers, each with
its own schedule, run as *one* compiled program (`asgdjax.sim.sweep` vmaps the simulator's step).""",
    ),
    ("code", SETUP),
    (
        "code",
        """import optax

from asgdjax.data import load_dataset
from asgdjax.delays import DelayModel
from asgdjax.models import get_model
from asgdjax.rules import plain
from asgdjax.server import Server
from asgdjax.sim import Simulator, make_schedule, make_streams
from asgdjax.sim.sweep import sweep
from asgdjax.train.task import Task, device_data

K, STEPS = 4, (120 if QUICK else 600)
ds = load_dataset("digits")
task = Task(get_model("mlp", 10, ds.spec.image_shape), ds.spec, augment=False)
data = device_data(ds)
bounds, lrs = [0, 1, 3, -1], [0.03, 0.1, 0.3]
cfgs = [(s, lr) for s in bounds for lr in lrs]
traces = [make_schedule(jax.random.key(0), K, STEPS, DelayModel("exponential"), max_staleness=s) for s, _ in cfgs]
sim = Simulator(task, lambda h: Server(plain(), optax.sgd(h["learning_rate"])), K, group_size=K)
p0 = task.model.init(jax.random.key(0))
final = sweep(sim, [p0] * len(cfgs), traces, data, [{"learning_rate": lr} for _, lr in cfgs],
              [make_streams(ds.num_train, 16, 0, K)] * len(cfgs), [jax.random.key(1)] * len(cfgs))


def config_params(i):
    return jax.tree.map(lambda x: x[i], final.server.params)


acc = np.array([task.evaluate(config_params(i), data)["test_accuracy"] for i in range(len(cfgs))])
acc = acc.reshape(len(bounds), len(lrs))
stale = [traces[i * len(lrs)].stats()["staleness_mean"] for i in range(len(bounds))]
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
`experiments/results/` (run them first; each prints its command) and shows the tables and plots.""",
    ),
    ("code", SETUP),
    (
        "code",
        """import glob

from IPython.display import Image, display

root = os.path.abspath(os.path.join(os.getcwd(), "..", "experiments", "results"))
found = sorted(glob.glob(f"{root}/paper_gpu_asgd/*/results.json"))
for path in found:
    with open(path) as f:
        r = json.load(f)
    print(path.split("results/")[-1], "|", r["setting"])
    print(f"{'clients':>8} {'error':>8} {'staleness':>10} {'s to target':>12} {'speedup':>8}")
    for s in r["speedups"]:
        t = f"{s['seconds_to_target']:.1f}" if s["seconds_to_target"] else "-"
        sp = f"{s['speedup']:.2f}x" if s["speedup"] else "-"
        print(f"{s['workers']:>8} {s['final_test_error']:>8.4f} {s['staleness_mean']:>10.2f} {t:>12} {sp:>8}")
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


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
    write("staleness_sweep.ipynb", SWEEP)
    write("paper_reproduction.ipynb", PAPER)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", HERE], check=False)  # same style as the code
