"""MNIST with the small CNN (conv32-conv64-fc128), synchronous SGD with momentum.

Prepare: asgdjax-prepare --dataset=mnist --npz=../shared/data/mnist.npz
Run:     asgdjax-train --config=asgdjax/configs/mnist.py --workdir=runs/mnist
Expect:  final_test_accuracy 0.9918 (>= 0.99) in 108 s on 2 CPU cores (jax 0.10.2, measured 2026-11-26).
Sim:     asgdjax-train --config=asgdjax/configs/mnist.py --config.mode=sim --config.num_workers=8
         -> 0.9876 (mean staleness 6.3, 250 warm-start steps, lr0/tau, compensated momentum), about 3 min
Async:   asgdjax-train --config=asgdjax/configs/mnist.py --config.mode=async --config.num_workers=4
         -> 0.9873 (4 real workers sharing the CPU device, mean staleness 2.7), about 3 min
         (both measured 2026-11-27; 349 s / 322 s while a CI run shared the 2 cores)
"""

from asgdjax.configs.base import base_config


def get_config():
    c = base_config()
    c.dataset = "mnist"
    c.model = "small_cnn"
    c.batch_size = 64
    c.steps = 2500
    c.learning_rate = 0.1
    c.lr_schedule = "cosine"
    c.momentum = 0.5  # async-friendly: asynchrony itself adds momentum (Mitliagkas et al. 2016)
    # Used by mode=sim / mode=async only: the paper's warm start and Zhang et al.'s lr0/tau.
    c.rule = "staleness_lr"
    c.warm_start_steps = 250
    c.log_every = 100
    c.eval_every = 500
    c.checkpoint_every = 1000
    return c
