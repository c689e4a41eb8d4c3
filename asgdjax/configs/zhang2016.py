"""Zhang, Gupta, Lian, Liu 2016 (staleness-aware async-SGD), as experiments/staleness_literature.py runs it:
n-softsync with a fixed learning rate degrades as n approaches the number of learners; lr0 / staleness
keeps every protocol near hardsync.

Run:     asgdjax-train --config=asgdjax/configs/zhang2016.py:scaled --config.protocol=softsync \\
             --config.softsync_n=8 --workdir=runs/zhang_scaled_8
Variants: get_config("fixed") (lr 0.2 whatever the staleness) | get_config("scaled") (lr0 / tau); add
         ",quick" for the 2,000-gradient runs of `staleness_literature.py --quick`.
Expect:  (2026-11-29, 2-core CPU, --quick; experiments/results/staleness/quick/zhang.json) test error at
         hardsync 0.0479; fixed lr degrades at n = 8 (0.0742) while lr0/tau stays within 1 point of hardsync
         at every n (0.0407-0.0527; 0.0427 at n = 8, the command above with ",quick").
"""

from asgdjax.configs.base import base_config


def get_config(arg: str = "scaled"):
    variant, *flags = arg.split(",")
    if variant not in ("fixed", "scaled"):
        raise ValueError(f"zhang2016 variant {variant!r}; allowed: fixed, scaled")
    c = base_config()
    c.mode, c.dataset, c.model = "sim", "mnist", "mlp"
    c.batch_size, c.steps = 32, 2000 if "quick" in flags else 4000
    c.optimizer, c.learning_rate, c.momentum_compensation = "sgd", 0.2, "none"
    c.num_workers = 8  # learners
    c.rule = "staleness_lr" if variant == "scaled" else "none"
    c.log_every, c.eval_every, c.checkpoint_every = 100, c.steps // 20, c.steps
    c.max_train_loss = 20.0  # a run whose loss passes this has failed (Zhang's "fails")
    return c
