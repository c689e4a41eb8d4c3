"""The memory a run will hold, estimated from its config before anything is allocated (asgdjax.core.memory)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from asgdjax.core.memory import Estimate, check_fits, simulator_bytes
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.data import ArrayDataset, StreamingDataset
from asgdjax.train.task import ClassificationTask

OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "adam": 2}


def estimate(config: Any, task: ClassificationTask, dataset: ArrayDataset | StreamingDataset) -> Estimate:
    """Bytes of the run's largest resident set: the simulator's state (sim), the workers' copies and the
    server (async, all on this host's devices), or parameters + optimizer (sync); plus the data."""
    abstract = jax.eval_shape(task.init, jax.random.key(0))
    p = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(abstract))
    data = (
        0
        if isinstance(dataset, StreamingDataset)
        else sum(
            a.nbytes for a in (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
        )
    )
    opt = OPTIMIZER_COPIES.get(config.optimizer, 2) + (config.num_workers if config.rule == "dc_asgd_adaptive" else 0)
    if config.mode == "sync":
        return Estimate((2 + opt) * p + data, {"parameters + optimizer": (2 + opt) * p, "data on the device": data})
    spec = ProtocolSpec.from_config(config)
    if config.mode == "async":  # one copy (plus accumulator) per worker, the server, the data per device group
        groups = min(config.num_workers, max(1, len(jax.devices()) // config.model_parallel))
        parts = {
            f"{config.num_workers} worker copies": config.num_workers * p * (2 if spec.local_updates else 1),
            "server": (1 + opt) * p,
            f"data on {groups} device group(s)": groups * data,
        }
        return Estimate(sum(parts.values()), parts)
    ring = config.steps if config.delay.kind == "uniform_staleness" else 0  # bounded by the staleness bound
    ring = min(ring, config.delay.staleness_bound + 1) if ring else 0
    return simulator_bytes(
        param_bytes=p,
        num_workers=config.num_workers,
        ring_depth=ring,
        local_updates=spec.local_updates,
        group_size=spec.group_size,
        optimizer_copies=opt,
        data_bytes=data,
    )


def check_memory(config: Any, task: ClassificationTask, dataset: ArrayDataset | StreamingDataset) -> None:
    """Refuse, in one line, a run that cannot fit (the estimate, its biggest part, the limit, what to do)."""
    what = f"mode={config.mode} with num_workers={config.num_workers} and model={config.model}"
    advice = "use fewer workers, sim_memory='ring' (plain A-SGD), model_parallel, or a machine with more memory"
    check_fits(estimate(config, task, dataset), what, advice=advice)
