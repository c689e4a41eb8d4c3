"""Test fixtures: an isolated TFDS data dir, the digits tasks (an MLP for the fast tier, the small CNN for
the full tier), and the shared offline data when present."""

from __future__ import annotations

import os

# 8 CPU devices for the runtime and sharding tests; set before JAX starts (the 2 cores are shared).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pytest

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture(scope="session", autouse=True)
def tfds_dir(tmp_path_factory):
    """Use $TFDS_DATA_DIR if set (CI sets one), else a fresh folder for the session."""
    if not os.environ.get("TFDS_DATA_DIR"):
        os.environ["TFDS_DATA_DIR"] = str(tmp_path_factory.mktemp("tfds"))
    return os.environ["TFDS_DATA_DIR"]


@pytest.fixture(scope="session")
def digits():
    from asgdjax.data import load_dataset

    return load_dataset("digits")


def _task(digits, model):
    from asgdjax.models import get_model
    from asgdjax.train.task import ClassificationTask, device_data

    spec = digits.spec
    return ClassificationTask(get_model(model, 10, spec.image_shape), spec, augment=False), device_data(digits)


@pytest.fixture(scope="session")
def digits_task(digits):
    """(task, device data): an MLP on digits, cheap to compile and run (the fast tier's workhorse)."""
    return _task(digits, "mlp")


@pytest.fixture(scope="session")
def digits_cnn(digits):
    """(task, device data): the small CNN on digits (convolutions: the full tier)."""
    return _task(digits, "small_cnn")


def shared_npz(name: str) -> str:
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (offline data lives in ../shared/data beside the checkout)")
    return path
