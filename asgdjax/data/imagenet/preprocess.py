"""Host-side ImageNet preprocessing: JPEG bytes -> one uint8 224x224x3 crop, drawn deterministically.

As cuda-convnet's AlexNet: the image is rescaled so its shorter side is 256 and its central 256x256 square
taken; training sees a random 224x224 window of that square, flipped left-right half the time; evaluation
the centre window. The window and the flip of example `index` come from (seed, index) alone, so the same
indices and seed give the same bytes in any process and any order (a recorded asynchronous run replays).
Only the window is resampled (Pillow's `resize(box=...)`), after JPEG DCT scaling (`draft`) of images at
least twice as large as needed: 1.3-1.7x faster than decoding, rescaling and cropping the whole image on
the benchmark's miniature (about 2.6x on its 1000x750 images; experiments/bench/imagenet_pipeline.py).
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image

RESIZE = 256  # shorter side after rescaling; then the central RESIZE x RESIZE square
CROP = 224
MAX_OFFSET = RESIZE - CROP  # window corners 0..32 inside the square
CENTRE = MAX_OFFSET // 2
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow names a JPEG with extra frames MPO; both take `draft`


@dataclasses.dataclass(frozen=True)
class Window:
    """Where the 224 window sits in the 256 square (pixels from its top-left corner), and the flip."""

    x: int
    y: int
    flip: bool


def window(index: int, *, seed: int, train: bool) -> Window:
    """Example `index`'s window: random from (seed, index) in training, the centre unflipped in evaluation."""
    if not train:
        return Window(CENTRE, CENTRE, False)
    x, y, flip = np.random.default_rng([seed % 2**64, int(index)]).integers(0, [MAX_OFFSET + 1, MAX_OFFSET + 1, 2])
    return Window(int(x), int(y), bool(flip))


def crop(data: bytes, win: Window) -> np.ndarray:
    """Decode JPEG `data` and return its uint8 [224, 224, 3] RGB window `win` (greyscale becomes RGB)."""
    img: Image.Image = Image.open(io.BytesIO(data))
    w, h = img.size
    scale = RESIZE / min(w, h)
    if img.format in JPEG_FORMATS:  # decode at 1/2, 1/4 or 1/8 size when that still leaves >= 256 on the short side
        img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
        w, h = img.size
        scale = RESIZE / min(w, h)
    if img.mode != "RGB":
        img = img.convert("RGB")
    left = (w * scale - RESIZE) / 2 + win.x  # window corner in rescaled pixels
    top = (h * scale - RESIZE) / 2 + win.y
    box = (left / scale, top / scale, (left + CROP) / scale, (top + CROP) / scale)
    out = img.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box)
    if win.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def crops(records: list[bytes], indices, *, seed: int, train: bool) -> np.ndarray:
    """uint8 [len(records), 224, 224, 3]: `crop` of each record with its example index's window."""
    out = np.empty((len(records), CROP, CROP, 3), np.uint8)
    for i, (data, index) in enumerate(zip(records, indices, strict=True)):
        out[i] = crop(data, window(int(index), seed=seed, train=train))
    return out
