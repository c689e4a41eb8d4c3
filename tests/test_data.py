"""TFDS array_record datasets without TensorFlow, deterministic worker streams, augmentation."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asgdjax.data import WorkerStream, load_dataset, prepare
from asgdjax.data.augment import random_crop_flip
from asgdjax.errors import ConfigError
from tests.conftest import shared_npz


def test_digits_is_embedded_and_split(digits):
    assert digits.train_images.shape == (1438, 8, 8, 1) and digits.train_images.dtype == np.uint8
    assert digits.test_images.shape == (359, 8, 8, 1)
    assert digits.train_images.max() == 255
    assert set(np.unique(digits.train_labels)) == set(range(10))
    assert "tensorflow" not in sys.modules  # read through array_record, no TensorFlow


def test_unknown_and_unprepared_datasets_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'; allowed: cifar10, digits, mnist"):
        load_dataset("svhn")
    with pytest.raises(ConfigError, match="not prepared.*asgdjax-prepare --dataset=mnist --npz="):
        load_dataset("mnist", str(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        prepare("mnist", str(tmp_path), str(tmp_path / "missing.npz"))


def test_mnist_prepares_from_the_shared_npz(tmp_path):
    npz = shared_npz("mnist.npz")
    prepare("mnist", str(tmp_path), npz)
    d = load_dataset("mnist", str(tmp_path))
    assert d.train_images.shape == (60000, 28, 28, 1) and d.test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(d.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_worker_streams_are_deterministic_disjoint_and_reshuffled():
    k = 4
    streams = [WorkerStream(1000, 10, seed=7, worker=w, num_workers=k) for w in range(k)]
    epoch0 = [np.concatenate([s.batch(i) for i in range(s.steps_per_epoch)]) for s in streams]
    union = np.concatenate(epoch0)
    assert len(np.unique(union)) == len(union)  # shards are disjoint within an epoch
    again = WorkerStream(1000, 10, seed=7, worker=2, num_workers=k)
    np.testing.assert_array_equal(again.batch(3), streams[2].batch(3))
    s = streams[0]
    assert not np.array_equal(s.batch(0), s.batch(s.steps_per_epoch))  # new order each epoch
    assert not np.array_equal(s.batch(0), WorkerStream(1000, 10, seed=8).batch(0))


def test_stream_rejects_a_batch_larger_than_the_shard():
    with pytest.raises(ValueError, match="batch_size 300 exceeds"):
        WorkerStream(1000, 300, seed=0, worker=0, num_workers=4)


def test_random_crop_flip_keeps_shape_and_content():
    img = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1) + 1
    out = random_crop_flip(jax.random.key(0), img, pad=2)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, random_crop_flip(jax.random.key(0), img, pad=2))
    # every non-zero output pixel comes from its own image
    for i in range(2):
        vals = set(np.asarray(out[i]).ravel().tolist()) - {0.0}
        assert vals <= set(np.asarray(img[i]).ravel().tolist())
