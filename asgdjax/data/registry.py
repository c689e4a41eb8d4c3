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
    "imagenet2012": DatasetSpec(
        "imagenet2012",
        "AsgdImagenet2012",  # asgdjax.data.imagenet.prepare: streamed from disk, never held in memory
        (224, 224, 3),
        1000,
        (0.485, 0.456, 0.406),  # the usual ILSVRC-2012 training-set statistics, 0..1 scale, RGB
        (0.229, 0.224, 0.225),
        False,
        "asgdjax-prepare --dataset=imagenet2012 --manual_dir=FOLDER (holding ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar)",
        False,  # the random 224 crop + flip happens on the host, in ImageNetSource.load
    ),
}
STREAMED = ("imagenet2012",)  # datasets read batch by batch from disk (asgdjax.data.StreamingDataset)


def default_data_dir() -> str:
    """$TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
