"""Dai et al. 2019 (toward understanding the impact of staleness), as experiments/staleness_literature.py
runs it: batches to 90% test accuracy grow with the staleness bound s (staleness uniform on {0..s}), more
for deeper models and for momentum and Adam than for SGD.

Run:     asgdjax-train --config=asgdjax/configs/dai2019.py:mlp3,momentum --config.delay.staleness_bound=16 \\
             --workdir=runs/dai_mlp3_momentum_s16
Variants: get_config("MODEL,OPTIMIZER"): MODEL in mlr, mlp, mlp3; OPTIMIZER in sgd (lr 0.1), momentum
         (lr 0.02, 0.9), adam (lr 0.001); add ",quick" for 1,500 batches.
Expect:  (2026-11-29, 2-core CPU, experiments/results/staleness/full/dai.json) batches to 90%: the command
         above does not reach it in 2,000 (s = 0: 150); mlp,sgd 125 / 225 / 225 / 400 at s = 0 / 4 / 8 / 16.
"""

from asgdjax.configs.base import base_config

OPTIMIZERS = {"sgd": (0.1, 0.0), "momentum": (0.02, 0.9), "adam": (0.001, 0.0)}


def get_config(arg: str = "mlp,sgd"):
    model, optimizer, *flags = arg.split(",")
    if model not in ("mlr", "mlp", "mlp3") or optimizer not in OPTIMIZERS:
        raise ValueError(f"dai2019 variant {arg!r}; use MODEL,OPTIMIZER with mlr|mlp|mlp3 and sgd|momentum|adam")
    c = base_config()
    c.mode, c.dataset, c.model = "sim", "mnist", model
    c.batch_size, c.steps, c.num_workers = 32, 1500 if "quick" in flags else 2000, 8
    c.optimizer, (c.learning_rate, c.momentum) = optimizer, OPTIMIZERS[optimizer]
    c.rule, c.momentum_compensation = "none", "none"  # the paper's plain optimizers
    c.delay.kind, c.delay.staleness_bound = "uniform_staleness", 4
    c.log_every, c.eval_every, c.checkpoint_every = 100, 25, c.steps
    c.max_train_loss = 20.0
    return c
