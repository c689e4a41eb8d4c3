"""Optimizers by name (optax): the server-side optimizer of every mode."""

from __future__ import annotations

import optax

from asgdjax.errors import ConfigError
from asgdjax.rules import compensated_momentum

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adam")
SCHEDULES = ("constant", "cosine")
COMPENSATIONS = ("staleness", "workers", "none")


def make_optimizer(
    name: str,
    learning_rate,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    total_updates: int = 0,
    compensation: str = "none",
    num_workers: int = 1,
    prior_staleness: float | None = None,
) -> optax.GradientTransformation:
    """optax optimizer `name` with L2 weight decay added to the gradient (as cuda-convnet's wc did).

    `learning_rate` may be a traced scalar, so a vmapped sweep can build one optimizer per configuration.
    compensation (momentum and nesterov only): "staleness" shrinks the explicit momentum by the momentum
    asynchrony adds, measured from the updates' staleness; "workers" assumes K memoryless workers;
    "none" is plain optax momentum (`asgdjax.rules.compensated_momentum`, Mitliagkas et al. 2016).
    """
    if compensation not in COMPENSATIONS:
        raise ConfigError(f"unknown momentum_compensation {compensation!r}; allowed: {', '.join(COMPENSATIONS)}")
    if schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(learning_rate, max(int(total_updates), 1))
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
