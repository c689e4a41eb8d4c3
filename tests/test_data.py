"""TFDS array_record datasets without TensorFlow, deterministic worker streams, augmentation."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import shared_npz

from asgdjax.core.keys import run_keys
from asgdjax.core.sampling import ReplacementSampler, ShardSampler
from asgdjax.data import load_dataset, prepare
from asgdjax.data.augment import random_crop_flip
from asgdjax.errors import ConfigError


def test_digits_is_embedded_and_split(digits):
    assert digits.train_images.shape == (1438, 8, 8, 1) and digits.train_images.dtype == np.uint8
    assert digits.test_images.shape == (359, 8, 8, 1)
    assert digits.train_images.max() == 255
    assert set(np.unique(digits.train_labels)) == set(range(10))
    assert "tensorflow" not in sys.modules  # read through array_record, no TensorFlow


def test_unknown_and_unprepared_datasets_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'; allowed: cifar10, digits, imagenet2012, mnist"):
        load_dataset("svhn")
    with pytest.raises(ConfigError, match="not prepared.*asgdjax-prepare --dataset=mnist --npz="):
        load_dataset("mnist", str(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        prepare("mnist", str(tmp_path), str(tmp_path / "missing.npz"))


@pytest.mark.slow
def test_mnist_prepares_from_the_shared_npz(tmp_path):
    npz = shared_npz("mnist.npz")
    prepare("mnist", str(tmp_path), npz)
    d = load_dataset("mnist", str(tmp_path))
    assert d.train_images.shape == (60000, 28, 28, 1) and d.test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(d.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_a_prepared_dataset_is_read_back_from_its_dense_copy_and_a_stale_one_is_ignored(tmp_path, monkeypatch):
    """The first load deserialises the TFDS records and writes asgdjax_arrays.npz beside them; later loads
        read that copy (the records are not touched); a copy older than the dataset, or with other split sizes,
        is ignored and rewritten; a copy that cannot be written (disk full, read-only folder) is skipped and the
    load goes on."""
    import os

    import tensorflow_datasets as tfds

    from asgdjax.data import array_cache
    from asgdjax.data.load import builder_for

    first = load_dataset("digits", str(tmp_path))
    folder = str(builder_for("digits", str(tmp_path)).data_dir)
    copy = os.path.join(folder, array_cache.FILE)
    assert os.path.exists(copy) and os.stat(copy).st_mode & 0o044  # readable like the records beside it

    def no_records(*a, **k):
        raise AssertionError("read the TFDS records although a valid copy exists")

    with monkeypatch.context() as m:
        m.setattr(tfds.core.DatasetBuilder, "as_data_source", no_records)
        again = load_dataset("digits", str(tmp_path))
    for k in array_cache.KEYS:
        np.testing.assert_array_equal(getattr(again, k), getattr(first, k))
        assert getattr(again, k).dtype == getattr(first, k).dtype

    info = os.path.join(folder, "dataset_info.json")
    os.utime(copy, (1, 1))  # older than the prepared dataset: ignored
    assert array_cache.read(folder, {"train": 1438, "test": 359}) is None
    load_dataset("digits", str(tmp_path))
    assert os.path.getmtime(copy) >= os.path.getmtime(info)  # rewritten
    assert array_cache.read(folder, {"train": 1438, "test": 359}) is not None
    assert array_cache.read(folder, {"train": 1437, "test": 359}) is None  # other split sizes: ignored

    os.remove(copy)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(np, "savez", disk_full)
        full = load_dataset("digits", str(tmp_path))
    assert len(full.train_labels) == 1438 and not os.path.exists(copy)
    assert not [f for f in os.listdir(folder) if f.startswith(".asgdjax_arrays.")]  # no temporary file left


def test_shard_sampler_is_deterministic_disjoint_and_reshuffled():
    k = 4
    smp = ShardSampler(1000, 10, seed=7, num_workers=k)
    epoch0 = [np.concatenate([smp.batch(w, i) for i in range(smp.steps_per_epoch(w))]) for w in range(k)]
    union = np.concatenate(epoch0)
    assert len(np.unique(union)) == len(union) == 1000  # shards are disjoint and cover an epoch
    again = ShardSampler(1000, 10, seed=7, num_workers=k)
    np.testing.assert_array_equal(again.batch(2, 3), smp.batch(2, 3))
    assert not np.array_equal(smp.batch(0, 0), smp.batch(0, smp.steps_per_epoch(0)))  # new order each epoch
    assert not np.array_equal(smp.batch(0, 0), ShardSampler(1000, 10, seed=8, num_workers=k).batch(0, 0))
    # a chunk of events at once equals the events one by one
    workers, steps = np.array([3, 0, 2, 3, 1]), np.array([0, 30, 24, 25, 7])
    one_by_one = np.stack([smp.batch(int(w), int(s)) for w, s in zip(workers, steps, strict=True)])
    np.testing.assert_array_equal(smp.indices(workers, steps), one_by_one)


def test_shard_sampler_refuses_a_batch_larger_than_a_shard_in_one_line():
    with pytest.raises(
        ConfigError, match="batch_size=300 exceeds a worker's shard of 250 examples .* sampler='replacement'"
    ):
        ShardSampler(1000, 300, seed=0, num_workers=4)


def test_replacement_sampler_draws_any_batch_size_uniformly():
    smp = ReplacementSampler(100, 500, seed=3)  # a batch larger than the data set is fine
    idx = smp.indices(np.arange(40), np.zeros(40, np.int64))
    assert idx.shape == (40, 500) and idx.min() >= 0 and idx.max() < 100
    counts = np.bincount(idx.ravel(), minlength=100)
    assert counts.min() > 120 and counts.max() < 290  # about 200 each
    np.testing.assert_array_equal(smp.batch(5, 9), ReplacementSampler(100, 500, seed=3).batch(5, 9))
    assert not np.array_equal(smp.batch(5, 9), smp.batch(5, 10))


def test_every_stream_of_a_run_comes_from_one_root_key():
    a, b = run_keys(0), run_keys(1)
    assert a.sampler_seed != b.sampler_seed
    data = lambda k: jax.random.key_data(k).tolist()
    mine = [data(a.init), data(a.data), data(a.schedule)]
    theirs = [data(b.init), data(b.data), data(b.schedule)]
    assert not set(map(str, mine)) & set(map(str, theirs))  # seed s and s + 1 share no stream
    assert data(run_keys(0).data) == data(a.data)


def test_random_crop_flip_keeps_shape_and_content():
    img = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1) + 1
    out = random_crop_flip(jax.random.key(0), img, pad=2)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, random_crop_flip(jax.random.key(0), img, pad=2))
    # every non-zero output pixel comes from its own image
    for i in range(2):
        vals = set(np.asarray(out[i]).ravel().tolist()) - {0.0}
        assert vals <= set(np.asarray(img[i]).ravel().tolist())
