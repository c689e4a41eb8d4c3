"""Flax models behind one small interface: `get_model(name, num_classes, input_shape)` -> `Classifier`
(pure functions over plain parameter pytrees)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from asgdjax.errors import ConfigError
from asgdjax.models.alexnet import AlexNet
from asgdjax.models.cnn import SmallCNN
from asgdjax.models.cuda_convnet import layers_18pct, layers_80sec
from asgdjax.models.mlp import MLP

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "small_cnn": lambda n: SmallCNN(num_classes=n),
    "cifar_18pct": layers_18pct,
    "cifar_80sec": layers_80sec,
    "alexnet": lambda n: AlexNet(num_classes=n),
    "mlr": lambda n: MLP(num_classes=n, depth=0),
    "mlp": lambda n: MLP(num_classes=n, width=128, depth=1),
    "mlp3": lambda n: MLP(num_classes=n, width=128, depth=3),
}
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A Flax module with pure init / logits / loss functions over plain parameter pytrees.

    dtype: the compute dtype. Parameters stay float32 (the master copy the server and its optimizer
    hold); with "bfloat16" each forward pass casts them and the images to bfloat16 on use, so matmuls and
    convolutions run at the accelerator's bf16 rate, while logits, the loss and every gradient are float32
    (the gradient of a cast is cast back), as in mixed-precision training (Micikevicius et al. 2018).
    """

    module: nn.Module
    input_shape: tuple[int, int, int]
    dtype: str = "float32"

    def init(self, key: jax.Array) -> dict:
        """Unboxed float32 parameters (logical partition names stay available via `partition_specs`)."""
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        return nn.meta.unbox(self.module.init({"params": key}, x)["params"])

    def partition_specs(self, key: jax.Array | None = None) -> dict:
        """Logical PartitionSpecs per parameter, from the annotations (computed abstractly, no FLOPs)."""
        key = jax.random.key(0) if key is None else key
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        boxed = jax.eval_shape(lambda k: self.module.init({"params": k}, x), key)["params"]
        return nn.get_partition_spec(boxed)

    def logits(self, params: dict, images: jax.Array, train: bool = False, key=None) -> jax.Array:
        rngs = {"dropout": key} if (train and key is not None) else {}
        if self.dtype != "float32":
            compute = jnp.dtype(self.dtype)
            params = jax.tree.map(lambda p: p.astype(compute), params)
            images = images.astype(compute)
        out: jax.Array = self.module.apply({"params": params}, images, train=train, rngs=rngs)  # type: ignore[assignment]
        return out.astype(jnp.float32)

    def loss(self, params: dict, images: jax.Array, labels: jax.Array, key=None) -> jax.Array:
        """Mean softmax cross-entropy on a training batch."""
        logits = self.logits(params, images, train=True, key=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def get_model(name: str, num_classes: int, input_shape: tuple[int, int, int], *, dtype: str = "float32") -> Classifier:
    """Build the named model computing in `dtype`; an unknown name or dtype raises ConfigError listing the
    known ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    h, w, c = input_shape
    return Classifier(MODELS[name](num_classes), (int(h), int(w), int(c)), dtype)


def check_input(model: Classifier, name: str, dataset: str) -> None:
    """ConfigError unless `model` can take the dataset's images (AlexNet's strided convolutions and pools
    reduce 8x8 or 32x32 images to nothing); traced abstractly, no FLOPs."""
    try:
        jax.eval_shape(model.init, jax.random.key(0))
    except (ZeroDivisionError, ValueError, TypeError) as e:
        h, w, c = model.input_shape
        raise ConfigError(
            f"model {name!r} cannot take {dataset}'s {h}x{w}x{c} images ({type(e).__name__} building it); "
            "use a model for small images (e.g. small_cnn, mlp) or a dataset of larger ones (imagenet2012)"
        ) from None


def param_count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
