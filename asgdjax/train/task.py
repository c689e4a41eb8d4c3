"""The bundled image-classification task: one implementation of the `asgdjax.core.task.Task` protocol.

Model + dataset on device + pure loss/gradient/eval functions shared by every mode. The dataset lives on
the device once; steps receive example *indices* and gather there (`device_data` lays the splits out).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.task import take_rows
from asgdjax.data import ArrayDataset, DatasetSpec, StreamingDataset
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
        images = take_rows(data["train_x"], indices)
        labels = take_rows(data["train_y"], indices)
        k_aug, k_drop = jax.random.split(key)
        if self.augment:
            images = random_crop_flip(k_aug, images)
        x = normalize(images, self.spec.mean, self.spec.std)
        return self.model.loss(params, x, labels, key=k_drop)

    def grad(self, params, data: dict, indices: jax.Array, key: jax.Array):
        """(loss, gradient) of the mean cross-entropy on the batch `indices`."""
        return jax.value_and_grad(self.batch_loss)(params, data, indices, key)

    def _logits(self, params, images):
        return self.model.logits(params, normalize(images, self.spec.mean, self.spec.std))

    def _eval_terms(self, params, images, labels, mask):
        """(correct predictions, summed negative log-likelihood) over the unmasked examples of one batch."""
        logits = self._logits(params, images)
        correct = (jnp.argmax(logits, -1) == labels) & mask
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]
        return jnp.sum(correct), jnp.sum(jnp.where(mask, nll, 0.0))

    @functools.partial(jax.jit, static_argnums=0)
    def _eval_batch(self, params, images, labels, mask):
        return self._eval_terms(params, images, labels, mask)

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def _eval_split(self, params, x, y, batch_size: int):
        """The whole resident split in one program: batches of `batch_size` (the last padded and masked)
        scanned on the device, so an evaluation costs one dispatch and one transfer, not one per batch."""
        xs, ys, mask = _batched(x, y, batch_size)

        def one(carry, batch):
            c, nll = self._eval_terms(params, *batch)
            return (carry[0] + c, carry[1] + nll), None

        (correct, nll), _ = jax.lax.scan(one, (jnp.int32(0), jnp.float32(0.0)), (xs, ys, mask))
        return correct, nll

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def _right_split(self, params, x, y, batch_size: int):
        """Per example of the resident split: whether its prediction is right (batches scanned as above)."""
        xs, ys, _ = _batched(x, y, batch_size)

        def one(carry, batch):
            return carry, jnp.argmax(self._logits(params, batch[0]), -1) == batch[1]

        _, right = jax.lax.scan(one, None, (xs, ys))
        return right.reshape(-1)[: y.shape[0]]

    def correct(self, params, data: dict, batch_size: int = 1000) -> np.ndarray:
        """Whether each test example is classified right (the planner scores the examples recent
        evaluations got wrong first: asgdjax.plan.probe)."""
        y = data["test_y"]
        return np.asarray(self._right_split(params, data["test_x"], y, min(batch_size, int(y.shape[0]))))

    def evaluate(self, params, data: dict, batch_size: int = 1000) -> dict[str, float]:
        """Accuracy and mean loss on the whole test split (padded last batch, masked)."""
        y = data["test_y"]
        n = int(y.shape[0])
        correct, nll = jax.device_get(self._eval_split(params, data["test_x"], y, min(batch_size, n)))
        return {"test_accuracy": float(correct) / n, "test_loss": float(nll) / n}

    def _score(self, params, batches, n: int, batch_size: int) -> dict[str, float]:
        correct = total_nll = 0.0
        for xb, yb in batches:
            m = int(yb.shape[0])
            mask = jnp.arange(batch_size) < m
            if m < batch_size:
                xb = jnp.pad(xb, ((0, batch_size - m),) + ((0, 0),) * (xb.ndim - 1))
                yb = jnp.pad(yb, (0, batch_size - m))
            c, nll = self._eval_batch(params, xb, yb, mask)
            correct += float(c)
            total_nll += float(nll)
        return {"test_accuracy": correct / n, "test_loss": total_nll / n}


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingClassificationTask(ClassificationTask):
    """The classifier on a dataset read from disk batch by batch (ILSVRC-2012): `load` decodes and crops a
    chunk of batches on the host (random crop + flip keyed by each event's seed), `grad` receives them in
    place of indices, and `evaluate` streams the held-out split (centre crops)."""

    train: Any = None  # sources with load(indices, seed=, train=) and __len__
    test: Any = None
    eval_examples: int = 0  # 0: the whole held-out split

    def load(self, indices: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """{"images": uint8 [n, B, H, W, C], "labels": int32 [n, B]} for n events' batches."""
        parts = [self.train.load(idx, seed=int(s), train=True) for idx, s in zip(indices, seeds, strict=True)]
        return {k: np.stack([p[k] for p in parts]) for k in ("images", "labels")}

    def batch_loss(self, params, data: dict, indices: Any, key: jax.Array) -> jax.Array:
        """`indices` is the loaded batch here ({"images", "labels"}), as asgdjax.core.inputs passes it."""
        batch = indices
        x = normalize(batch["images"], self.spec.mean, self.spec.std)
        return self.model.loss(params, x, batch["labels"], key=jax.random.split(key)[1])

    def evaluate(self, params, data: dict, batch_size: int = 250) -> dict[str, float]:
        n = min(len(self.test), self.eval_examples or len(self.test))

        def batches():
            for a in range(0, n, batch_size):
                b = self.test.load(np.arange(a, min(a + batch_size, n)), seed=0, train=False)
                yield jnp.asarray(b["images"]), jnp.asarray(b["labels"])

        return self._score(params, batches(), n, batch_size)


def _batched(x, y, batch_size: int):
    """The split as (batches, batch_size, ...) arrays, the last batch zero-padded, and the mask of real
    examples."""
    n = y.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    xs = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)).reshape(nb, batch_size, *x.shape[1:])
    ys = jnp.pad(y, (0, pad)).reshape(nb, batch_size)
    return xs, ys, (jnp.arange(nb * batch_size) < n).reshape(nb, batch_size)


def make_task(model: Classifier, dataset: ArrayDataset | StreamingDataset, *, augment: bool, eval_examples: int = 0):
    """The classification task of a dataset held in memory (indices gathered on the device) or streamed."""
    if isinstance(dataset, StreamingDataset):
        return StreamingClassificationTask(model, dataset.spec, False, dataset.train, dataset.test, eval_examples)
    return ClassificationTask(model, dataset.spec, augment=bool(augment and dataset.spec.augment))


def device_data(dataset: ArrayDataset | StreamingDataset, device=None) -> dict[str, jax.Array]:
    """Put both splits on `device` (default: the first) once; a streamed dataset has nothing to put."""
    if isinstance(dataset, StreamingDataset):
        return {}
    arrays = {
        "train_x": dataset.train_images,
        "train_y": dataset.train_labels,
        "test_x": dataset.test_images,
        "test_y": dataset.test_labels,
    }
    return {k: jax.device_put(np.asarray(v), device) for k, v in arrays.items()}
