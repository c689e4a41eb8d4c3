"""CIFAR-10 with cuda-convnet's layers-18pct net, synchronous SGD with momentum, crop + flip augmentation.

Prepare: asgdjax-prepare --dataset=cifar10 --npz=../shared/data/cifar10_jpeg_q75.npz
Run:     asgdjax-train --config=asgdjax/configs/cifar10_18pct.py --workdir=runs/cifar10_18pct
Budget:  4 epochs of the 25k-image offline set (1,560 steps of 64); the ~18% error of cuda-convnet needs
         far more compute than a 2-core CPU has.
Expect:  final_test_accuracy 0.6123 (measured 2026-11-26, 2-core CPU, jax 0.10.2), 206 s wall with another
         job sharing the CPU: about 45-50 s per epoch.
Async:   add --config.mode=sim --config.num_workers=8 --config.rule=staleness_lr
"""

from asgdjax.configs.base import base_config


def get_config():
    c = base_config()
    c.dataset = "cifar10"
    c.model = "cifar_18pct"
    c.augment = True
    c.batch_size = 64
    c.steps = 1560
    c.optimizer = "momentum"
    c.learning_rate = 0.02
    c.momentum = 0.9
    c.weight_decay = 5e-4
    c.lr_schedule = "cosine"
    c.log_every = 100
    c.eval_every = 390
    c.checkpoint_every = 390
    return c
