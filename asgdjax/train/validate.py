"""Every config value is checked before any work starts; a bad one raises ConfigError naming it."""

from __future__ import annotations

import math

from asgdjax.data import DATASETS
from asgdjax.errors import ConfigError
from asgdjax.models import MODELS
from asgdjax.optim import OPTIMIZERS

MODES = ("sync", "sim", "async")


def validate(config) -> None:
    """Raise ConfigError for the first bad value (one line: the key, the value, what is allowed)."""
    _choice("mode", config.mode, MODES)
    _choice("dataset", config.dataset, tuple(sorted(DATASETS)))
    _choice("model", config.model, tuple(sorted(MODELS)))
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    for key in ("batch_size", "steps", "eval_every", "log_every", "checkpoint_every", "num_workers"):
        _positive_int(key, config[key])
    _finite_positive("learning_rate", config.learning_rate)
    _finite_positive("max_train_loss", config.max_train_loss)
    if isinstance(config.cpu_devices, bool) or not isinstance(config.cpu_devices, int) or config.cpu_devices < 0:
        raise ConfigError(f"cpu_devices={config.cpu_devices!r} is not allowed; use 0 (default) or a positive integer")
    if not (isinstance(config.momentum, (int, float)) and 0 <= config.momentum < 1):
        raise ConfigError(f"momentum={config.momentum!r} is not allowed; use a number in [0, 1)")
    if not (isinstance(config.weight_decay, (int, float)) and config.weight_decay >= 0):
        raise ConfigError(f"weight_decay={config.weight_decay!r} is not allowed; use a number >= 0")
    if config.mode in ("sim", "async"):
        from asgdjax.sim.config import validate_async

        validate_async(config)


def _choice(key, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {key} {value!r}; allowed: {', '.join(allowed)}")


def _positive_int(key, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is not allowed; use a positive integer")


def _finite_positive(key, value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} is not allowed; use a finite number > 0")
