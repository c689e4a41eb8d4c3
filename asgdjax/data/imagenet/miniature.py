"""A miniature ILSVRC-2012 in the official archive layout, for tests and benchmarks (no download needed).

ILSVRC2012_img_train.tar holds one tar per synset (n01440764.tar) of JPEGs named like n01440764_10026.JPEG;
ILSVRC2012_img_val.tar holds ILSVRC2012_val_%08d.JPEG. The classes are the first `classes` synsets of TFDS's
label file, and the validation images are the first `val` image numbers whose line in TFDS's validation
label file is one of them, under their real names (stored out of order), so the preparer's by-number
labelling must give each one its real class. Pixels are smooth random images (noise upsampled, plus grain),
which compress about like photographs; one image in five is twice the size (at least 320 on the long side),
one in seven is portrait, and the first class also holds a PNG named .JPEG, a CMYK JPEG and a greyscale JPEG.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
from PIL import Image

from asgdjax.data.imagenet.spec import TRAIN_TAR, VAL_TAR, synsets, validation_synsets
from asgdjax.errors import ConfigError

QUALITY = 90


def make_miniature(
    folder: str, *, classes: int = 3, train_per_class: int = 40, val: int = 30, size: tuple[int, int] = (64, 48)
) -> str:
    """Write the two ILSVRC-2012 tars (train: classes x train_per_class images; val: `val` images) of about
    `size` (width, height) pixels into `folder`; returns `folder`."""
    if not 1 <= classes <= 1000 or train_per_class < 3 or val < 0:
        raise ConfigError(
            f"miniature classes={classes}, train_per_class={train_per_class}, val={val}; expected "
            "1..1000 classes, at least 3 images per class and val >= 0"
        )
    chosen = synsets()[:classes]
    numbers = [k for k, s in enumerate(validation_synsets(), start=1) if s in chosen][:val]
    if len(numbers) < val:
        raise ConfigError(f"miniature val={val}; {classes} classes have only {len(numbers)} validation images")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    with tarfile.open(os.path.join(folder, TRAIN_TAR), "w", format=tarfile.GNU_FORMAT) as outer:
        for c, synset in enumerate(chosen):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for i in range(train_per_class):
                    special = i if c == 0 else -1  # 0: PNG named .JPEG, 1: CMYK, 2: greyscale
                    data = _encode(_picture(rng, _size(size, i)), special)
                    _add(tar, f"{synset}_{10000 + 7 * i}.JPEG", data)
            _add(outer, f"{synset}.tar", inner.getvalue())
    with tarfile.open(os.path.join(folder, VAL_TAR), "w", format=tarfile.GNU_FORMAT) as tar:
        for j, k in enumerate(rng.permutation(numbers)):
            _add(tar, f"ILSVRC2012_val_{int(k):08d}.JPEG", _encode(_picture(rng, _size(size, j)), -1))
    return folder


def _size(base: tuple[int, int], i: int) -> tuple[int, int]:
    """Image i's (width, height): `base`, one in five doubled (>= 320 on the long side), one in seven portrait."""
    w, h = base
    if i % 5 == 4:
        grow = max(2.0, 320 / max(w, h))
        w, h = round(w * grow), round(h * grow)
    return (h, w) if i % 7 == 6 else (w, h)


def _picture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth random RGB image: 1/16-scale noise upsampled bicubically, plus pixel noise."""
    w, h = size
    coarse = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.int16)
    grain = rng.normal(0.0, 14.0, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def _encode(img: Image.Image, special: int) -> bytes:
    """JPEG bytes of `img`; special 0 = PNG bytes instead, 1 = a CMYK JPEG, 2 = a greyscale JPEG."""
    out = io.BytesIO()
    if special == 0:
        img.save(out, "PNG")
    elif special == 1:
        img.convert("CMYK").save(out, "JPEG", quality=QUALITY)
    elif special == 2:
        img.convert("L").save(out, "JPEG", quality=QUALITY)
    else:
        img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_330_000_000  # fixed: the same arguments give byte-identical archives
    tar.addfile(info, io.BytesIO(data))
