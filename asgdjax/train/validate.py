"""Every config value is checked before any work starts; a bad one raises ConfigError naming it."""

from __future__ import annotations

from asgdjax.config_checks import choice, finite_positive, int_at_least
from asgdjax.core.sampling import SAMPLERS
from asgdjax.data import DATASETS
from asgdjax.errors import ConfigError
from asgdjax.models import DTYPES, MODELS
from asgdjax.optim import COMPENSATIONS, OPTIMIZERS, SCHEDULES

MODES = ("sync", "sim", "async")


def validate(config) -> None:
    """Raise ConfigError for the first bad value (one line: the key, the value, what is allowed)."""
    choice("mode", config.mode, MODES)
    choice("dataset", config.dataset, tuple(sorted(DATASETS)))
    choice("model", config.model, tuple(sorted(MODELS)))
    choice("dtype", config.dtype, DTYPES)
    choice("optimizer", config.optimizer, OPTIMIZERS)
    choice("lr_schedule", config.lr_schedule, SCHEDULES)
    choice("momentum_compensation", config.momentum_compensation, COMPENSATIONS)
    choice("sampler", config.sampler, SAMPLERS)
    for key in ("batch_size", "steps", "eval_every", "log_every", "checkpoint_every", "num_workers"):
        int_at_least(key, config[key], 1, "a positive integer")
    finite_positive("learning_rate", config.learning_rate)
    finite_positive("max_train_loss", config.max_train_loss)
    int_at_least("cpu_devices", config.cpu_devices, 0, "0 (default) or a positive integer")
    int_at_least("model_parallel", config.model_parallel, 1, "a positive integer (devices per model replica)")
    int_at_least("eval_examples", config.eval_examples, 0, "0 (the whole split) or a positive integer")
    int_at_least("data_workers", config.data_workers, 1, "a positive integer (decode processes per split)")
    if not (isinstance(config.momentum, (int, float)) and 0 <= config.momentum < 1):
        raise ConfigError(f"momentum={config.momentum!r} is not allowed; use a number in [0, 1)")
    if not (isinstance(config.weight_decay, (int, float)) and config.weight_decay >= 0):
        raise ConfigError(f"weight_decay={config.weight_decay!r} is not allowed; use a number >= 0")
    if config.mode in ("sim", "async"):
        from asgdjax.train.build import validate_async

        validate_async(config)
