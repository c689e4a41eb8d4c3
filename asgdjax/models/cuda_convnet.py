"""The cuda-convnet CIFAR-10 reference nets, layer by layer (Krizhevsky's layers-18pct and layers-80sec).

layers-18pct: conv5x5x32-maxpool3/2(relu)-rnorm3, conv5x5x32(relu)-avgpool3/2-rnorm3,
conv5x5x64(relu)-avgpool3/2, fc10 (about 18% test error in cuda-convnet).
layers-80sec: the same without rnorm and with fc64(relu) before fc10 (about 26%).
rnorm is cuda-convnet's same-map response normalisation, size 3, scale 5e-5, power 0.75.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from asgdjax.models.layers import convnet_pool, response_norm_same_map
from asgdjax.models.partitioning import CLASSES, conv, dense

RNORM_SIZE, RNORM_SCALE, RNORM_POWER = 3, 5e-5, 0.75


class CudaConvnetCifar(nn.Module):
    """Shared trunk of the two CIFAR-10 nets; `rnorm` and `hidden` pick the variant."""

    num_classes: int = 10
    rnorm: bool = True
    hidden: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        def norm(y):
            return response_norm_same_map(y, RNORM_SIZE, RNORM_SCALE, RNORM_POWER) if self.rnorm else y

        x = conv(32, 5, name="conv1")(x)
        x = norm(nn.relu(convnet_pool(x, "max")))
        x = nn.relu(conv(32, 5, name="conv2")(x))
        x = norm(convnet_pool(x, "avg"))
        x = nn.relu(conv(64, 5, name="conv3")(x))
        x = convnet_pool(x, "avg")
        x = x.reshape((x.shape[0], -1))
        if self.hidden:
            x = nn.relu(dense(self.hidden, name="fc64")(x))
        return dense(self.num_classes, CLASSES, name="fc10")(x)


def layers_18pct(num_classes: int = 10) -> CudaConvnetCifar:
    """cuda-convnet `layers-18pct.cfg`."""
    return CudaConvnetCifar(num_classes=num_classes, rnorm=True, hidden=0)


def layers_80sec(num_classes: int = 10) -> CudaConvnetCifar:
    """cuda-convnet `layers-80sec.cfg`."""
    return CudaConvnetCifar(num_classes=num_classes, rnorm=False, hidden=64)
