"""TFDS builders for the datasets asgdjax ships or prepares offline, written as array_record (no TensorFlow).

`digits` reads the handwritten digits shipped in the package (the embedded default); `mnist` and `cifar10` read
local `.npz` files (e.g. ../shared/data/mnist.npz) for machines without internet. Features are uint8
`Tensor`s rather than `Image`s, since TFDS's Image encoder calls TensorFlow for numpy input.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

DIGITS_TEST_FRACTION = 0.2  # digits has no official split: a fixed, seeded 80/20 split (1438/359).
DIGITS_FILE = os.path.join(os.path.dirname(__file__), "digits.npz")


def _features(shape: tuple[int, int, int], num_classes: int) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=num_classes),
        }
    )


class _ArrayBuilder(tfds.core.GeneratorBasedBuilder):
    """Base: a builder whose splits come from in-memory uint8 arrays returned by `_arrays()`."""

    VERSION = tfds.core.Version("1.0.0")
    SHAPE: tuple[int, int, int] = (0, 0, 0)
    DESCRIPTION = ""
    npz_path: str | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=_features(self.SHAPE, 10),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        arrays = self._arrays()
        return {split: self._generate_examples(*xy) for split, xy in arrays.items()}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for i in range(len(images)):
            yield i, {"image": images[i], "label": int(labels[i])}

    def _arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _npz_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if not self.npz_path:
            raise FileNotFoundError(f"{self.name}: no .npz file given (asgdjax-prepare --npz=PATH)")
        with np.load(self.npz_path) as d:
            return {
                "train": (d["x_train"].astype(np.uint8), d["y_train"]),
                "test": (d["x_test"].astype(np.uint8), d["y_test"]),
            }


class AsgdDigits(_ArrayBuilder):
    """The UCI optical-recognition digits (1,797 8x8 images, values 0..16 scaled to 0..255), as scikit-learn
    bundles them, shipped in the package (asgdjax/data/digits.npz, 46 KB), so the default needs no
    scikit-learn."""

    SHAPE = (8, 8, 1)
    DESCRIPTION = "UCI handwritten digits (scikit-learn's copy) as uint8, fixed seeded 80/20 train/test split."

    def _arrays(self):
        with np.load(DIGITS_FILE) as d:
            images, labels = d["images"], d["labels"].astype(np.int64)
        order = np.random.default_rng(0).permutation(len(images))
        n_test = int(round(len(images) * DIGITS_TEST_FRACTION))
        test, train = order[:n_test], order[n_test:]
        return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


class AsgdMnist(_ArrayBuilder):
    """MNIST (60,000 train / 10,000 test, 28x28x1) from a local .npz with x_train/y_train/x_test/y_test."""

    SHAPE = (28, 28, 1)
    DESCRIPTION = "MNIST from a local .npz (see ../shared/data/PROVENANCE.md)."

    def _arrays(self):
        return self._npz_arrays()


class AsgdCifar10(_ArrayBuilder):
    """CIFAR-10 (32x32x3) from a local .npz with x_train/y_train/x_test/y_test."""

    SHAPE = (32, 32, 3)
    DESCRIPTION = "CIFAR-10 from a local .npz (../shared/data holds 25k train + 10k test, JPEG q75)."

    def _arrays(self):
        return self._npz_arrays()
