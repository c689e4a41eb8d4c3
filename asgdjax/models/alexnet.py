"""The one-GPU cuda-convnet2 ImageNet AlexNet (layers-imagenet-1gpu): 224x224 input, 1000 classes.

conv11x11/4 64 - cmrnorm5 - maxpool3/2, conv5x5 192 - cmrnorm5 - maxpool3/2, conv3x3 384, 256, 256 -
maxpool3/2, fc4096 - dropout, fc4096 - dropout, fc1000 (42.5% top-1, single view, in cuda-convnet2).
conv1 has cuda-convnet's implicit border: 55x55 outputs from 224 input, so 3 zero rows/cols at the end.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from asgdjax.models.layers import response_norm_cross_map
from asgdjax.models.partitioning import CLASSES, conv, dense

LRN_SIZE, LRN_SCALE, LRN_POWER = 5, 1e-4, 0.75


class AlexNet(nn.Module):
    """cuda-convnet2's one-GPU AlexNet; dropout 0.5 on the two hidden fc layers when training."""

    num_classes: int = 1000
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        def lrn(y):
            return response_norm_cross_map(y, LRN_SIZE, LRN_SCALE, LRN_POWER)

        def pool(y):
            return nn.max_pool(y, (3, 3), (2, 2), padding="VALID")

        x = nn.relu(conv(64, 11, stride=4, padding=((0, 3), (0, 3)), name="conv1")(x))
        x = pool(lrn(x))
        x = nn.relu(conv(192, 5, name="conv2")(x))
        x = pool(lrn(x))
        x = nn.relu(conv(384, 3, name="conv3")(x))
        x = nn.relu(conv(256, 3, name="conv4")(x))
        x = nn.relu(conv(256, 3, name="conv5")(x))
        x = pool(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(dense(4096, name="fc6")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(dense(4096, name="fc7")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_classes, CLASSES, name="fc8")(x)
