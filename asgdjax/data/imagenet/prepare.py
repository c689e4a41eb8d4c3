"""Prepare ILSVRC-2012 from TFDS's manual route (the two official tars) as TFDS array_record, no TensorFlow.

TFDS's own `imagenet2012` builder cannot run without TensorFlow: it tests the archives with
`tf.io.gfile.exists`, reads the validation labels through `tf.io.gfile.GFile`, and fixes the 22 CMYK
JPEGs and the one PNG-in-JPEG with `tf.image` (`tfds.core.utils.jpeg_cmyk_to_rgb`, `png_to_jpeg`). So
`AsgdImagenet2012` (TFDS name `asgd_imagenet2012`, no clash with TFDS's `imagenet2012`)
reads the same archive layout and the same label files that ship inside tensorflow_datasets, and stores
each JPEG's bytes as they are (decoding happens per batch, see preprocess.py), the integer label and the
file name. Files that are not RGB or greyscale JPEGs (found by content, so also in a miniature) are
re-encoded with Pillow, as TFDS re-encodes them with TensorFlow.
Validation labels: TFDS zips its label file with the sorted names in the tar; here image k
(ILSVRC2012_val_%08d.JPEG) takes line k, which is the same on the full archive and also right on a subset.
Before any work both tars are checked from their headers (seconds), so a missing, foreign or truncated
archive is one ConfigError line, not an error hours in. TFDS's writer shuffles through temporary files in
`data_dir` (about the dataset's size again, ~150 GB, while preparing); memory stays bounded.
"""

from __future__ import annotations

import functools
import io
import os
import re
import tarfile
from collections.abc import Iterator
from typing import IO

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from asgdjax.data.imagenet.preprocess import JPEG_FORMATS
from asgdjax.data.imagenet.spec import NUM_VALIDATION, TRAIN_TAR, VAL_TAR, synsets, tfds_label_file, validation_synsets
from asgdjax.data.registry import default_data_dir
from asgdjax.errors import ConfigError

_SYNSET_TAR = re.compile(r"(n\d{8})\.tar")
_VAL_JPEG = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
_HINT = f"expected the official {TRAIN_TAR} and {VAL_TAR} (image-net.org) in the folder given as --manual_dir"


class AsgdImagenet2012(tfds.core.GeneratorBasedBuilder):
    """ILSVRC-2012 train (1,281,167) and validation (50,000): JPEG bytes as stored, TFDS's label numbering."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"manual_dir must hold {TRAIN_TAR} and {VAL_TAR} (https://image-net.org)."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="ILSVRC-2012 with each JPEG stored as bytes (decoded and cropped by asgdjax per batch).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # encoded JPEG bytes
                    "label": tfds.features.ClassLabel(names_file=tfds_label_file("labels")),
                    "file_name": tfds.features.Text(),  # e.g. n01440764_10026.JPEG
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://image-net.org/",
        )

    def _split_generators(self, dl_manager):
        folder = str(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(os.path.join(folder, TRAIN_TAR), "train"),
            "validation": self._generate_examples(os.path.join(folder, VAL_TAR), "validation"),
        }

    def _generate_examples(self, path: str, split: str):
        yield from (train_examples(path) if split == "train" else validation_examples(path))


def prepare_imagenet(manual_dir: str, data_dir: str | None = None) -> str:
    """Write ILSVRC-2012 as array_record under `data_dir` (default $TFDS_DATA_DIR) from the two tars in
    `manual_dir`; returns the folder written. Already prepared: returns at once (the tars may be gone)."""
    builder = AsgdImagenet2012(data_dir=data_dir or default_data_dir(), file_format="array_record")
    if os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json")):
        return str(builder.data_dir)
    check_archive(os.path.join(manual_dir, TRAIN_TAR), _SYNSET_TAR)
    check_archive(os.path.join(manual_dir, VAL_TAR), _VAL_JPEG)
    from asgdjax.data.load import _remove_empty_tfds_tmpdirs

    try:
        builder.download_and_prepare(
            file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    finally:
        _remove_empty_tfds_tmpdirs()
    return str(builder.data_dir)


def check_archive(path: str, names: re.Pattern[str]) -> None:
    """One ConfigError line unless `path` is a whole tar whose files are all named like `names`
    (reads the headers and the end-of-archive block only)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path} not found; {_HINT}")
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        what = "is truncated" if "unexpected end" in str(e) else "is not a readable tar archive"
        raise ConfigError(f"{path} {what} ({e}); {_HINT}") from None
    files = [m for m in members if m.isfile()]
    if not files:
        raise ConfigError(f"{path} holds no files; {_HINT}")
    last = members[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    with open(path, "rb") as f:
        f.seek(end)
        marker = f.read(tarfile.BLOCKSIZE)
    if marker != bytes(tarfile.BLOCKSIZE):  # cut short: inside the last member or before the next header
        raise ConfigError(f"{path} is truncated ({os.path.getsize(path):,} bytes; ends inside {last.name!r}); {_HINT}")
    for m in files:
        _name_check(path, m.name, names)


def _name_check(path: str, name: str, names: re.Pattern[str]) -> str:
    """The name's first group (synset or validation number) after checking it against the official layout."""
    match = names.fullmatch(os.path.basename(name))
    if match is None:
        raise ConfigError(f"{path} holds {name!r}, expected names like {names.pattern!r}; {_HINT}")
    key = match.group(1)
    if names is _SYNSET_TAR and key not in _synset_set():
        raise ConfigError(f"{path} holds {name!r}, a synset not among TFDS's 1,000 ILSVRC-2012 classes; {_HINT}")
    if names is _VAL_JPEG and not 1 <= int(key) <= NUM_VALIDATION:
        raise ConfigError(f"{path} holds {name!r}, numbered outside 1..{NUM_VALIDATION}; {_HINT}")
    return key


@functools.cache
def _synset_set() -> frozenset[str]:
    return frozenset(synsets())


def train_examples(path: str) -> Iterator[tuple[str, dict]]:
    """(key, example) for every JPEG of every per-synset tar inside the train tar, streamed."""
    for inner_name, fobj in _members(path):
        synset = _name_check(path, inner_name, _SYNSET_TAR)
        try:
            with tarfile.open(fileobj=fobj, mode="r|") as inner:
                for m in inner:
                    if m.isfile():
                        data = _read(inner, m)
                        name = os.path.basename(m.name)
                        where = f"{path}:{inner_name}/{name}"
                        yield name, {"image": rgb_jpeg(data, where), "label": synset, "file_name": name}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ConfigError(f"{path} is damaged inside {inner_name!r} ({e}); {_HINT}") from None


def validation_examples(path: str) -> Iterator[tuple[str, dict]]:
    """(key, example) for every validation JPEG; image k takes line k of TFDS's validation label file."""
    labels = validation_synsets()
    for name, fobj in _members(path):
        number = int(_name_check(path, name, _VAL_JPEG))
        try:
            data = fobj.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ConfigError(f"{path} is damaged at {name!r} ({e}); {_HINT}") from None
        base = os.path.basename(name)
        yield base, {"image": rgb_jpeg(data, f"{path}:{base}"), "label": labels[number - 1], "file_name": base}


def _members(path: str) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, file object) of each file in the tar at `path`, read as a stream; damage is one line."""
    try:
        with tarfile.open(path, "r|") as tar:
            for m in tar:
                fobj = tar.extractfile(m) if m.isfile() else None
                if fobj is not None:
                    yield m.name, fobj
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigError(f"{path} is damaged ({e}); {_HINT}") from None


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fobj = tar.extractfile(member)
    assert fobj is not None  # a regular file
    data = fobj.read()
    if len(data) != member.size:
        raise EOFError(f"{member.name} ends after {len(data)} of {member.size} bytes")
    return data


def rgb_jpeg(data: bytes, where: str) -> bytes:
    """`data` as it is when it is an RGB or greyscale JPEG; anything else Pillow reads (the CMYK JPEGs, the
    PNG named .JPEG) re-encoded as an RGB JPEG at quality 100, as TFDS does."""
    try:
        img = Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError) as e:
        raise ConfigError(f"{where} is not an image Pillow can read ({e}); {_HINT}") from None
    if img.format in JPEG_FORMATS and img.mode in ("RGB", "L"):
        return data
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=100)
    return out.getvalue()
