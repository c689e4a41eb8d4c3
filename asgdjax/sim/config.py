"""Config -> simulator pieces (delay model, schedule, server factory), and validation of the async keys."""

from __future__ import annotations

import jax

from asgdjax.config_checks import choice, int_at_least
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.optim import make_optimizer
from asgdjax.rules import RULES, make_rule
from asgdjax.server import Server
from asgdjax.sim.protocol import Protocol
from asgdjax.sim.schedule import PROTOCOLS, make_schedule
from asgdjax.sim.trace import Trace


def validate_async(config) -> None:
    """Check the asynchrony keys (mode=sim/async); raises ConfigError naming the first bad value."""
    choice("protocol", config.protocol, PROTOCOLS)
    choice("rule", config.rule, RULES)
    for key in ("n_fetch", "n_push", "softsync_n"):
        int_at_least(key, config[key], 1, "a positive integer")
    int_at_least("max_staleness", config.max_staleness, -1, "-1 (unbounded) or >= 0")
    int_at_least("warm_start_steps", config.warm_start_steps, 0, "an integer >= 0")
    choice("sim_strategy", config.sim_strategy, ("auto", "sequential", "waves"))
    int_at_least("sim_chunk", config.sim_chunk, 0, "0 (automatic) or a positive integer")
    if config.protocol == "softsync" and config.softsync_n > config.num_workers:
        raise ConfigError(
            f"softsync_n={config.softsync_n} is not allowed with num_workers={config.num_workers}; use 1..num_workers"
        )
    if config.protocol == "softsync" and config.max_staleness >= 0:
        raise ConfigError("max_staleness is not allowed with protocol='softsync'; use -1 or protocol='async'")
    faults = parse_faults(config.fail_at)
    bad = [w for w, _ in faults if not 0 <= w < config.num_workers]
    if bad:
        raise ConfigError(f"fail_at names worker {bad[0]}; allowed: 0..{config.num_workers - 1}")
    int_at_least("max_worker_failures", config.max_worker_failures, 0, "an integer >= 0")
    choice("backend", config.backend, ("local", "ray"))
    if config.backend == "ray":
        validate_ray(config)
    if not isinstance(config.worker_timeout, (int, float)) or config.worker_timeout < 0:
        raise ConfigError(f"worker_timeout={config.worker_timeout!r} is not allowed; use seconds >= 0 (0 = none)")
    int_at_least("staleness_cap", config.staleness_cap, -1, "-1 (no cap) or >= 0")
    choice("sim_memory", config.sim_memory, ("auto", "workers", "ring"))
    delays = DelayModel.from_config(config.delay)
    if memory(config) == "ring" and (config.n_fetch > 1 or config.n_push > 1 or group_size(config) > 1):
        raise ConfigError(
            "the version ring (sim_memory='ring', or delay.kind='uniform_staleness') replays plain A-SGD only; "
            "use n_fetch=1, n_push=1, protocol='async', max_staleness=-1"
        )
    if delays.kind == "uniform_staleness" and config.sim_memory == "workers":
        raise ConfigError("delay.kind='uniform_staleness' needs sim_memory='ring' (or 'auto')")


def validate_ray(config) -> None:
    """backend=ray: real workers only, one device per actor, Ray installed, sane resources."""
    if config.mode != "async":
        raise ConfigError(f"backend='ray' is not allowed with mode={config.mode!r}; use mode='async'")
    if config.model_parallel > 1:
        raise ConfigError("backend='ray' runs one device per actor; use model_parallel=1 (or backend='local')")
    for key in ("ray_cpus_per_worker", "ray_gpus_per_worker"):
        if not isinstance(config[key], (int, float)) or config[key] < 0:
            raise ConfigError(f"{key}={config[key]!r} is not allowed; use a number >= 0")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("backend='ray' needs Ray: pip install 'asgdjax[ray]'") from None


def parse_faults(spec: str) -> dict[tuple[int, int], str]:
    """--config.fail_at="1:3,2:5:hang" -> {(1, 3): "raise", (2, 5): "hang"}."""
    faults = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        parts = item.split(":")
        try:
            kind = parts[2] if len(parts) == 3 else "raise"
            if len(parts) not in (2, 3) or kind not in ("raise", "hang"):
                raise ValueError
            faults[(int(parts[0]), int(parts[1]))] = kind
        except ValueError:
            raise ConfigError(f"fail_at item {item!r} is not allowed; use worker:step or worker:step:hang") from None
    return faults


def memory(config) -> str:
    """workers (one copy per worker) unless the ring is asked for or the delay model needs it."""
    if config.sim_memory != "auto":
        return config.sim_memory
    return "ring" if config.delay.kind == "uniform_staleness" else "workers"


def schedule_from_config(config) -> Trace:
    """The run's schedule, a pure function of the config (same config, same trace)."""
    return make_schedule(
        jax.random.key(config.seed + 2),
        config.num_workers,
        config.steps,
        DelayModel.from_config(config.delay),
        protocol=config.protocol,
        softsync_n=config.softsync_n,
        max_staleness=config.max_staleness,
        n_fetch=config.n_fetch,
        n_push=config.n_push,
        warm_start_steps=config.warm_start_steps,
        failures=list(parse_faults(config.fail_at)),
    )


def protocol_from_config(config) -> Protocol:
    """The server protocol state machine of this config (what the runtime's coordinator drives)."""
    return Protocol(
        config.num_workers,
        config.steps,
        group=group_size(config) if config.protocol == "softsync" else 1,
        max_staleness=0 if config.protocol == "sync" else config.max_staleness,
        n_fetch=config.n_fetch,
        n_push=config.n_push,
        warm_start_steps=config.warm_start_steps,
    )


def expected_updates(config) -> int:
    """Server updates this protocol makes for config.steps gradients when no worker waits on the SSP bound."""
    pushes = max(1, config.steps // config.n_push)
    if config.protocol == "sync":
        return max(1, -(-pushes // config.num_workers))
    if config.protocol == "softsync":
        return max(1, -(-pushes // group_size(config)))
    return pushes


def group_size(config) -> int:
    """Most gradients one server update can take under this protocol."""
    if config.protocol == "softsync":
        return max(1, config.num_workers // config.softsync_n)
    if config.protocol == "sync" or config.max_staleness >= 0:
        return config.num_workers
    return 1


def server_factory(config, total_updates: int):
    """hparams -> Server: the rule and optimizer of this config, learning rate taken from hparams."""

    def make(hparams: dict) -> Server:
        rule = make_rule(config.rule, config.num_workers, config.rule_lambda)
        opt = make_optimizer(
            config.optimizer,
            hparams["learning_rate"],
            config.momentum,
            config.weight_decay,
            config.lr_schedule,
            total_updates,
        )
        return Server(rule, opt, num_workers=config.num_workers, staleness_cap=config.staleness_cap)

    return make


def hparams_from_config(config) -> dict:
    llr = config.local_learning_rate if config.local_learning_rate >= 0 else config.learning_rate
    return {"learning_rate": float(config.learning_rate), "local_learning_rate": float(llr)}
