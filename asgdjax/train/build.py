"""Config -> run pieces (protocol spec, schedule, server factory, sampler, keys), and checks of the
asynchrony keys. The one place a config is read into the core's types."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from asgdjax.config_checks import choice, int_at_least
from asgdjax.core.keys import RunKeys, run_keys
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import SAMPLERS, make_sampler
from asgdjax.core.server import Server
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.optim import make_optimizer
from asgdjax.rules import RULES, choose, make_rule
from asgdjax.sim import STRATEGIES, continue_schedule, make_schedule


def validate_async(config: Any) -> None:
    """Check the asynchrony keys (mode=sim/async); raises ConfigError naming the first bad value."""
    spec = ProtocolSpec.from_config(config)  # checks protocol, n_fetch, n_push, softsync_n, bound, warm start
    choice("rule", config.rule, RULES)
    if not (isinstance(config.rule_lambda, (int, float)) and 0 <= config.rule_lambda < float("inf")):
        raise ConfigError(f"rule_lambda={config.rule_lambda!r} is not allowed; use a number >= 0")
    lr = config.local_learning_rate
    if not (isinstance(lr, (int, float)) and -float("inf") < lr < float("inf")):
        raise ConfigError(f"local_learning_rate={lr!r} is not allowed; use a finite number (< 0: the learning_rate)")
    choice("sim_strategy", config.sim_strategy, STRATEGIES)
    int_at_least("sim_chunk", config.sim_chunk, 0, "0 (automatic) or a positive integer")
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
    delays = delay_from_config(config)
    delays.check_workers(config.num_workers, shown=repr(config.delay.speeds))
    if memory(config) == "ring" and (spec.local_updates or spec.group_size > 1):
        raise ConfigError(
            "the version ring (sim_memory='ring', or delay.kind='uniform_staleness') replays plain A-SGD only; "
            "use n_fetch=1, n_push=1, protocol='async', max_staleness=-1"
        )
    if delays.kind == "uniform_staleness" and config.sim_memory == "workers":
        raise ConfigError("delay.kind='uniform_staleness' needs sim_memory='ring' (or 'auto')")


def validate_ray(config: Any) -> None:
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
    for item in filter(None, (x.strip() for x in str(spec).split(","))):
        parts = item.split(":")
        try:
            kind = parts[2] if len(parts) == 3 else "raise"
            if len(parts) not in (2, 3) or kind not in ("raise", "hang"):
                raise ValueError
            faults[(int(parts[0]), int(parts[1]))] = kind
        except ValueError:
            raise ConfigError(f"fail_at item {item!r} is not allowed; use worker:step or worker:step:hang") from None
    return faults


def memory(config: Any) -> str:
    """workers (one copy per worker) unless the ring is asked for or the delay model needs it."""
    if config.sim_memory != "auto":
        return config.sim_memory
    return "ring" if config.delay.kind == "uniform_staleness" else "workers"


def keys(config: Any) -> RunKeys:
    """Every stream of the run (init, data, schedule, sampler) from the one root key of config.seed."""
    return run_keys(config.seed)


def sampler_from_config(config: Any, num_examples: int):
    """The run's sampler (`config.sampler`: shards or replacement), seeded from the root key."""
    choice("sampler", config.sampler, SAMPLERS)
    workers = config.num_workers if config.mode != "sync" else 1
    return make_sampler(
        config.sampler,
        num_examples=num_examples,
        batch_size=config.batch_size,
        seed=keys(config).sampler_seed,
        num_workers=workers,
    )


def schedule_from_config(config: Any) -> Trace:
    """The run's schedule, a pure function of the config (same config, same trace)."""
    return make_schedule(
        keys(config).schedule,
        ProtocolSpec.from_config(config),
        num_steps=config.steps,
        delays=delay_from_config(config),
        failures=list(parse_faults(config.fail_at)),
    )


def continued_schedule(config: Any, done: Trace) -> Trace:
    """The schedule of a run whose steps were raised after the events `done` its checkpoint holds: those
    events, then every worker restarting from the server's parameters (asgdjax.sim.continue_schedule)."""
    try:
        return continue_schedule(
            keys(config).schedule,
            ProtocolSpec.from_config(config),
            done,
            num_steps=config.steps,
            delays=delay_from_config(config),
            failures=list(parse_faults(config.fail_at)),
        )
    except ValueError:
        raise ConfigError(
            f"the workdir's checkpoint (event {len(done)}) falls inside a {config.protocol} server group, so "
            f"steps={config.steps} cannot continue it; give the steps it was run with, or a new --workdir"
        ) from None


def delay_from_config(config: Any) -> DelayModel:
    """The simulated workers' clock; payload_bytes < 0 becomes the model's float32 parameter bytes (only
    computed when a bandwidth makes it matter)."""
    delays = DelayModel.from_config(config.delay)
    if delays.payload_bytes < 0:
        links = delays.worker_bandwidth or delays.server_bandwidth
        delays = delays.with_payload(model_bytes(config) if links else 0.0)
    return delays


def model_bytes(config: Any) -> int:
    """Bytes of the config's model parameters in float32 (what a push or a fetch moves)."""
    import jax

    from asgdjax.data import get_spec
    from asgdjax.models import get_model

    spec = get_spec(config.dataset)
    model = get_model(config.model, spec.num_classes, spec.image_shape, dtype=config.dtype)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return sum(int(x.size) * 4 for x in jax.tree.leaves(shapes))


def optimizer_from_config(
    config: Any, learning_rate: Any, total_updates: Any, num_workers: int = 1, momentum: Any = None
):
    """The server-side optimizer of this config (learning rate and momentum given: a sweep passes traced
    ones, one per configuration)."""
    prior = ProtocolSpec.from_config(config).expected_staleness if num_workers > 1 else None
    return make_optimizer(
        config.optimizer,
        learning_rate,
        momentum=config.momentum if momentum is None else momentum,
        weight_decay=config.weight_decay,
        schedule=config.lr_schedule,
        total_updates=total_updates,
        compensation=config.momentum_compensation,
        num_workers=num_workers,
        prior_staleness=prior,
    )


def server_factory(config: Any, total_updates: int, *, rules: Sequence[str] = ()) -> Callable[[dict], Server]:
    """hparams -> Server: the rule and optimizer of this config, learning rate taken from hparams (and the
    learning-rate schedule's length too where hparams has SCHEDULE_UPDATES: one program, any run length).
    rules: compile all of these instead of config.rule, hparams[RULE_INDEX] choosing one (a search over
    rules then shares one program)."""

    def make(hparams: dict) -> Server:
        names = rules or (config.rule,)
        each = [make_rule(r, config.num_workers, config.rule_lambda) for r in names]
        rule = choose(each, hparams[RULE_INDEX]) if rules else each[0]
        lr, mu = hparams["learning_rate"], hparams.get("momentum")
        total = hparams.get(SCHEDULE_UPDATES, total_updates)
        opt = optimizer_from_config(config, lr, total, config.num_workers, momentum=mu)
        return Server(rule, opt, num_workers=config.num_workers, staleness_cap=config.staleness_cap)

    return make


SCHEDULE_UPDATES = "schedule_updates"  # optional hparams key: the decaying schedule's length, as data
RULE_INDEX = "rule_index"  # hparams key of a server_factory(rules=...): which of its rules applies


def hparams_from_config(config: Any) -> dict[str, float]:
    """The hyperparameters the simulator and the runtime take as data (a sweep vmaps over them)."""
    llr = config.local_learning_rate if config.local_learning_rate >= 0 else config.learning_rate
    return {
        "learning_rate": float(config.learning_rate),
        "local_learning_rate": float(llr),
        "momentum": float(config.momentum),
    }
