"""Datasets through TFDS array_record (no TensorFlow), deterministic worker streams, on-device augmentation."""

from asgdjax.data.load import (
    ArrayDataset,
    StreamingDataset,
    get_spec,
    is_prepared,
    load_dataset,
    prepare,
    require_prepared,
)
from asgdjax.data.registry import DATASETS, DatasetSpec, default_data_dir

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DatasetSpec",
    "StreamingDataset",
    "default_data_dir",
    "get_spec",
    "is_prepared",
    "load_dataset",
    "prepare",
    "require_prepared",
]
