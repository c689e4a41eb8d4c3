"""Every config value is checked before any work starts; a bad one raises ConfigError naming it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from asgdjax.config_checks import choice, dotted, finite_positive, int_at_least
from asgdjax.core.sampling import SAMPLERS
from asgdjax.data import DATASETS
from asgdjax.data.registry import STREAMED
from asgdjax.errors import ConfigError
from asgdjax.models import DTYPES, MODELS
from asgdjax.optim import COMPENSATIONS, OPTIMIZERS, SCHEDULES

MODES = ("sync", "sim", "async")


def validate(config) -> None:
    """Raise ConfigError for the first bad value (one line: the key, the value, what is allowed)."""
    check_known_keys(config)
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


# Keys (top-level; "delay" covers delay.*) that only some modes read, by base.py's sections.
SIM_ONLY = ("trace", "sim_strategy", "sim_memory", "sim_chunk", "delay")
ASYNC_ONLY = ("backend", "devices", "ray_address", "ray_cpus_per_worker", "ray_gpus_per_worker", "worker_timeout")
NOT_SYNC = (
    *("num_workers", "protocol", "softsync_n", "max_staleness", "n_fetch", "n_push", "local_learning_rate"),
    *("warm_start_steps", "rule", "rule_lambda", "staleness_cap", "max_worker_failures", "fail_at"),
    *SIM_ONLY,
    *ASYNC_ONLY,
)


class Reader(NamedTuple):
    """A key read only when another setting says so: `reads(config)`, described as `by`; `now` names the
    setting that makes this run ignore it."""

    key: str
    reads: Callable[[Any], bool]
    by: str
    now: Callable[[Any], str]


MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")
READ_WHEN = (
    *(
        Reader(
            k,
            lambda c: c.optimizer in MOMENTUM_OPTIMIZERS,
            "optimizer=momentum or nesterov",
            lambda c: f"optimizer={c.optimizer}",
        )
        for k in ("momentum", "momentum_compensation")
    ),
    Reader(
        "local_learning_rate",
        lambda c: c.n_fetch > 1 or c.n_push > 1,
        "Downpour (n_fetch or n_push > 1)",
        lambda c: f"n_fetch={c.n_fetch}, n_push={c.n_push}",
    ),
    Reader("softsync_n", lambda c: c.protocol == "softsync", "protocol=softsync", lambda c: f"protocol={c.protocol}"),
    Reader(
        "rule_lambda",
        lambda c: c.rule.startswith("dc_asgd"),
        "rule=dc_asgd or dc_asgd_adaptive",
        lambda c: f"rule={c.rule}",
    ),
    Reader(
        "delay.spread",
        lambda c: c.delay.kind in ("uniform", "lognormal"),
        "delay.kind=uniform or lognormal",
        lambda c: f"delay.kind={c.delay.kind}",
    ),
    Reader(
        "delay.staleness_bound",
        lambda c: c.delay.kind == "uniform_staleness",
        "delay.kind=uniform_staleness",
        lambda c: f"delay.kind={c.delay.kind}",
    ),
    Reader(
        "delay.straggler_factor",
        lambda c: c.delay.straggler_prob > 0,
        "delay.straggler_prob > 0",
        lambda c: f"delay.straggler_prob={c.delay.straggler_prob}",
    ),
)


def unused_settings(config, given: list[str]) -> list[str]:
    """What this run ignores of what the user asked for (`given`: the --config.KEY names on the command line),
    one note line each, so a setting never goes unused without a word; also a warm start as long as the
    run, which leaves no step asynchronous."""
    notes = []
    ignored = {"sync": NOT_SYNC, "sim": ASYNC_ONLY, "async": SIM_ONLY}.get(config.mode, ())
    for key in dict.fromkeys(given):
        top = key.split(".")[0]
        if top in ignored:
            where = "async" if top in ASYNC_ONLY else "sim" if top in SIM_ONLY else "sim and mode=async"
            notes.append(f"--config.{key} is read by mode={where} only; this mode={config.mode} run ignores it")
    for r in READ_WHEN:
        if r.key in given and r.key.split(".")[0] not in ignored and not r.reads(config):
            notes.append(f"--config.{r.key} is read by {r.by} only; this run's {r.now(config)} ignores it")
    spec = DATASETS.get(config.dataset)
    if "augment" in given and config.augment and spec is not None and not spec.augment:
        natural = ", ".join(n for n, s in sorted(DATASETS.items()) if s.augment)
        notes.append(f"--config.augment=true does nothing on {config.dataset} (crop + flip is for {natural})")
    if "eval_examples" in given and config.eval_examples and config.dataset not in STREAMED:
        notes.append(
            f"--config.eval_examples is read for streamed datasets ({', '.join(STREAMED)}) only; {config.dataset} "
            "is held in memory and every evaluation scores its whole test split"
        )
    if config.mode != "sync" and config.num_workers > 1 and config.warm_start_steps >= config.steps:
        notes.append(
            f"warm_start_steps={config.warm_start_steps} covers all steps={config.steps}: worker 0 trains alone "
            "throughout and no step is asynchronous; lower --config.warm_start_steps (0 = no warm start)"
        )
    return notes


def check_known_keys(config) -> None:
    """Every key of the config is one of base.py's: a misspelt key in a config file would otherwise be carried
    into config.json and never read (the command line's --config.KEY is checked by the CLI the same way)."""
    import difflib

    from asgdjax.configs.base import base_config

    known = dotted(base_config().to_dict())
    for key in dotted(config.to_dict()):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.7)
            hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
            raise ConfigError(
                f"the config sets unknown key {key!r}{hint}; allowed: the keys of asgdjax/configs/base.py "
                "(asgdjax-train --help lists them)"
            )
