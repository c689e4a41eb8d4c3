"""ImageNet input pipeline: decoded + cropped + flipped images per second per decode process, and with 1
and 2 processes, on a miniature ILSVRC-2012 of realistic JPEG sizes (about 500x375, the ILSVRC average; one
image in five twice that), next to what one AlexNet worker consumes on an H100: how many cores feed a GPU.
Also grain's mp_prefetch (batches made in its processes) over the same records and crop: the alternative
to ImageNetSource's process pool.

  python experiments/bench/imagenet_pipeline.py [--quick] [--batch=128] [--size=500x375]
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time

import numpy as np
from absl import app, flags
from common import best_time, emit
from PIL import Image

from asgdjax.data.imagenet import ImageNetSource, make_miniature, prepare_imagenet
from asgdjax.data.imagenet.preprocess import crop, window
from asgdjax.data.imagenet.source import open_records

flags.DEFINE_bool("quick", False, "Fewer images (under a minute).")
flags.DEFINE_integer("batch", 128, "Images per load() call.")
flags.DEFINE_string("size", "500x375", "Miniature image size, WIDTHxHEIGHT.")
flags.DEFINE_bool("grain", True, "Also time grain's mp_prefetch (skipped when grain is not installed).")
FLAGS = flags.FLAGS
H100_RESULT = os.path.join(os.path.dirname(__file__), "..", "results", "gpu_alexnet_h100.txt")


def h100_consumption() -> float:
    """Images/s of the plain jitted AlexNet b128 loop on an H100, from the recorded gpu_alexnet run."""
    with open(H100_RESULT) as f:
        return float(json.loads(f.read().strip().splitlines()[-1])["plain_images_per_s"])


class GrainCrop:
    """grain map_with_index transform: the same training crop as ImageNetSource.load (picklable)."""

    def __call__(self, index: int, record: dict) -> np.ndarray:
        return crop(record["image"], window(index, seed=0, train=True))


def grain_rate(data_dir: str, batch: int, batches: int, processes: int) -> float:
    """Images/s of grain's MapDataset -> batch -> mp_prefetch (each process decodes whole batches, one
    thread each, as the pool does), timed over `batches` batches once every process has delivered."""
    import grain

    ds = grain.MapDataset.source(open_records(data_dir, "train")).map_with_index(GrainCrop()).repeat().batch(batch)
    stream = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    it = iter(stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=processes)))
    for _ in range(2 * processes):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batch * batches / (time.perf_counter() - t)


def textbook_crop(data: bytes) -> np.ndarray:
    """The baseline: decode the whole image, rescale it to shorter side 256, cut the central 224."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    big = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
    left, top = (big.size[0] - 224) // 2, (big.size[1] - 224) // 2
    return np.asarray(big.crop((left, top, left + 224, top + 224)))


def crop_speedup(data_dir: str, repeats: int) -> tuple[float, float]:
    """(baseline ms, ours ms) per image, one process, over every training record (already read)."""
    records = open_records(data_dir, "train")
    data = [it["image"] for it in records.__getitems__(list(range(len(records))))]
    ours = best_time(lambda: [crop(d, window(i, seed=0, train=True)) for i, d in enumerate(data)], repeats)
    base = best_time(lambda: [textbook_crop(d) for d in data], repeats)
    return base / len(data) * 1e3, ours / len(data) * 1e3


def pool_rate(data_dir: str, batches: list, processes: int, repeats: int) -> float:
    """Images/s of ImageNetSource.load over `batches` with `processes` decode processes (pool started)."""
    with ImageNetSource(data_dir, "train", workers=processes) as source:
        source.load(batches[0], seed=0, train=True)
        t = best_time(lambda: [source.load(b, seed=s, train=True) for s, b in enumerate(batches)], repeats)
    return sum(len(b) for b in batches) / t


def record_stats(data_dir: str) -> tuple[float, float, float]:
    """(mean JPEG kB, mean width, mean height) of the prepared training records, and the read-only rate."""
    records = open_records(data_dir, "train")
    items = records.__getitems__(list(range(len(records))))
    sizes = [Image.open(io.BytesIO(it["image"])).size for it in items]
    kb = float(np.mean([len(it["image"]) for it in items])) / 1e3
    return kb, float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))


def main(argv):
    del argv
    width, height = (int(v) for v in FLAGS.size.split("x"))
    classes, per_class, repeats = (2, 64, 2) if FLAGS.quick else (4, 128, 3)
    with tempfile.TemporaryDirectory() as tmp:
        manual = make_miniature(
            os.path.join(tmp, "manual"), classes=classes, train_per_class=per_class, val=4, size=(width, height)
        )
        data_dir = os.path.join(tmp, "tfds")
        prepare_imagenet(manual, data_dir)
        kb, mean_w, mean_h = record_stats(data_dir)
        n = classes * per_class
        batches = [np.arange(i, min(i + FLAGS.batch, n)) for i in range(0, n, FLAGS.batch)]
        base_ms, crop_ms = crop_speedup(data_dir, repeats)
        rates = {p: pool_rate(data_dir, batches, p, repeats) for p in (1, 2)}
        grain_2 = None
        if FLAGS.grain:
            try:
                grain_2 = grain_rate(data_dir, FLAGS.batch, max(2, n // FLAGS.batch), 2)
            except ImportError:
                print("grain not installed: its mp_prefetch is not timed")
    gpu = h100_consumption()
    cores = math.ceil(gpu / rates[1])
    print(f"miniature: {n} training JPEGs, mean {mean_w:.0f}x{mean_h:.0f} px, {kb:.0f} kB; batch {FLAGS.batch}")
    print(
        f"crop alone: {crop_ms:.2f} ms per image against {base_ms:.2f} ms decoding, rescaling and cropping the "
        f"whole image ({base_ms / crop_ms:.2f}x)"
    )
    print(f"1 decode process:   {rates[1]:8.1f} img/s ({1e3 / rates[1]:.2f} ms per image)")
    print(f"2 decode processes: {rates[2]:8.1f} img/s ({rates[2] / 2:.1f} per process, {rates[2] / rates[1]:.2f}x)")
    if grain_2 is not None:
        print(f"grain mp_prefetch, 2 processes: {grain_2:8.1f} img/s ({grain_2 / rates[2]:.2f}x the pool)")
    print(
        f"one AlexNet worker on an H100 consumes {gpu:,.0f} img/s (plain loop, batch 128): about {cores} "
        f"decode processes at this machine's per-process rate"
    )
    emit(
        {
            "benchmark": "imagenet_pipeline",
            "images": n,
            "batch": FLAGS.batch,
            "mean_jpeg_kb": kb,
            "mean_size": [mean_w, mean_h],
            "crop_ms_per_image": crop_ms,
            "textbook_crop_ms_per_image": base_ms,
            "crop_speedup": base_ms / crop_ms,
            "images_per_s_per_process": rates[1],
            "images_per_s_1_process": rates[1],
            "images_per_s_2_processes": rates[2],
            "scaling_2_processes": rates[2] / rates[1],
            "grain_images_per_s_2_processes": grain_2,
            "h100_alexnet_images_per_s": gpu,
            "processes_to_feed_h100": cores,
        }
    )


if __name__ == "__main__":
    app.run(main)
