"""A dense copy of a prepared small dataset's arrays beside its TFDS files.

Reading a split back through a TFDS data source deserialises every record (MNIST: 70,000, about 12 s on a
2-core CPU, paid by every process that trains on it); the copy is four arrays read in a fraction of a
second. It is written once, after the first read, and ignored (then rewritten) when it is older than the
prepared dataset or does not hold the split sizes the dataset's metadata states. A data folder that cannot
be written simply gets no copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile

import numpy as np

FILE = "asgdjax_arrays.npz"
KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def read(data_dir: str, counts: dict[str, int]) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no valid copy (`counts`: examples per split)."""
    path = os.path.join(data_dir, FILE)
    try:
        if os.path.getmtime(path) < os.path.getmtime(os.path.join(data_dir, "dataset_info.json")):
            return None
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    for split, n in counts.items():
        if len(arrays[f"{split}_images"]) != n or len(arrays[f"{split}_labels"]) != n:
            return None
    return arrays


def write(data_dir: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the copy atomically (a temporary file renamed into place); no copy when that fails."""
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".asgdjax_arrays.", suffix=".npz", delete=False) as f:
            tmp = f.name
            np.savez(
                f,
                train_images=arrays["train_images"],
                train_labels=arrays["train_labels"],
                test_images=arrays["test_images"],
                test_labels=arrays["test_labels"],
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # readable like the TFDS files beside it (not the temp file's 0600)
        os.replace(tmp, os.path.join(data_dir, FILE))
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
