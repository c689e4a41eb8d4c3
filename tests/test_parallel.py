"""Model parallelism on 8 forced CPU devices: the rules table, sharded models equal unsharded ones, the
runtime's worker groups and the simulator keep their state sharded, and a grouped run replays exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import KEY, assert_trees_close, sampler
from jax.sharding import PartitionSpec as P

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.server import Server
from asgdjax.delays import DelayModel
from asgdjax.models import MODELS, get_model
from asgdjax.parallel import Placement, group_devices, group_mesh, mesh_spec
from asgdjax.parallel.placement import bytes_per_device
from asgdjax.rules import dc_asgd_adaptive
from asgdjax.runtime import Coordinator
from asgdjax.sim import Simulator, make_schedule

SHAPES = {"small_cnn": (28, 28, 1), "cifar_18pct": (32, 32, 3), "cifar_80sec": (32, 32, 3), "alexnet": (224, 224, 3)}
HP = {"learning_rate": 0.05, "local_learning_rate": 0.02}


def model(name):
    classes = 1000 if name == "alexnet" else 10
    return get_model(name, classes, SHAPES.get(name, (8, 8, 1)))


def test_rules_split_outputs_and_keep_indivisible_dims_whole():
    mesh = group_mesh(jax.devices()[:4])
    assert mesh_spec(P(None, None, "conv_in", "conv_out"), (5, 5, 3, 32), mesh) == P(None, None, None, "model")
    assert mesh_spec(P("embed", "hidden"), (100, 64), mesh) == P(None, "model")
    assert mesh_spec(P("embed", "classes"), (64, 10), mesh) == P()  # 10 classes do not split 4 ways
    assert mesh_spec(P("classes"), (10,), group_mesh(jax.devices()[:2])) == P("model")


@pytest.mark.parametrize("m", [2, 4, 8])
def test_alexnet_parameters_split_exactly_m_ways(m):
    net = model("alexnet")
    abstract = jax.eval_shape(net.init, jax.random.key(0))
    pl = Placement.for_task(net, jax.devices()[:m])
    shardings = pl.shardings(abstract)
    total = 0
    for leaf, sh in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        shard = sh.shard_shape(leaf.shape)
        assert np.prod(shard) * m == np.prod(leaf.shape)  # every AlexNet array is split, none replicated
        total += np.prod(shard)
    assert total * m == 61_100_840


FULL_TIER = {"alexnet", "cifar_18pct", "cifar_80sec"}  # large compiles: -m slow


@pytest.mark.parametrize(
    "name,m",
    [pytest.param(n, 2, marks=[pytest.mark.slow] if n in FULL_TIER else []) for n in sorted(MODELS)]
    + [
        ("small_cnn", 8),
        pytest.param("cifar_18pct", 4, marks=pytest.mark.slow),
        pytest.param("alexnet", 8, marks=pytest.mark.slow),
    ],
)
def test_sharded_loss_and_gradients_equal_unsharded(name, m):
    net = model(name)
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, *net.input_shape))
    y = jnp.array([1, 3])
    grad = jax.value_and_grad(lambda p, x, y: net.loss(p, x, y, key=jax.random.key(2)))
    loss0, g0 = jax.jit(grad)(params, x, y)
    pl = Placement.for_task(net, jax.devices()[:m])
    sharded = pl.put(params)
    # As the runtime compiles a group's step: gradients declared to come out split like the parameters.
    f = jax.jit(grad, out_shardings=(pl.replicated, pl.shardings(params)))
    loss1, g1 = f(sharded, jax.device_put(x, pl.replicated), jax.device_put(y, pl.replicated))
    np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
    for a, b, p in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), jax.tree.leaves(sharded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        # The parameters are really split: each device holds its slice, and gradients come back alike.
        assert {s.data.shape for s in p.addressable_shards} == {p.sharding.shard_shape(p.shape)}
        assert a.sharding.is_equivalent_to(p.sharding, a.ndim)
    held = bytes_per_device(sharded)
    assert len(held) == m and max(held.values()) < sum(x.nbytes for x in jax.tree.leaves(params))


def test_a_group_can_also_split_its_batch_over_a_data_axis():
    net = model("small_cnn")
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    y = jnp.arange(4)
    f = jax.jit(jax.value_and_grad(lambda p, x, y: net.loss(p, x, y)))
    loss0, g0 = f(params, x, y)
    pl = Placement.for_task(net, jax.devices()[:4], data_parallel=2)
    loss1, g1 = f(pl.put(params), jax.device_put(x, pl.batch), jax.device_put(y, pl.batch))
    np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def _sharded_on(tree, pl):
    """Every parameter-shaped leaf of `tree` is split over pl's mesh as the rules say."""
    want = pl.shardings(tree)
    for leaf, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(want), strict=True):
        assert leaf.sharding.is_equivalent_to(sh, leaf.ndim), (leaf.shape, leaf.sharding, sh)
    return True


def test_four_groups_of_two_run_async_with_sharded_server_and_replay_exactly(digits_task):
    task, data = digits_task
    k, steps = 4, 40
    spec = ProtocolSpec(num_workers=k)
    make = lambda h: Server(dc_asgd_adaptive(0.04, k), optax.sgd(h["learning_rate"], momentum=0.9), k)
    smp = sampler(int(data["train_y"].shape[0]), k)
    groups = group_devices(k, 2)
    co = Coordinator(
        task, make, HP, spec, devices=groups, data=jax.tree.map(np.asarray, data), sampler=smp, data_key=KEY
    )
    assert co.devices == ["cpu:0+cpu:1", "cpu:2+cpu:3", "cpu:4+cpu:5", "cpu:6+cpu:7"]
    p0 = task.init(jax.random.key(0))
    server, trace, _ = co.run(p0, spec.machine(steps))
    assert trace.num_gradients == steps and int(server.version) == steps
    srv = co.server_placement
    assert srv.model_parallel == 2 and _sharded_on(server, srv)
    kernel = server.params["fc1"]["kernel"]  # (64, 128): hidden units split 2 ways
    assert {s.data.shape for s in kernel.addressable_shards} == {(kernel.shape[0], 64)}
    # The simulator replays the trace, its own state sharded the same way over the first group.
    sim = Simulator(task, make, spec, chunk=4, placement=srv)
    state = sim.init(p0, HP)
    assert _sharded_on(state, srv)
    replayed = sim.run(state, trace, data, HP, smp, KEY)
    assert _sharded_on(replayed, srv)
    assert_trees_close(replayed.server, server)


@pytest.mark.slow
def test_sharded_simulator_equals_the_unsharded_one(digits_cnn):
    task, data = digits_cnn
    spec = ProtocolSpec(num_workers=4)
    make = lambda h: Server(dc_asgd_adaptive(0.04, 4), optax.sgd(h["learning_rate"], momentum=0.9), 4)
    trace = make_schedule(jax.random.key(3), spec, num_steps=40, delays=DelayModel("exponential"))
    smp = sampler(int(data["train_y"].shape[0]), 4)
    p0 = task.init(jax.random.key(0))
    out = []
    for pl in (None, Placement.for_task(task, jax.devices()[:4])):
        sim = Simulator(task, make, spec, chunk=5, placement=pl)
        out.append(sim.run(sim.init(p0, HP), trace, data, HP, smp, KEY))
    assert_trees_close(out[1], out[0])
    local = out[1].local["conv2"]["kernel"]  # (K, 3, 3, 32, 64): worker copies split on channels
    assert {s.data.shape for s in local.addressable_shards} == {(4, 3, 3, 32, 16)}
