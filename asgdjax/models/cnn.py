"""The small CNN for digits and MNIST: conv32-conv64-fc128 (the model docs/design.md's timings use)."""

from __future__ import annotations

import jax
from flax import linen as nn

from asgdjax.models.partitioning import CLASSES, conv, dense


class SmallCNN(nn.Module):
    """conv3x3x32-maxpool2, conv3x3x64-maxpool2, fc128, fc(num_classes); ReLU throughout."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(conv(32, 3, name="conv1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
        x = nn.relu(conv(64, 3, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(dense(128, name="fc1")(x))
        return dense(self.num_classes, CLASSES, name="fc2")(x)
