"""Prepare a dataset as TFDS array_record and read it back through `tfds` data sources (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from asgdjax.data import array_cache
from asgdjax.data.registry import DATASETS, STREAMED, DatasetSpec, default_data_dir
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


@dataclasses.dataclass(frozen=True)
class StreamingDataset:
    """A dataset read batch by batch from disk (ILSVRC-2012): sources with `__len__` and
    `load(indices, seed=, train=)` (asgdjax.data.imagenet.ImageNetSource), never held in memory."""

    spec: DatasetSpec
    train: Any
    test: Any

    @property
    def num_train(self) -> int:
        return len(self.train)

    def close(self) -> None:
        self.train.close()
        self.test.close()


def builder_for(name: str, data_dir: str | None = None, npz: str | None = None):
    import importlib

    spec = get_spec(name)
    root = data_dir or default_data_dir()
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(f"data_dir={root!r} is a file; give a folder for TFDS's prepared datasets")
    module = "asgdjax.data.imagenet.prepare" if name in STREAMED else "asgdjax.data.builders"
    builder_cls = getattr(importlib.import_module(module), spec.builder)
    builder = builder_cls(data_dir=root, file_format="array_record")
    builder.npz_path = npz
    return builder


def is_prepared(name: str, data_dir: str | None = None) -> bool:
    builder = builder_for(name, data_dir)
    return os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json"))


def prepare(name: str, data_dir: str | None = None, npz: str | None = None, manual_dir: str | None = None) -> str:
    """Build the TFDS array_record files for `name` (from `npz` for mnist/cifar10, from the official
    archives in `manual_dir` for imagenet2012); returns their folder."""
    spec = get_spec(name)
    _check_sources(name, spec, npz, manual_dir)
    if name in STREAMED:
        if not manual_dir:
            raise ConfigError(f"dataset {name!r} needs --manual_dir=FOLDER; e.g. {spec.prepare_hint}")
        from asgdjax.data.imagenet import prepare_imagenet

        return prepare_imagenet(manual_dir, data_dir)
    if not spec.embedded:
        if not npz:
            raise ConfigError(f"dataset {name!r} needs --npz=PATH to prepare offline; e.g. {spec.prepare_hint}")
        check_npz(npz, spec)
    builder = builder_for(name, data_dir, npz)
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    try:
        builder.download_and_prepare(file_format="array_record")
    finally:
        _remove_empty_tfds_tmpdirs()
    return str(builder.data_dir)


def _check_sources(name: str, spec: DatasetSpec, npz: str | None, manual_dir: str | None) -> None:
    """A source the dataset does not read from is refused rather than ignored."""
    if npz and (spec.embedded or name in STREAMED):
        takes = "nothing (it is embedded)" if spec.embedded else "--manual_dir=FOLDER"
        raise ConfigError(
            f"--npz={npz!r} is not used by dataset {name!r}, which takes {takes}; --npz is for mnist and cifar10"
        )
    if manual_dir and name not in STREAMED:
        raise ConfigError(
            f"--manual_dir={manual_dir!r} is only for imagenet2012; dataset {name!r} takes --npz=PATH or nothing"
        )


def require_prepared(name: str, data_dir: str | None = None) -> None:
    """ConfigError (with the command that prepares it) unless `name` is prepared or embedded (prepared on use)."""
    spec = get_spec(name)
    if not spec.embedded and not is_prepared(name, data_dir):
        where = data_dir or default_data_dir()
        raise ConfigError(f"dataset {name!r} is not prepared in {where!r}; prepare it with: {spec.prepare_hint}")


def load_dataset(
    name: str, data_dir: str | None = None, *, workers: int = 1, write: bool = True
) -> ArrayDataset | StreamingDataset:
    """Read both splits into memory (streamed datasets: open them, `workers` decode processes each); the
    embedded `digits` is prepared on first use, others must be. `write=False` (a dry run) reads an unprepared
    embedded set from the package instead, leaving data_dir as it was (the same sizes, in another order)."""
    spec = get_spec(name)
    if not write and spec.embedded and not is_prepared(name, data_dir):
        split = builder_for(name, data_dir)._arrays()
        images = {f"{s}_images": np.asarray(split[s][0], np.uint8).reshape(-1, *spec.image_shape) for s in split}
        return ArrayDataset(spec, **images, **{f"{s}_labels": np.asarray(split[s][1], np.int32) for s in split})
    require_prepared(name, data_dir)
    if name in STREAMED:
        from asgdjax.data.imagenet import ImageNetSource

        return StreamingDataset(
            spec,
            ImageNetSource(data_dir, "train", workers=workers),
            ImageNetSource(data_dir, "validation", workers=workers),
        )
    if not is_prepared(name, data_dir):
        prepare(name, data_dir)
    builder = builder_for(name, data_dir)
    folder = str(builder.data_dir)
    counts = {split: int(builder.info.splits[split].num_examples) for split in ("train", "test")}
    arrays = array_cache.read(folder, counts)
    if arrays is None:
        arrays = read_records(builder)
        array_cache.write(folder, arrays)
    return ArrayDataset(spec, **{k: arrays[k] for k in array_cache.KEYS})


def read_records(builder: Any) -> dict[str, np.ndarray]:
    """Both splits deserialised record by record through TFDS data sources (what the dense copy saves)."""
    arrays = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        items = source.__getitems__(range(len(source)))
        arrays[f"{split}_images"] = np.stack([it["image"] for it in items]).astype(np.uint8)
        arrays[f"{split}_labels"] = np.asarray([it["label"] for it in items], np.int32)
    return arrays


def _remove_empty_tfds_tmpdirs() -> None:
    """TFDS leaves empty tmp*tfds folders in $TMPDIR after preparing; tidy them."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "tmp*tfds")):
        if os.path.isdir(path) and not os.listdir(path):
            shutil.rmtree(path, ignore_errors=True)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def check_npz(path: str, spec: DatasetSpec) -> None:
    """One ConfigError line unless `path` is a readable .npz of uint8 images of the dataset's shape with
    integer labels in range, one label per image (what `asgdjax-prepare --npz` needs)."""
    where = f"--npz={path!r}"
    if not os.path.isfile(path):
        what = "is a folder; give the .npz file in it" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"{where} {what}; e.g. {spec.prepare_hint}")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in NPZ_KEYS if k not in d.files]
            if missing:
                raise ConfigError(f"{where} has no array {missing[0]!r}; expected arrays {', '.join(NPZ_KEYS)}")
            arrays = {k: d[k] for k in NPZ_KEYS}
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (zip, pickle and format errors all mean an unreadable file)
        raise ConfigError(
            f"{where} cannot be read as .npz ({type(e).__name__}); expected a numpy .npz with arrays "
            f"{', '.join(NPZ_KEYS)}"
        ) from None
    for split in ("train", "test"):
        _check_split(where, split, arrays[f"x_{split}"], arrays[f"y_{split}"], spec)


def _check_split(where: str, split: str, x: np.ndarray, y: np.ndarray, spec: DatasetSpec) -> None:
    shape = tuple(spec.image_shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise ConfigError(f"{where} x_{split} has shape {x.shape}; expected (N, {', '.join(map(str, shape))})")
    if x.dtype != np.uint8:
        raise ConfigError(f"{where} x_{split} has dtype {x.dtype}; expected uint8 pixels 0..255")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ConfigError(f"{where} y_{split} has shape {y.shape}; expected ({x.shape[0]},): one label per image")
    if y.dtype.kind not in "iu":
        raise ConfigError(f"{where} y_{split} has dtype {y.dtype}; expected integer labels")
    if len(y) == 0:
        raise ConfigError(f"{where} x_{split} holds no images")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= spec.num_classes:
        bad = lo if lo < 0 else hi
        raise ConfigError(f"{where} y_{split} holds label {bad}; allowed: 0..{spec.num_classes - 1}")
