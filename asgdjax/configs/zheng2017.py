"""Zheng et al. 2017 (DC-ASGD), as experiments/staleness_literature.py runs it: test error DC-ASGD-adaptive
<= DC-ASGD-constant <= plain ASGD, the gap growing from 4 to 8 workers.

Run:     asgdjax-train --config=asgdjax/configs/zheng2017.py:dc_asgd_adaptive --config.num_workers=8 \\
             --workdir=runs/zheng_dca_8
Variants: get_config("asgd") | ("dc_asgd") | ("dc_asgd_adaptive").
Expect:  (2026-11-29, 2-core CPU, experiments/results/staleness/full/zheng.json, mean of seeds 0 and 1) test
         error at 8 workers ASGD 0.0382, DC-ASGD-c 0.0303, DC-ASGD-a 0.0225 (the ordering holds); at 4
         workers 0.0175 / 0.0173 / 0.0178 (within the seed spread).
"""

from asgdjax.configs.base import base_config

LAMBDAS = {"asgd": ("none", 0.0), "dc_asgd": ("dc_asgd", 0.04), "dc_asgd_adaptive": ("dc_asgd_adaptive", 2.0)}


def get_config(arg: str = "asgd"):
    if arg not in LAMBDAS:
        raise ValueError(f"zheng2017 variant {arg!r}; allowed: {', '.join(LAMBDAS)}")
    c = base_config()
    c.mode, c.dataset, c.model = "sim", "mnist", "small_cnn"
    c.batch_size, c.steps, c.num_workers = 32, 2000, 4
    # lr 0.05 with momentum 0.9 makes plain ASGD fail outright at 4 and 8 workers; the paper compares
    # methods that all train, so the study uses 0.01 (and the paper's plain momentum, no compensation).
    c.optimizer, c.learning_rate, c.momentum, c.momentum_compensation = "momentum", 0.01, 0.9, "none"
    c.rule, c.rule_lambda = LAMBDAS[arg]
    c.log_every, c.eval_every, c.checkpoint_every = 100, 100, c.steps
    c.max_train_loss = 20.0
    return c
