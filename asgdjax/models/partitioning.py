"""Logical axis names for every parameter, so the sharding rules (one table) can map them to mesh axes."""

from __future__ import annotations

from flax import linen as nn

from asgdjax.core.axes import CLASSES, CONV_IN, CONV_OUT, EMBED, HIDDEN

__all__ = ["CLASSES", "CONV_IN", "CONV_OUT", "EMBED", "HIDDEN", "conv", "dense"]


def conv(features: int, kernel: int, stride: int = 1, padding="SAME", name: str | None = None) -> nn.Conv:
    """A Conv whose kernel is annotated (h, w, conv_in, conv_out) and bias (conv_out)."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, None, CONV_IN, CONV_OUT)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (CONV_OUT,)),
        name=name,
    )


def dense(features: int, out_axis: str = HIDDEN, name: str | None = None) -> nn.Dense:
    """A Dense whose kernel is annotated (embed, out_axis) and bias (out_axis)."""
    return nn.Dense(
        features,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (EMBED, out_axis)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (out_axis,)),
        name=name,
    )
