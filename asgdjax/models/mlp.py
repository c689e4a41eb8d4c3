"""Matmul-only models for the staleness studies (Dai et al. 2019 grow depth from MLR to MLPs to CNNs)."""

from __future__ import annotations

import jax
from flax import linen as nn

from asgdjax.models.partitioning import CLASSES, dense


class MLP(nn.Module):
    """Flatten, `depth` hidden ReLU layers of `width` units, then the classifier; depth 0 is multinomial
    logistic regression (MLR)."""

    num_classes: int = 10
    width: int = 128
    depth: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for i in range(self.depth):
            x = nn.relu(dense(self.width, name=f"fc{i + 1}")(x))
        return dense(self.num_classes, CLASSES, name="logits")(x)
