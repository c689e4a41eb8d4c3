"""Optimizers by name (optax): the server-side optimizer of every mode."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from asgdjax.errors import ConfigError
from asgdjax.rules import compensated_momentum

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adam")
SCHEDULES = ("constant", "cosine")
COMPENSATIONS = ("staleness", "workers", "none")


def cosine_decay(init_value, decay_steps) -> optax.Schedule:
    """optax.cosine_decay_schedule(init_value, decay_steps), the same arithmetic, but `decay_steps` may be
    traced: one compiled program then serves runs of any length (the planner's seeds and candidates differ
    in their update counts), where a Python int would compile one per length."""

    def schedule(count):
        total = jnp.maximum(jnp.asarray(decay_steps, jnp.float32), 1.0)
        count = jnp.minimum(count, total)
        return init_value * (0.5 * (1 + jnp.cos(jnp.pi * count / total)))

    return schedule


def make_optimizer(
    name: str,
    learning_rate,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    total_updates=0,
    compensation: str = "none",
    num_workers: int = 1,
    prior_staleness: float | None = None,
) -> optax.GradientTransformation:
    """optax optimizer `name` with L2 weight decay added to the gradient (as cuda-convnet's wc did).

    `learning_rate` may be a traced scalar, so a vmapped sweep can build one optimizer per configuration;
    so may `total_updates` (the cosine schedule's length).
    compensation (momentum and nesterov only): "staleness" shrinks the explicit momentum by the momentum
    asynchrony adds, measured from the updates' staleness; "workers" assumes K memoryless workers;
    "none" is plain optax momentum (`asgdjax.rules.compensated_momentum`, Mitliagkas et al. 2016).
    """
    if compensation not in COMPENSATIONS:
        raise ConfigError(f"unknown momentum_compensation {compensation!r}; allowed: {', '.join(COMPENSATIONS)}")
    if schedule == "cosine":
        learning_rate = cosine_decay(learning_rate, total_updates)
    elif schedule != "constant":
        raise ConfigError(f"unknown lr_schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if name == "sgd":
        opt = optax.sgd(learning_rate)
    elif name in ("momentum", "nesterov") and compensation != "none":
        workers = num_workers if compensation == "workers" else None
        trace = compensated_momentum(
            momentum, num_workers=workers, prior_staleness=prior_staleness, nesterov=name == "nesterov"
        )
        opt = optax.chain(trace, optax.scale_by_learning_rate(learning_rate))
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
