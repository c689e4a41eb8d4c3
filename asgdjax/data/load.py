"""Prepare a dataset as TFDS array_record and read it back through `tfds` data sources (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile

import numpy as np

from asgdjax.data.registry import DATASETS, DatasetSpec, default_data_dir
from asgdjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A whole small dataset in host memory: uint8 NHWC images and int32 labels per split."""

    spec: DatasetSpec
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def num_train(self) -> int:
        return len(self.train_labels)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def builder_for(name: str, data_dir: str | None = None, npz: str | None = None):
    from asgdjax.data import builders

    spec = get_spec(name)
    builder_cls = getattr(builders, spec.builder)
    builder = builder_cls(data_dir=data_dir or default_data_dir(), file_format="array_record")
    builder.npz_path = npz
    return builder


def is_prepared(name: str, data_dir: str | None = None) -> bool:
    builder = builder_for(name, data_dir)
    return os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json"))


def prepare(name: str, data_dir: str | None = None, npz: str | None = None) -> str:
    """Build the TFDS array_record files for `name` (from `npz` for mnist/cifar10); returns their folder."""
    spec = get_spec(name)
    if not spec.embedded:
        if not npz:
            raise ConfigError(f"dataset {name!r} needs --npz=PATH to prepare offline; e.g. {spec.prepare_hint}")
        if not os.path.exists(npz):
            raise ConfigError(f"--npz={npz!r} does not exist; e.g. {spec.prepare_hint}")
    builder = builder_for(name, data_dir, npz)
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    try:
        builder.download_and_prepare(file_format="array_record")
    finally:
        _remove_empty_tfds_tmpdirs()
    return str(builder.data_dir)


def load_dataset(name: str, data_dir: str | None = None) -> ArrayDataset:
    """Read both splits into memory; the embedded `digits` is prepared on first use, others must be."""
    spec = get_spec(name)
    if not is_prepared(name, data_dir):
        if not spec.embedded:
            where = data_dir or default_data_dir()
            raise ConfigError(f"dataset {name!r} is not prepared in {where!r}; prepare it with: {spec.prepare_hint}")
        prepare(name, data_dir)
    builder = builder_for(name, data_dir)
    splits = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        items = source.__getitems__(range(len(source)))
        images = np.stack([it["image"] for it in items]).astype(np.uint8)
        labels = np.asarray([it["label"] for it in items], np.int32)
        splits[split] = (images, labels)
    return ArrayDataset(spec, *splits["train"], *splits["test"])


def _remove_empty_tfds_tmpdirs() -> None:
    """TFDS leaves empty tmp*tfds folders in $TMPDIR after preparing; tidy them."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "tmp*tfds")):
        if os.path.isdir(path) and not os.listdir(path):
            shutil.rmtree(path, ignore_errors=True)
