"""The bundled image-classification task: one implementation of the `asgdjax.core.task.Task` protocol.

Model + dataset on device + pure loss/gradient/eval functions shared by every mode. The dataset lives on
the device once; steps receive example *indices* and gather there (`device_data` lays the splits out).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.data import ArrayDataset, DatasetSpec
from asgdjax.data.augment import normalize, random_crop_flip
from asgdjax.models import Classifier


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
    """Pure functions of (params, data, indices, key); `data` is the pytree from `device_data()`."""

    model: Classifier
    spec: DatasetSpec
    augment: bool

    def init(self, key: jax.Array) -> dict:
        return self.model.init(key)

    def partition_specs(self) -> dict:
        """Logical axis names of every parameter (for `asgdjax.parallel`)."""
        return self.model.partition_specs()

    def batch_loss(self, params, data: dict, indices: jax.Array, key: jax.Array) -> jax.Array:
        images = jnp.take(data["train_x"], indices, axis=0)
        labels = jnp.take(data["train_y"], indices, axis=0)
        k_aug, k_drop = jax.random.split(key)
        if self.augment:
            images = random_crop_flip(k_aug, images)
        x = normalize(images, self.spec.mean, self.spec.std)
        return self.model.loss(params, x, labels, key=k_drop)

    def grad(self, params, data: dict, indices: jax.Array, key: jax.Array):
        """(loss, gradient) of the mean cross-entropy on the batch `indices`."""
        return jax.value_and_grad(self.batch_loss)(params, data, indices, key)

    @functools.partial(jax.jit, static_argnums=0)
    def _eval_batch(self, params, images, labels, mask):
        x = normalize(images, self.spec.mean, self.spec.std)
        logits = self.model.logits(params, x)
        correct = (jnp.argmax(logits, -1) == labels) & mask
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]
        return jnp.sum(correct), jnp.sum(jnp.where(mask, nll, 0.0))

    def evaluate(self, params, data: dict, batch_size: int = 1000) -> dict[str, float]:
        """Accuracy and mean loss on the whole test split (padded last batch, masked)."""
        x, y = data["test_x"], data["test_y"]
        n = int(y.shape[0])
        correct = total_nll = 0.0
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            m = int(yb.shape[0])
            mask = jnp.arange(batch_size) < m
            if m < batch_size:
                xb = jnp.pad(xb, ((0, batch_size - m),) + ((0, 0),) * (xb.ndim - 1))
                yb = jnp.pad(yb, (0, batch_size - m))
            c, nll = self._eval_batch(params, xb, yb, mask)
            correct += float(c)
            total_nll += float(nll)
        return {"test_accuracy": correct / n, "test_loss": total_nll / n}


def device_data(dataset: ArrayDataset, device=None) -> dict[str, jax.Array]:
    """Put both splits on `device` (default: the first) once."""
    arrays = {
        "train_x": dataset.train_images,
        "train_y": dataset.train_labels,
        "test_x": dataset.test_images,
        "test_y": dataset.test_labels,
    }
    return {k: jax.device_put(np.asarray(v), device) for k, v in arrays.items()}
