"""Paine, Jin, Yang, Lin, Huang 2013 (GPU A-SGD): Downpour clients (n_fetch = n_push = n_sync) with a warm
start, as experiments/paper_gpu_asgd.py studies them (clients x n_sync x warm/cold on a hardware profile).

Run:     asgdjax-train --config=asgdjax/configs/paine2013.py:cifar10 --config.num_workers=8 \\
             --config.n_fetch=10 --config.n_push=10 --workdir=runs/paine_cifar_8x10
Variants: get_config("cifar10") cuda-convnet layers-18pct on the offline CIFAR-10 set (the study's
         setting); ("mnist") the quick one; ("imagenet") one-GPU AlexNet on ILSVRC-2012 (the paper's own).
Expect:  (2026-11-27, 2-core CPU) see experiments/results/paper_gpu_asgd/*/results.json for the study.
"""

from asgdjax.configs.base import base_config


def get_config(arg: str = "cifar10"):
    c = base_config()
    c.mode = "sim"
    c.rule, c.momentum_compensation = "staleness_lr", "none"
    if arg == "cifar10":
        c.dataset, c.model, c.augment = "cifar10", "cifar_18pct", True
        c.batch_size, c.steps, c.warm_start_steps = 64, 1200, 150  # 3 epochs of the 25k set
        c.learning_rate, c.momentum, c.weight_decay, c.lr_schedule = 0.05, 0.5, 5e-4, "cosine"
        c.eval_every, c.log_every = 150, 50
    elif arg == "mnist":
        c.dataset, c.model = "mnist", "small_cnn"
        c.batch_size, c.steps, c.warm_start_steps = 32, 800, 100
        c.learning_rate, c.momentum, c.lr_schedule = 0.1, 0.5, "cosine"
        c.eval_every, c.log_every = 50, 50
    elif arg == "imagenet":
        from asgdjax.configs.alexnet_imagenet import get_config as alexnet

        c = alexnet()
        c.mode, c.rule, c.momentum_compensation = "sim", "staleness_lr", "none"
        c.warm_start_steps = 2000
    else:
        raise ValueError(f"paine2013 variant {arg!r}; allowed: cifar10, mnist, imagenet")
    c.checkpoint_every = c.steps
    return c
