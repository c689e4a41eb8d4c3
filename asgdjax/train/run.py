"""The one trainer: config -> sync | sim | async run -> metrics.jsonl, summary.json, checkpoints."""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import jax

from asgdjax.core.health import CollapseDetector
from asgdjax.data import ArrayDataset, StreamingDataset, load_dataset
from asgdjax.errors import ConfigError
from asgdjax.models import check_input, get_model, param_count
from asgdjax.parallel import Placement, group_devices
from asgdjax.parallel.placement import bytes_per_device
from asgdjax.runtime.ray_workers import check_ray_address
from asgdjax.train import tensorboard
from asgdjax.train.build import optimizer_from_config, sampler_from_config
from asgdjax.train.loop import RunContext, final_health
from asgdjax.train.outputs import Checkpoints, MetricsWriter, write_json
from asgdjax.train.sizes import check_memory
from asgdjax.train.task import ClassificationTask, device_data, make_task
from asgdjax.train.validate import validate
from asgdjax.train.workdir import Workdir, check_location


class RunSetup(NamedTuple):
    """Everything checked and built before the workdir is touched."""

    dataset: ArrayDataset | StreamingDataset
    task: ClassificationTask
    placement: Placement
    optimizer: Any


def train(config, workdir: str, show_progress: bool = True) -> dict:
    """Run `config` in `workdir` (resuming what is there) and return the summary written to summary.json.

    Order matters: the config, the workdir's location, the data, the batch against each worker's shard, a
    replayed trace and the memory the run needs are all checked before anything is written, so a refused
    start leaves the workdir as it was; then the workdir is locked for the run.
    """
    setup = _checked(config, workdir)
    with Workdir(workdir) as wd:
        wd.check_resumable(config.to_dict())
        done = wd.complete_summary(config.steps)
        if done is not None:
            return {**done, "already_complete": True}
        try:
            return _train_in(wd, config, setup, show_progress)
        finally:
            if isinstance(setup.dataset, StreamingDataset):
                setup.dataset.close()


def check(config, workdir: str) -> str:
    """Everything `train` checks before writing (config, workdir, data, shards, trace, memory), and nothing
    else: what would run, in a line."""
    setup = _checked(config, workdir, write=False)
    if isinstance(setup.dataset, StreamingDataset):
        setup.dataset.close()
    wd = Workdir(workdir)  # what the real run's lock and resume would say, without taking either
    if (holder := wd.holder()) is not None:
        raise wd.busy(holder)
    wd.check_resumable(config.to_dict())
    if wd.complete_summary(config.steps) is not None:
        return f"{os.path.abspath(workdir)} holds this run, complete at {config.steps} steps: nothing would run"
    plural = "" if config.num_workers == 1 else "s"
    workers = "" if config.mode == "sync" else f", {config.num_workers} worker{plural} ({config.protocol})"
    return (
        f"mode={config.mode}{workers}, {config.model} on {config.dataset} ({setup.dataset.num_train} training "
        f"examples), {config.steps} gradients of {config.batch_size}, into {os.path.abspath(workdir)}"
    )


def _checked(config, workdir: str, *, write: bool = True) -> RunSetup:
    """The config's values, this host's devices split as asked, the workdir's location, then the run's parts."""
    validate(config)
    if config.cpu_devices:
        _force_cpu_devices(config.cpu_devices)
    check_location(workdir)
    return prepare(config, write=write)


def prepare(config, *, write: bool = True) -> RunSetup:
    """Load and check everything the run needs (no file is written, but the embedded set's prepared copy
    unless `write` is False)."""
    dataset = load_dataset(config.dataset, config.data_dir or None, workers=config.data_workers, write=write)
    spec = dataset.spec
    model = get_model(config.model, spec.num_classes, spec.image_shape, dtype=config.dtype)
    check_input(model, config.model, config.dataset)
    task = make_task(model, dataset, augment=config.augment, eval_examples=config.eval_examples)
    sampler_from_config(config, dataset.num_train)  # batch_size against every worker's shard
    if config.mode == "sim" and config.trace:
        from asgdjax.train.sim import load_trace

        load_trace(config)
    check_memory(config, task, dataset)
    if config.mode == "async":  # the workers' devices (config.devices) exist and are enough
        group_devices(config.num_workers, config.model_parallel, config.devices)
        if config.backend == "ray" and config.ray_address:
            check_ray_address(config.ray_address)
    # Parameters (and everything shaped like them) live sharded over the first model_parallel devices.
    placement = Placement.for_task(task, group_devices(1, config.model_parallel)[0])
    optimizer = optimizer_from_config(config, config.learning_rate, config.steps)
    return RunSetup(dataset, task, placement, optimizer)


def _train_in(wd: Workdir, config, setup: RunSetup, show_progress: bool) -> dict:
    dataset, task, placement = setup.dataset, setup.task, setup.placement
    write_json(wd.file("config.json"), config.to_dict())
    ctx = RunContext(
        config=config,
        workdir=wd.path,
        task=task,
        dataset=dataset,
        data=device_data(dataset, placement.replicated),
        placement=placement,
        optimizer=setup.optimizer,
        writer=MetricsWriter(wd.path),
        checkpoints=Checkpoints(wd.path),
        show_progress=show_progress,
        collapse=CollapseDetector(num_classes=dataset.spec.num_classes),
    )
    if config.tensorboard and tensorboard.available():
        ctx.extra_writers.append(tensorboard.TensorBoardWriter(wd.path))
    try:
        result = _run_mode(ctx)
    finally:
        ctx.checkpoints.close()
        ctx.writer.close()
        for w in ctx.extra_writers:
            w.close()
    summary = _summary(ctx, result)
    write_json(wd.file("summary.json"), summary)
    return summary


def _summary(ctx: RunContext, result: dict) -> dict:
    """What summary.json says about a finished run (the mode adds its own fields)."""
    config, workdir = ctx.config, ctx.workdir
    wall = time.time() - ctx.started
    final = ctx.last_eval or ctx.evaluate(result["params"])
    steps_run = config.steps - ctx.resumed_from
    train_seconds = max(wall - ctx.eval_seconds, 1e-9)
    return {
        "mode": config.mode,
        "dataset": config.dataset,
        "model": config.model,
        "dtype": config.dtype,
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
        "health": final_health(ctx),
        **result.get("summary", {}),
    }


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
