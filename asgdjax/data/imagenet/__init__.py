"""ILSVRC-2012 for the AlexNet setting: prepare the official tars as array_record (no TensorFlow), read
random-access batches decoded and cropped in several processes, and a miniature for tests.

`prepare_imagenet` and `ImageNetSource` load TFDS on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgdjax.data.imagenet.miniature import make_miniature
from asgdjax.data.imagenet.spec import IMAGENET_SPEC

if TYPE_CHECKING:
    from asgdjax.data.imagenet.prepare import prepare_imagenet
    from asgdjax.data.imagenet.source import ImageNetSource

__all__ = ["IMAGENET_SPEC", "ImageNetSource", "make_miniature", "prepare_imagenet"]


def __getattr__(name: str):
    if name == "prepare_imagenet":
        from asgdjax.data.imagenet.prepare import prepare_imagenet

        return prepare_imagenet
    if name == "ImageNetSource":
        from asgdjax.data.imagenet.source import ImageNetSource

        return ImageNetSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
