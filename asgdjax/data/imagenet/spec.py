"""What ILSVRC-2012 is to asgdjax: its DatasetSpec, the archive names of TFDS's manual route, and the label
files that ship inside the tensorflow_datasets package (read as text, so nothing heavy is imported)."""

from __future__ import annotations

import functools
import importlib.util
import os

from asgdjax.data.registry import DATASETS, DatasetSpec
from asgdjax.errors import ConfigError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
NUM_VALIDATION = 50_000  # ILSVRC2012_val_00000001.JPEG .. ILSVRC2012_val_00050000.JPEG
SPLITS = ("train", "validation")

IMAGENET_SPEC: DatasetSpec = DATASETS["imagenet2012"]  # registered with the others (asgdjax.data.registry)

# Where TFDS keeps its copies (the first is TFDS >= 4.9's layout, the second older releases').
_LABEL_FILES = {
    "labels": ("datasets/imagenet2012/labels.txt", "image_classification/imagenet2012_labels.txt"),
    "validation": (
        "datasets/imagenet2012/validation_labels.txt",
        "image_classification/imagenet2012_validation_labels.txt",
    ),
}


def tfds_label_file(kind: str) -> str:
    """Path of TFDS's `labels` (1,000 synsets, label order) or `validation` (50,000 synsets by image number)."""
    found = importlib.util.find_spec("tensorflow_datasets")
    roots = list(found.submodule_search_locations or []) if found else []
    for root in roots:
        for rel in _LABEL_FILES[kind]:
            if os.path.isfile(os.path.join(root, rel)):
                return os.path.join(root, rel)
    raise ConfigError(
        f"tensorflow_datasets has no ImageNet {kind} label file ({_LABEL_FILES[kind][0]}); install tensorflow-datasets"
    )


@functools.cache
def synsets() -> tuple[str, ...]:
    """The 1,000 synset ids in label order (label i is synsets()[i]), as TFDS's imagenet2012 numbers them."""
    return tuple(_read_lines(tfds_label_file("labels")))


@functools.cache
def validation_synsets() -> tuple[str, ...]:
    """Synset of validation image k (ILSVRC2012_val_%08d.JPEG) at position k - 1."""
    return tuple(_read_lines(tfds_label_file("validation")))


def _read_lines(path: str) -> list[str]:
    with open(path) as f:
        return f.read().strip().splitlines()
