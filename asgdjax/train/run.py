"""The one trainer: config -> sync | sim | async run -> metrics.jsonl, summary.json, checkpoints."""

from __future__ import annotations

import json
import os
import time

import jax

from asgdjax.data import load_dataset
from asgdjax.errors import ConfigError
from asgdjax.models import get_model, param_count
from asgdjax.optim import make_optimizer
from asgdjax.parallel import Placement, group_devices
from asgdjax.parallel.placement import bytes_per_device
from asgdjax.train.loop import RunContext
from asgdjax.train.outputs import Checkpoints, MetricsWriter, read_json, write_json
from asgdjax.train.task import Task, device_data
from asgdjax.train.validate import validate

# Keys that may change between a run and its resumption (everything else must match the workdir's run).
RESUMABLE_CHANGES = ("steps", "eval_every", "log_every", "checkpoint_every", "data_dir", "max_train_loss")


def train(config, workdir: str, show_progress: bool = True) -> dict:
    """Run `config` in `workdir` (resuming what is there) and return the summary written to summary.json."""
    validate(config)
    if config.cpu_devices:
        _force_cpu_devices(config.cpu_devices)
    os.makedirs(workdir, exist_ok=True)
    _check_workdir_config(config, workdir)
    dataset = load_dataset(config.dataset, config.data_dir or None)
    spec = dataset.spec
    model = get_model(config.model, spec.num_classes, spec.image_shape)
    task = Task(model, spec, augment=bool(config.augment and spec.augment))
    # Parameters (and everything shaped like them) live sharded over the first model_parallel devices.
    placement = Placement.for_model(model, group_devices(1, config.model_parallel)[0])
    optimizer = make_optimizer(
        config.optimizer,
        config.learning_rate,
        config.momentum,
        config.weight_decay,
        config.lr_schedule,
        config.steps,
    )
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    ctx = RunContext(
        config=config,
        workdir=workdir,
        task=task,
        dataset=dataset,
        data=device_data(dataset, placement.replicated),
        placement=placement,
        optimizer=optimizer,
        writer=MetricsWriter(workdir),
        checkpoints=Checkpoints(workdir),
        show_progress=show_progress,
    )
    try:
        result = _run_mode(ctx)
    finally:
        ctx.checkpoints.close()
        ctx.writer.close()
    wall = time.time() - ctx.started
    final = ctx.last_eval or ctx.evaluate(result["params"])
    steps_run = config.steps - ctx.resumed_from
    train_seconds = max(wall - ctx.eval_seconds, 1e-9)
    summary = {
        "mode": config.mode,
        "dataset": config.dataset,
        "model": config.model,
        "parameters": param_count(result["params"]),
        "model_parallel": config.model_parallel,
        "parameter_bytes_per_device": bytes_per_device(result["params"]),
        "final_test_accuracy": final["test_accuracy"],
        "final_test_loss": final["test_loss"],
        "steps": config.steps,
        "updates": result["updates"],
        "gradients": result["gradients"],
        "resumed_from_step": ctx.resumed_from,
        "examples_per_second": steps_run * config.batch_size / train_seconds,
        "wall_seconds": wall,
        "eval_seconds": ctx.eval_seconds,
        "device": str(jax.devices()[0].platform),
        "workdir": os.path.abspath(workdir),
        **result.get("summary", {}),
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _run_mode(ctx: RunContext) -> dict:
    mode = ctx.config.mode
    if mode == "sync":
        from asgdjax.train.sync import run_sync

        return run_sync(ctx)
    if mode == "sim":
        from asgdjax.train.sim import run_sim

        return run_sim(ctx)
    from asgdjax.train.async_mode import run_async

    return run_async(ctx)


def _force_cpu_devices(n: int) -> None:
    """Split the host CPU into n JAX devices (must happen before JAX starts its backend)."""
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        if len(jax.devices("cpu")) != n:
            raise ConfigError(
                f"cpu_devices={n} cannot be applied: JAX already started with {len(jax.devices('cpu'))} CPU "
                f"devices; set XLA_FLAGS=--xla_force_host_platform_device_count={n} before starting"
            ) from None


def _check_workdir_config(config, workdir: str) -> None:
    """A workdir holding a run with another config is refused (nothing there is overwritten)."""
    previous = read_json(os.path.join(workdir, "config.json"))
    if previous is None:
        return
    current = json.loads(json.dumps(config.to_dict()))
    diffs = [
        k
        for k in sorted(set(previous) | set(current))
        if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k)
    ]
    if diffs:
        k = diffs[0]
        raise ConfigError(
            f"workdir {workdir!r} holds a run with {k}={previous.get(k)!r} (this config: {current.get(k)!r}); "
            "use a new --workdir or the same config to resume"
        )
