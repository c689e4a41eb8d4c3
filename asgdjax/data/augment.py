"""On-device preprocessing: uint8 -> normalised float32, plus random crop + flip for natural images.

It runs inside the jitted step, keyed by an explicit PRNG key, so augmentation replays exactly.
cuda-convnet trained CIFAR/ImageNet on random crops and horizontal flips; here the crop is a random
32x32 window of the image zero-padded by `pad` pixels, so the cuda-convnet nets keep their 32x32 input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean, std) -> jax.Array:
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop_flip(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Per-example random crop (of the zero-padded image, same size out) and horizontal flip."""
    n, h, w, _ = images.shape
    k_crop, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(k_flip, 0.5, (n,))
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(img, off, flip):
        crop = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
        return jnp.where(flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, offsets, flips)
