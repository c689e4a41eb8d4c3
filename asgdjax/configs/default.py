"""The embedded default: the small CNN on scikit-learn's digits, synchronous SGD with momentum.

Run:    asgdjax-train                       (no flags: this config, workdir runs/default)
        asgdjax-train --config=asgdjax/configs/default.py --workdir=runs/digits
Expect: final_test_accuracy about 0.98 (>= 0.95) on the 359 held-out digits, in under 30 s on 2 CPU cores.
"""

from asgdjax.configs.base import base_config


def get_config():
    c = base_config()
    c.dataset = "digits"
    c.model = "small_cnn"
    c.batch_size = 32
    c.steps = 600
    c.learning_rate = 0.05
    c.eval_every = 200
    c.checkpoint_every = 300
    c.warm_start_steps = 100  # mode=sim/async: worker 0 trains alone first (Paine et al. 2013's warm start)
    return c
