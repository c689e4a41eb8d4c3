"""Shared benchmark plumbing: a task on real data when prepared (synthetic of the same shape otherwise),
best-of-N timing, and the one-line JSON every benchmark prints last."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from asgdjax.core.protocol import ProtocolSpec  # noqa: E402
from asgdjax.data import ArrayDataset, DatasetSpec, get_spec, is_prepared, load_dataset  # noqa: E402
from asgdjax.delays import DelayModel  # noqa: E402
from asgdjax.models import get_model  # noqa: E402
from asgdjax.sim import make_schedule  # noqa: E402
from asgdjax.train.task import ClassificationTask, device_data  # noqa: E402

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
NPZ = {"mnist": "mnist.npz", "cifar10": "cifar10_jpeg_q75.npz"}
IMAGENET_SPEC = DatasetSpec(
    "imagenet2012", "", (224, 224, 3), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False, "", True
)


def bench_task(dataset: str, model: str) -> tuple[ClassificationTask, dict, ArrayDataset, str]:
    """(task, device data, dataset, where the data came from): prepared TFDS data, else ../shared/data, else
    synthetic arrays of the dataset's shape (timings do not depend on pixel values)."""
    spec = get_spec(dataset)
    source = "tfds"
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:  # e.g. a GPU image without TFDS: timings do not depend on pixel values
        source = "synthetic"
    if source == "tfds" and not is_prepared(dataset) and not spec.embedded:
        npz = os.path.join(SHARED, NPZ.get(dataset, ""))
        if os.path.exists(npz):
            from asgdjax.data import prepare

            prepare(dataset, None, npz)
        else:
            source = "synthetic"
    if source == "synthetic":
        rng = np.random.default_rng(0)
        shape = spec.image_shape
        ds = ArrayDataset(
            spec,
            rng.integers(0, 256, (10000, *shape), dtype=np.uint8),
            rng.integers(0, 10, 10000).astype(np.int32),
            rng.integers(0, 256, (1000, *shape), dtype=np.uint8),
            rng.integers(0, 10, 1000).astype(np.int32),
        )
    else:
        ds = load_dataset(dataset)
    task = ClassificationTask(get_model(model, spec.num_classes, spec.image_shape), spec, augment=False)
    return task, device_data(ds), ds, source


def alexnet_task(n: int):
    """(task, device data, params) for AlexNet on n synthetic 224x224 images held on the device."""
    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        IMAGENET_SPEC,
        rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8),
        rng.integers(0, 1000, n).astype(np.int32),
        np.zeros((1, 224, 224, 3), np.uint8),
        np.zeros(1, np.int32),
    )
    task = ClassificationTask(get_model("alexnet", 1000, (224, 224, 3)), IMAGENET_SPEC, augment=False)
    return task, device_data(ds), task.init(jax.random.key(0))


def plain_sgd_loop(task, optimizer, params, data, batches, key):
    """The baseline a user would write: a Python loop of one jitted step (gradient + optimizer update).

    Returns a function that trains from `params` over `batches` (a sequence of index arrays) and blocks.
    """
    from asgdjax.core.task import batch_key
    from asgdjax.train.sync import make_sync_step

    step = make_sync_step(task, optimizer)

    def run():
        p, o = jax.tree.map(jnp.array, params), optimizer.init(params)
        for s, idx in enumerate(batches):
            p, o, _ = step(p, o, data, idx, batch_key(key, 0, s))
        jax.block_until_ready(p)

    return run


def schedule(seed: int, k: int, steps: int, delays: DelayModel = DelayModel("exponential"), **protocol):
    """(spec, trace): a K-worker schedule of `steps` gradients under `protocol` (ProtocolSpec keywords)."""
    spec = ProtocolSpec(num_workers=k, **protocol)
    return spec, make_schedule(jax.random.key(seed), spec, num_steps=steps, delays=delays)


def coordinator(task, make_server, hp: dict, spec, devices: list, data, sampler, key, **kw):
    """A Coordinator for `spec`'s workers on `devices` (host copies of the data go to each device group)."""
    from asgdjax.runtime import Coordinator

    host = jax.tree.map(np.asarray, data)
    return Coordinator(task, make_server, hp, spec, devices=devices, data=host, sampler=sampler, data_key=key, **kw)


def best_time(fn, repeats: int = 3) -> float:
    """Best wall time of `fn()` over `repeats` runs (fn must block until its work is done)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine() -> dict:
    return {
        "platform": jax.devices()[0].platform,
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


def emit(result: dict) -> None:
    """Print the result as the benchmark's last line (one JSON object)."""
    print(json.dumps({**result, "machine": machine()}))
