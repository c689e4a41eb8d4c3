"""Model shapes, exact parameter counts (hand-computed), and the cuda-convnet layers against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asgdjax.errors import ConfigError
from asgdjax.models import get_model, param_count
from asgdjax.models.layers import convnet_pool, response_norm_cross_map, response_norm_same_map


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def fc(nin, nout):
    return nin * nout + nout


EXPECTED = {
    # conv3x3 1->32, conv3x3 32->64, two 2x2 pools: 28 -> 7, fc 7*7*64 -> 128, fc 128 -> 10
    ("small_cnn", (28, 28, 1), 10): conv(3, 1, 32) + conv(3, 32, 64) + fc(7 * 7 * 64, 128) + fc(128, 10),
    ("small_cnn", (8, 8, 1), 10): conv(3, 1, 32) + conv(3, 32, 64) + fc(2 * 2 * 64, 128) + fc(128, 10),
    # 32 -> pool 16 -> pool 8 -> pool 4: 4*4*64 into fc10
    ("cifar_18pct", (32, 32, 3), 10): conv(5, 3, 32) + conv(5, 32, 32) + conv(5, 32, 64) + fc(4 * 4 * 64, 10),
    ("cifar_80sec", (32, 32, 3), 10): conv(5, 3, 32)
    + conv(5, 32, 32)
    + conv(5, 32, 64)
    + fc(4 * 4 * 64, 64)
    + fc(64, 10),
    # 224 -> conv1 55 -> pool 27 -> pool 13 -> pool 6: 6*6*256 into fc4096
    ("alexnet", (224, 224, 3), 1000): conv(11, 3, 64)
    + conv(5, 64, 192)
    + conv(3, 192, 384)
    + conv(3, 384, 256)
    + conv(3, 256, 256)
    + fc(6 * 6 * 256, 4096)
    + fc(4096, 4096)
    + fc(4096, 1000),
    ("mlr", (28, 28, 1), 10): fc(784, 10),
    ("mlp", (28, 28, 1), 10): fc(784, 128) + fc(128, 10),
    ("mlp3", (28, 28, 1), 10): fc(784, 128) + 2 * fc(128, 128) + fc(128, 10),
}


@pytest.mark.parametrize("name,shape,classes", list(EXPECTED))
def test_shapes_and_exact_parameter_counts(name, shape, classes):
    model = get_model(name, classes, shape)
    params = jax.eval_shape(model.init, jax.random.key(0))  # shapes are all a count needs
    assert param_count(params) == EXPECTED[(name, shape, classes)]
    out = jax.eval_shape(lambda p: model.logits(p, jnp.zeros((2, *shape))), params)
    assert out.shape == (2, classes)


def test_known_counts():
    assert EXPECTED[("cifar_18pct", (32, 32, 3), 10)] == 89_578
    assert EXPECTED[("alexnet", (224, 224, 3), 1000)] == 61_100_840


def test_every_parameter_has_a_logical_partition():
    specs = get_model("alexnet", 1000, (224, 224, 3)).partition_specs()
    assert specs["conv1"]["kernel"] == jax.sharding.PartitionSpec(None, None, "conv_in", "conv_out")
    assert specs["fc8"]["kernel"] == jax.sharding.PartitionSpec("embed", "classes")
    assert specs["fc6"]["bias"] == jax.sharding.PartitionSpec("hidden")


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet'.*alexnet"):
        get_model("resnet", 10, (32, 32, 3))


def test_same_map_response_norm_matches_the_formula():
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype(np.float32)
    size, scale, power = 3, 0.5, 0.75
    want = np.empty_like(x)
    for i in range(5):
        for j in range(5):
            win = x[0, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2, :]
            want[0, i, j] = x[0, i, j] / (1 + scale / size**2 * (win**2).sum(axis=(0, 1))) ** power
    np.testing.assert_allclose(response_norm_same_map(jnp.asarray(x), size, scale, power), want, rtol=1e-5)


def test_cross_map_response_norm_matches_the_formula():
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 7)).astype(np.float32)
    size, scale, power = 5, 0.3, 0.75
    want = np.empty_like(x)
    for c in range(7):
        win = x[..., max(0, c - 2) : c + 3]
        want[..., c] = x[..., c] / (1 + scale / size * (win**2).sum(-1)) ** power
    np.testing.assert_allclose(response_norm_cross_map(jnp.asarray(x), size, scale, power), want, rtol=1e-5)


def test_convnet_pool_output_sizes_follow_cuda_convnet():
    # outputsX = ceil((n - 3) / 2) + 1: 32 -> 16 -> 8 -> 4 and 55 -> 27
    for n, want in [(32, 16), (16, 8), (8, 4), (55, 27)]:
        assert convnet_pool(jnp.ones((1, n, n, 1)), "max").shape[1] == want
        assert convnet_pool(jnp.ones((1, n, n, 1)), "avg").shape[1] == want
