"""Random-access ILSVRC-2012 batches from the prepared array_record files, decoded in `workers` processes.

`load(indices, seed=, train=)` reads only those records (TFDS array_record data source, no TensorFlow),
decodes and crops them (preprocess.py) and returns uint8 images and int32 labels; normalisation by
IMAGENET_SPEC's mean/std happens later, on the device. With workers > 1 a pool of spawned processes (not
forked: the caller has usually started JAX's threads) each opens its own data source and takes one
contiguous slice of the batch. A persistent pool fits random access by index; grain's mp_prefetch streams
a fixed pipeline instead, and measured no faster here (0.93-1.05x the pool with whole batches made in its
processes, 0.2x one image at a time; experiments/bench/imagenet_pipeline.py), so grain is not a dependency.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from asgdjax.data.imagenet.preprocess import CROP, crops
from asgdjax.data.imagenet.spec import IMAGENET_SPEC, SPLITS
from asgdjax.data.registry import default_data_dir
from asgdjax.errors import ConfigError

_RECORDS: Any = None  # in a pool process: its own data source


class ImageNetSource:
    """The prepared `split` ("train" or "validation"; "test" means validation, as elsewhere in asgdjax)."""

    def __init__(self, data_dir: str | None, split: str, *, workers: int = 1) -> None:
        split = "validation" if split == "test" else split
        if split not in SPLITS:
            raise ConfigError(f"imagenet2012 split {split!r}; allowed: train, validation (or test)")
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers={workers!r}; expected a whole number of decode processes >= 1")
        self.data_dir, self.split, self.workers = data_dir or default_data_dir(), split, workers
        self._records = open_records(self.data_dir, split)
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.data_dir, split),
            )

    def __len__(self) -> int:
        return len(self._records)

    def load(self, indices, *, seed: int, train: bool) -> dict[str, np.ndarray]:
        """{"images": uint8 [B, 224, 224, 3], "labels": int32 [B]} for example `indices`: random crop + flip
        from (seed, index) when `train`, else the centre crop. Same indices and seed, same bytes."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = int(idx.min() if idx.min() < 0 else idx.max())
            raise IndexError(f"example index {bad} outside 0..{len(self) - 1} of imagenet2012 {self.split}")
        if self._pool is None or idx.size < 2:
            return decode(self._records, idx, seed=int(seed), train=bool(train))
        parts = np.array_split(idx, min(self.workers, idx.size))
        futures = [self._pool.submit(_decode_in_worker, p, int(seed), bool(train)) for p in parts]
        done = [f.result() for f in futures]
        return {k: np.concatenate([d[k] for d in done]) for k in ("images", "labels")}

    def close(self) -> None:
        """Stop the decode processes (a no-op for workers=1); the source cannot load afterwards."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._records = ()

    def __enter__(self) -> ImageNetSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_records(data_dir: str, split: str) -> Any:
    """The TFDS array_record data source of a prepared split (records read on demand, never all at once)."""
    from asgdjax.data.imagenet.prepare import AsgdImagenet2012

    builder = AsgdImagenet2012(data_dir=data_dir, file_format="array_record")
    if not os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json")):
        raise ConfigError(
            f"dataset 'imagenet2012' is not prepared in {data_dir!r}; prepare it with: {IMAGENET_SPEC.prepare_hint}"
        )
    return builder.as_data_source(split=split)


def decode(records: Any, indices: np.ndarray, *, seed: int, train: bool) -> dict[str, np.ndarray]:
    """Read `indices` from `records` and crop them; the work of one decode process."""
    if indices.size == 0:
        return {"images": np.zeros((0, CROP, CROP, 3), np.uint8), "labels": np.zeros((0,), np.int32)}
    items = records.__getitems__(indices.tolist())
    images = crops([it["image"] for it in items], indices, seed=seed, train=train)
    return {"images": images, "labels": np.asarray([it["label"] for it in items], np.int32)}


def _start_worker(data_dir: str, split: str) -> None:
    global _RECORDS
    _RECORDS = open_records(data_dir, split)


def _decode_in_worker(indices: np.ndarray, seed: int, train: bool) -> dict[str, np.ndarray]:
    return decode(_RECORDS, indices, seed=seed, train=train)
