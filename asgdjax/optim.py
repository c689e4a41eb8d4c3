"""Optimizers by name (optax): the server-side optimizer of every mode."""

from __future__ import annotations

import optax

from asgdjax.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adam")
SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str,
    learning_rate,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    total_updates: int = 0,
) -> optax.GradientTransformation:
    """optax optimizer `name` with L2 weight decay added to the gradient (as cuda-convnet's wc did).

    `learning_rate` may be a traced scalar, so a vmapped sweep can build one optimizer per configuration.
    """
    if schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(learning_rate, max(int(total_updates), 1))
    elif schedule != "constant":
        raise ConfigError(f"unknown lr_schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if name == "sgd":
        opt = optax.sgd(learning_rate)
    elif name == "momentum":
        opt = optax.sgd(learning_rate, momentum=momentum)
    elif name == "nesterov":
        opt = optax.sgd(learning_rate, momentum=momentum, nesterov=True)
    elif name == "adagrad":
        opt = optax.adagrad(learning_rate)
    elif name == "adam":
        opt = optax.adam(learning_rate)
    else:
        raise ConfigError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    if weight_decay:
        opt = optax.chain(optax.add_decayed_weights(weight_decay), opt)
    return opt
