"""cuda-convnet layers that Flax lacks: local response normalisation (same-map and cross-map) and
pooling with cuda-convnet's output-size rule (partial windows at the border count)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def response_norm_same_map(x: jax.Array, size: int, scale: float, power: float) -> jax.Array:
    """cuda-convnet `rnorm`: x / (1 + scale/size^2 * sum of x^2 over a size x size window) ^ power.

    The window is centred on each pixel within the same feature map (zero outside the image); cuda-convnet
    divides `scale` by size^2 for this layer type, so the config's scale is passed unchanged here.
    """
    sq = jnp.square(x)
    lo = (size - 1) // 2
    pad = ((0, 0), (lo, size - 1 - lo), (lo, size - 1 - lo), (0, 0))
    window_sum = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), pad)
    return x / jnp.power(1.0 + (scale / size**2) * window_sum, power)


def response_norm_cross_map(x: jax.Array, size: int, scale: float, power: float) -> jax.Array:
    """cuda-convnet `cmrnorm` (AlexNet's LRN): x / (1 + scale/size * sum over `size` adjacent maps) ^ power."""
    sq = jnp.square(x)
    lo = (size - 1) // 2
    pad = ((0, 0), (0, 0), (0, 0), (lo, size - 1 - lo))
    window_sum = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), pad)
    return x / jnp.power(1.0 + (scale / size) * window_sum, power)


def convnet_pool(x: jax.Array, kind: str, size: int = 3, stride: int = 2) -> jax.Array:
    """Pooling with cuda-convnet's output count ceil((n - size) / stride) + 1 (start=0, outputsX=0).

    Windows that run past the border are kept (padded with -inf for max, zeros for avg, as cuda-convnet's
    average divides by the full window size).
    """
    n = x.shape[1]
    out = -(-(n - size) // stride) + 1
    extra = max(0, (out - 1) * stride + size - n)
    pad = ((0, extra), (0, extra))
    if kind == "max":
        return nn.max_pool(x, (size, size), (stride, stride), padding=pad)
    return nn.avg_pool(x, (size, size), (stride, stride), padding=pad, count_include_pad=True)
