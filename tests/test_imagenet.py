"""ILSVRC-2012 pipeline on a miniature in the official layout: prepared without TensorFlow, deterministic
crops and flips from (seed, index), centre crops for evaluation, one-line errors for bad archives."""

import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asgdjax.data.imagenet import IMAGENET_SPEC, ImageNetSource, make_miniature, prepare_imagenet
from asgdjax.data.imagenet.preprocess import CENTRE, CROP, RESIZE, Window, crop, window
from asgdjax.data.imagenet.spec import TRAIN_TAR, VAL_TAR, synsets, validation_synsets
from asgdjax.errors import ConfigError

CLASSES, PER_CLASS, VAL = 3, 12, 10
OFFSETS = [(x, y) for x in (0, 8, CENTRE, 24, 32) for y in (0, 8, CENTRE, 24, 32)]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(manual folder, data_dir) of a prepared miniature: 3 classes x 12 train images, 10 validation."""
    root = tmp_path_factory.mktemp("imagenet")
    manual = make_miniature(str(root / "manual"), classes=CLASSES, train_per_class=PER_CLASS, val=VAL)
    data_dir = str(root / "tfds")
    folder = prepare_imagenet(manual, data_dir)
    assert folder.startswith(data_dir) and os.path.exists(os.path.join(folder, "dataset_info.json"))
    return manual, data_dir


def _records(data_dir, split):
    from asgdjax.data.imagenet.source import open_records

    src = open_records(data_dir, split)
    return [src[i] for i in range(len(src))]


def test_the_miniature_prepares_and_reads_back_with_tfds_labels_and_no_tensorflow(mini):
    manual, data_dir = mini
    train, val = _records(data_dir, "train"), _records(data_dir, "validation")
    assert len(train) == CLASSES * PER_CLASS and len(val) == VAL
    names = synsets()
    for r in train:  # label = the synset's line in TFDS's labels file
        assert names[r["label"]] == r["file_name"].decode().split("_")[0]
    for r in val:  # validation image k takes line k of TFDS's validation label file
        k = int(r["file_name"].decode()[len("ILSVRC2012_val_") : -len(".JPEG")])
        assert names[r["label"]] == validation_synsets()[k - 1]
    assert {r["label"] for r in val} <= set(range(CLASSES))
    by_name = {r["file_name"].decode(): r["image"] for r in train}
    fixed = [Image.open(io.BytesIO(by_name[f"{names[0]}_{10000 + 7 * i}.JPEG"])) for i in range(3)]
    assert [(im.format, im.mode) for im in fixed] == [("JPEG", "RGB"), ("JPEG", "RGB"), ("JPEG", "L")]
    with (  # ordinary JPEGs are stored byte for byte
        tarfile.open(os.path.join(manual, TRAIN_TAR)) as outer,
        tarfile.open(fileobj=outer.extractfile(f"{names[1]}.tar")) as inner,
    ):
        member = inner.getmembers()[0]
        assert by_name[member.name] == inner.extractfile(member).read()
    with ImageNetSource(data_dir, "validation") as source:
        batch = source.load(range(VAL), seed=0, train=False)
    assert batch["images"].shape == (VAL, 224, 224, 3) and batch["images"].dtype == np.uint8
    assert batch["labels"].dtype == np.int32
    np.testing.assert_array_equal(batch["labels"], [r["label"] for r in val])
    assert IMAGENET_SPEC.image_shape == (224, 224, 3) and IMAGENET_SPEC.num_classes == 1000
    assert "tensorflow" not in sys.modules
    assert prepare_imagenet(manual, data_dir) == os.path.dirname(
        os.path.join(data_dir, "asgd_imagenet2012", "1.0.0", "")
    )


def test_load_is_a_pure_function_of_indices_and_seed_in_any_process_or_order(mini):
    _, data_dir = mini
    idx = [5, 0, 33, 17, 8, 21]
    with ImageNetSource(data_dir, "train") as one:
        a = one.load(idx, seed=7, train=True)
        b = one.load(idx[::-1], seed=7, train=True)
        other = one.load(idx, seed=8, train=True)
    np.testing.assert_array_equal(a["images"], b["images"][::-1])
    assert not np.array_equal(a["images"], other["images"])
    np.testing.assert_array_equal(a["labels"], other["labels"])
    with ImageNetSource(data_dir, "train", workers=2) as pool:
        c = pool.load(idx, seed=7, train=True)
    np.testing.assert_array_equal(a["images"], c["images"])
    np.testing.assert_array_equal(a["labels"], c["labels"])
    assert "tensorflow" not in sys.modules


def test_train_crops_are_random_224_windows_with_flips_and_eval_is_the_centre(mini):
    _, data_dir = mini
    n = CLASSES * PER_CLASS
    wins = [window(i, seed=3, train=True) for i in range(n)]
    assert 0 < sum(w.flip for w in wins) < n  # flips happen, not always
    assert len({(w.x, w.y) for w in wins}) > n // 2
    assert all(0 <= w.x <= RESIZE - CROP and 0 <= w.y <= RESIZE - CROP for w in wins)
    records = _records(data_dir, "train")
    with ImageNetSource(data_dir, "train") as source:
        train = source.load(range(n), seed=3, train=True)["images"]
        centre = source.load(range(n), seed=3, train=False)["images"]
    names = [r["file_name"].decode() for r in records]
    for stem in ("10007", "10028", "10042"):  # ordinary, doubled (320x240), portrait (48x64)
        i = next(j for j, name in enumerate(names) if name.endswith(f"_{stem}.JPEG"))
        data, w = records[i]["image"], wins[i]
        np.testing.assert_array_equal(train[i], crop(data, w))
        unflipped = crop(data, Window(w.x, w.y, False))
        np.testing.assert_array_equal(crop(data, Window(w.x, w.y, True)), unflipped[:, ::-1])
        assert train[i].shape == (CROP, CROP, 3)
        np.testing.assert_array_equal(centre[i], crop(data, Window(CENTRE, CENTRE, False)))
        ref = _resize_then_centre_crop(data)  # the textbook centre crop is nearer than any other window
        off = {(x, y): np.abs(crop(data, Window(x, y, False)).astype(int) - ref).mean() for x, y in OFFSETS}
        assert min(off, key=off.get) == (CENTRE, CENTRE) and off[CENTRE, CENTRE] < 6.0, off


def _resize_then_centre_crop(data: bytes) -> np.ndarray:
    """The textbook way: rescale the whole image to shorter side 256, cut the central 224."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = RESIZE / min(w, h)
    big = np.asarray(img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR), int)
    top, left = (big.shape[0] - CROP) // 2, (big.shape[1] - CROP) // 2
    return big[top : top + CROP, left : left + CROP]


def test_large_jpegs_are_decoded_at_reduced_scale_to_about_the_same_crop():
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    out = io.BytesIO()
    coarse.resize((1024, 768), Image.Resampling.BICUBIC).save(out, "JPEG", quality=95)
    data = out.getvalue()
    got = crop(data, Window(CENTRE, CENTRE, False))
    assert np.abs(got.astype(int) - _resize_then_centre_crop(data)).mean() < 3.0


def test_missing_or_damaged_archives_are_one_line_naming_the_file(mini, tmp_path):
    manual, _ = mini
    with pytest.raises(ConfigError, match=f"{TRAIN_TAR} not found") as e:
        prepare_imagenet(str(tmp_path), str(tmp_path / "tfds"))
    assert "\n" not in str(e.value)
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(os.path.join(manual, VAL_TAR), cut / VAL_TAR)
    whole = Path(manual, TRAIN_TAR).read_bytes()
    for size in (len(whole) // 2, _end_of_last_member(os.path.join(manual, TRAIN_TAR))):
        (cut / TRAIN_TAR).write_bytes(whole[:size])
        with pytest.raises(ConfigError, match=f"{cut / TRAIN_TAR}.*truncated") as e:
            prepare_imagenet(str(cut), str(tmp_path / "tfds"))
        assert "\n" not in str(e.value)
    (cut / TRAIN_TAR).write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ConfigError, match=f"{cut / TRAIN_TAR} is not a readable tar"):
        prepare_imagenet(str(cut), str(tmp_path / "tfds"))
    with tarfile.open(cut / TRAIN_TAR, "w") as tar:  # whole, but the synset's tar inside is garbage
        info = tarfile.TarInfo(f"{synsets()[0]}.tar")
        info.size = 5000
        tar.addfile(info, io.BytesIO(b"garbage!" * 625))
    with pytest.raises(ConfigError, match=f"{cut / TRAIN_TAR} is damaged inside '{synsets()[0]}.tar'") as e:
        prepare_imagenet(str(cut), str(tmp_path / "tfds"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "tfds" / "asgd_imagenet2012" / "1.0.0" / "dataset_info.json")


def _end_of_last_member(path: str) -> int:
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512


def test_unprepared_data_bad_split_and_bad_index_say_what_to_do(mini, tmp_path):
    with pytest.raises(ConfigError, match="not prepared.*asgdjax-prepare --dataset=imagenet2012 --manual_dir="):
        ImageNetSource(str(tmp_path), "train")
    _, data_dir = mini
    with pytest.raises(ConfigError, match="split 'val'; allowed: train, validation"):
        ImageNetSource(data_dir, "val")
    with ImageNetSource(data_dir, "test") as source:
        assert len(source) == VAL
        with pytest.raises(IndexError, match="example index 10 outside 0..9"):
            source.load([0, 10], seed=0, train=False)
        assert source.load([], seed=0, train=True)["images"].shape == (0, 224, 224, 3)
