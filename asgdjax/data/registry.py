"""Which datasets exist, their shapes, and how to get them prepared (one place for names and messages)."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    builder: str  # class name in asgdjax.data.builders (imported lazily: TFDS loads only when data is read)
    image_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]  # per-channel, on the 0..1 scale, for input normalisation
    std: tuple[float, ...]
    embedded: bool  # prepared automatically on first use (ships with the installed packages)
    prepare_hint: str
    augment: bool  # random crop + flip is meaningful (natural images)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "digits", "AsgdDigits", (8, 8, 1), 10, (0.305,), (0.376,), True, "prepared automatically", False
    ),
    "mnist": DatasetSpec(
        "mnist",
        "AsgdMnist",
        (28, 28, 1),
        10,
        (0.1307,),
        (0.3081,),
        False,
        "asgdjax-prepare --dataset=mnist --npz=../shared/data/mnist.npz",
        False,
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        "AsgdCifar10",
        (32, 32, 3),
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        False,
        "asgdjax-prepare --dataset=cifar10 --npz=../shared/data/cifar10_jpeg_q75.npz",
        True,
    ),
}


def default_data_dir() -> str:
    """$TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
