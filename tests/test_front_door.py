"""The front door through the public API only: a loss over a plain array against an independent numpy replay
of the same trace, Flax Linen and NNX parameters, a real run replayed exactly, honest verdicts, one-line
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import asgdjax
from asgdjax.errors import ConfigError

N, D, B, K = 512, 20, 8, 6


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (x @ rng.normal(size=D) + 0.1 * rng.normal(size=N)).astype(np.float32)
    return x, y


def least_squares(w, batch):
    x, y = batch
    return jnp.mean((x @ w - y) ** 2)


def numpy_replay(trace, sampler, x, y, lr, w0):
    """Per event: the worker's gradient on its own copy, applied on arrival, the worker fetching the result."""
    w = w0.astype(np.float64)
    copies = [w.copy() for _ in range(trace.num_workers)]
    for e in range(len(trace)):
        k, s = int(trace.worker[e]), int(trace.step[e])
        if s >= 0:
            idx = sampler.batch(k, s)
            xb, yb = x[idx].astype(np.float64), y[idx].astype(np.float64)
            g = 2.0 / len(idx) * xb.T @ (xb @ copies[k] - yb)
            w = w - lr * g
        if trace.fetch[e]:
            copies[k] = w.copy()
    return w


def test_a_plain_array_loss_matches_an_independent_numpy_replay(problem):
    x, y = problem
    sampler = asgdjax.ShardSampler(N, B, seed=5, num_workers=K)
    delays = asgdjax.DelayModel("exponential", speeds=(1.0, 1.0, 1.0, 1.0, 3.0, 3.0))
    w0 = np.zeros(D, np.float32)
    r = asgdjax.simulate(
        least_squares, w0, (x, y), optimizer=optax.sgd(0.01), num_workers=K, steps=300, delays=delays, sampler=sampler
    )
    assert r.ok and r.trace.num_gradients == 300 and r.updates == 300
    assert 2 < r.stats.staleness_mean < 10  # the slow workers' gradients are the stale ones
    want = numpy_replay(r.trace, sampler, x, y, 0.01, w0)
    np.testing.assert_allclose(np.asarray(r.params), want, rtol=2e-4, atol=2e-5)
    assert r.final_loss < r.history.train_loss[0] / 10


def test_flax_linen_and_nnx_parameters_go_through_the_same_door(problem):
    from flax import linen as nn
    from flax import nnx

    x, y = problem
    linen = nn.Dense(1)
    p = linen.init(jax.random.key(0), x[:1])["params"]
    lin_loss = lambda params, b: jnp.mean((linen.apply({"params": params}, b[0])[:, 0] - b[1]) ** 2)
    r = asgdjax.simulate(lin_loss, p, (x, y), optimizer=optax.sgd(0.01), num_workers=4, steps=200)
    assert r.ok and r.final_loss < r.history.train_loss[0] / 5

    graphdef, state = nnx.split(nnx.Linear(D, 1, rngs=nnx.Rngs(0)))

    def nnx_loss(s, b):
        model = nnx.merge(graphdef, s)
        return jnp.mean((model(b[0])[:, 0] - b[1]) ** 2)

    r = asgdjax.simulate(nnx_loss, state, (x, y), optimizer=optax.sgd(0.01), num_workers=4, steps=200)
    assert r.ok and r.final_loss < r.history.train_loss[0] / 5
    assert isinstance(r.params, nnx.State)


def test_the_readme_recipe_for_an_nnx_model_with_dropout_and_batch_statistics(problem):
    """README: split off the parameters, merge a copy of the rest inside the loss (batch statistics change on
    the copy), and give dropout the loss's third argument, the batch's key."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.hidden, self.norm = nnx.Linear(D, 32, rngs=rngs), nnx.BatchNorm(32, rngs=rngs)
            self.drop, self.out = nnx.Dropout(0.1, rngs=rngs), nnx.Linear(32, 1, rngs=rngs)

        def __call__(self, x, rngs=None):
            return self.out(self.drop(nnx.relu(self.norm(self.hidden(x))), rngs=rngs))[:, 0]

    x, y = problem
    graphdef, params, rest = nnx.split(Net(nnx.Rngs(0)), nnx.Param, ...)

    def loss(p, batch, key):
        model = nnx.merge(graphdef, p, rest, copy=True)
        return jnp.mean((model(batch[0], rngs=nnx.Rngs(dropout=key)) - batch[1]) ** 2)

    r = asgdjax.simulate(loss, params, (x, y), optimizer=optax.adam(1e-2), num_workers=4, steps=300)
    assert r.ok and r.final_loss < r.history.train_loss[0] / 5, r


def test_a_real_asynchronous_run_replays_exactly_through_the_front_door(problem):
    x, y = problem
    common = dict(optimizer=optax.sgd(0.01, momentum=0.5), rule="staleness_lr", key=3)
    real = asgdjax.run_async(least_squares, jnp.zeros(D), (x, y), num_workers=4, steps=120, **common)
    assert real.source == "runtime" and real.trace.num_gradients == 120
    replay = asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), trace=real.trace, **common)
    np.testing.assert_allclose(np.asarray(replay.params), np.asarray(real.params), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(replay.history.train_loss, real.history.train_loss, rtol=1e-5)


def test_sync_downpour_ssp_and_softsync_protocols_all_run(problem):
    x, y = problem
    base = dict(optimizer=optax.sgd(0.01), num_workers=4, steps=80)
    for protocol in ("sync", "softsync", asgdjax.ProtocolSpec(num_workers=4, max_staleness=1)):
        r = asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), protocol=protocol, **base)
        assert r.ok and r.trace.num_gradients == 80
    sync = asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), protocol="sync", **base)
    assert sync.updates == 20 and sync.stats.staleness_max == 0
    down = asgdjax.simulate(
        least_squares,
        jnp.zeros(D),
        (x, y),
        protocol=asgdjax.ProtocolSpec(num_workers=4, n_push=4),
        local_learning_rate=0.01,
        **base,
    )
    assert down.updates == down.trace.num_updates and 20 <= down.updates <= 24  # each worker's last step pushes


def test_verdicts_say_when_a_run_did_not_train(problem):
    x, y = problem
    r = asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), optimizer=optax.sgd(5.0), num_workers=4, steps=100)
    assert r.status == "diverged" and not r.ok
    assert "guards rejected" in r.reason or "train_loss" in r.reason
    assert "diverged" in repr(r)


def test_bad_front_door_input_is_one_line(problem):
    x, y = problem
    run = lambda **kw: asgdjax.simulate(
        least_squares, jnp.zeros(D), kw.pop("data", (x, y)), **{"optimizer": optax.sgd(0.1), "steps": 10, **kw}
    )
    cases = [
        (dict(data=(x, y[:10])), "data arrays have different numbers of rows"),
        (dict(protocol="hogwild"), "unknown protocol 'hogwild'"),
        (dict(batch_size=0), "batch_size=0 is not allowed"),
        (dict(num_workers=4, batch_size=400), "batch_size=400 exceeds a worker's shard of 128 examples"),
        (dict(rule="fancy"), "unknown rule 'fancy'"),
        (dict(protocol=asgdjax.ProtocolSpec(n_fetch=2)), "n_fetch=2 .* needs local_learning_rate=LR"),
        (dict(eval_fn=lambda p: "high"), "eval_fn returned 'high'; return a number or a dict of numbers"),
        (dict(steps=None), "steps is required"),
        (
            dict(num_workers=4, delays=asgdjax.DelayModel(speeds=(1, 1, 8))),
            r"speeds=\(1.0, 1.0, 8.0\) has 3 entries for num_",
        ),
        (dict(num_workers=4, protocol=3), r"protocol=3 is not allowed; use 'async', 'softsync', 'sync' or an"),
        (dict(num_workers=4, protocol=asgdjax.ProtocolSpec(num_workers=8)), "num_workers=4 but protocol=Protoc"),
        (dict(max_loss=-1), r"max_loss=-1 is not allowed; use a number > 0 \(math.inf: no limit\)"),
        (dict(local_learning_rate="0.1"), "local_learning_rate='0.1' is not allowed; use a number >= 0"),
        (dict(log_every=-1), "log_every=-1 is not allowed"),
        (dict(eval_fn="acc"), "eval_fn='acc' is not callable"),
        (dict(rule=None), "rule=None is not allowed; use a name from asgdjax.RULES or an optax transformation"),
        (dict(delays="exponential"), "delays='exponential' is not allowed; use an asgdjax.DelayModel"),
        (dict(trace=np.zeros(3)), "is not allowed; use a Trace"),
        (dict(sampler=None), "sampler=None is not allowed"),
        (
            dict(sampler=asgdjax.ShardSampler(4 * N, 32, 0)),
            f"draws from num_examples={4 * N} but the data has {N} rows",
        ),
        (dict(sampler=asgdjax.ShardSampler(N, 16, 0), batch_size=32), "draws batches of 16 but batch_size=32; pass"),
        (dict(num_workers=4, sampler=asgdjax.ShardSampler(N, 32, 0, 2)), "num_workers=2 but the run has 4 workers"),
        (dict(key="seed"), "key='seed' is not allowed; use an integer seed or a jax.random.key"),
        (dict(strategy="fast"), "strategy='fast' is not allowed; use one of auto, sequential, scan, waves"),
        (dict(data=(x.tolist(), y.tolist())), "a Python list is a pytree of its elements, so give numpy arrays"),
    ]
    for kw, message in cases:
        with pytest.raises(ConfigError, match=message):
            run(**kw)
    with pytest.raises(ConfigError, match=r"delay.mean='1' is not allowed; use a number"):
        asgdjax.DelayModel(mean="1")
    real = lambda **kw: asgdjax.run_async(least_squares, jnp.zeros(D), (x, y), optimizer=optax.sgd(0.1), steps=10, **kw)
    for kw, message in [
        (dict(max_loss="inf"), "max_loss='inf' is not allowed"),  # before the run, not after it
        (dict(worker_timeout=-1), "worker_timeout=-1 is not allowed; use seconds >= 0"),
        (dict(max_worker_failures=-1), "max_worker_failures=-1 is not allowed"),
        (dict(num_workers=2, devices=["cpu:0", "cpu:0"]), "give 2 entries \\(one per worker\\), each a jax.Device"),
    ]:
        with pytest.raises(ConfigError, match=message):
            real(**kw)


def test_a_loss_or_parameters_the_door_cannot_differentiate_are_one_line(problem):
    x, y = problem
    run = lambda loss, params: asgdjax.simulate(loss, params, (x, y), optimizer=optax.sgd(0.1), steps=10)
    with pytest.raises(ConfigError, match="loss_fn returned a tuple of 2; return the scalar loss only"):
        run(lambda w, b: (least_squares(w, b), 1.0), jnp.zeros(D))
    with pytest.raises(ConfigError, match=r"loss_fn returned float32\[32\]; return one float scalar"):
        run(lambda w, b: (b[0] @ w - b[1]) ** 2, jnp.zeros(D))
    with pytest.raises(ConfigError, match=r"params leaf \['n'\] is int32: every leaf is trained"):
        run(lambda p, b: least_squares(p["w"], b), {"w": jnp.zeros(D), "n": jnp.zeros((), jnp.int32)})
    with pytest.raises(ConfigError, match=r"params is int64: every leaf is trained"):
        run(least_squares, np.zeros(D, np.int64))
    with pytest.raises(ConfigError, match=r"params is a Python list of 20 numbers, .* give an array"):
        run(least_squares, [0.0] * D)


def test_a_replay_on_other_inputs_is_refused_and_a_saved_trace_replays_by_path(problem, tmp_path):
    """The trace records the key, batch size, sampler and data shapes its gradients used; a replay on others
    would follow the same order to other numbers, so it is refused naming what differs."""
    x, y = problem
    common = dict(optimizer=optax.sgd(0.01), batch_size=B)
    real = asgdjax.run_async(least_squares, jnp.zeros(D), (x, y), num_workers=2, steps=40, **common)
    replay = lambda data=(x, y), **kw: asgdjax.simulate(least_squares, jnp.zeros(D), data, **{**common, **kw})
    for kw, message in [
        (dict(key=1), "trace was recorded with another key; an exact replay needs the same data, batch_size"),
        (dict(batch_size=4), "trace was recorded with batch_size=8, not 4"),
        (dict(sampler="replacement"), "trace was recorded with sampler='ShardSampler', not 'ReplacementSampler'"),
        (dict(data=(x[:256], y[:256])), "trace was recorded with num_examples=512, not 256"),
        (dict(data=(x[::-1], y[::-1])), r"trace was recorded with other data \(the same shapes, other values or"),
        (dict(delays=asgdjax.DelayModel("constant")), "delays= is not used when a trace is given"),
    ]:
        with pytest.raises(ConfigError, match=message):
            replay(trace=real.trace, **kw)
    real.trace.save(str(tmp_path / "trace.npz"))
    again = replay(trace=str(tmp_path / "trace.npz"))
    np.testing.assert_allclose(np.asarray(again.params), np.asarray(real.params), atol=1e-6, rtol=1e-6)


def test_plain_optax_rules_uniform_staleness_and_a_recovered_nan_run(problem):
    x, y = problem
    base = dict(optimizer=optax.sgd(0.01), num_workers=4, steps=120)
    for rule in (optax.clip(100.0), optax.identity()):  # plain GradientTransformations: staleness kwargs dropped
        assert asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), rule=rule, **base).ok
    dai = asgdjax.DelayModel("uniform_staleness", staleness_bound=3)  # Dai et al. 2019: a ring of versions
    r = asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), delays=dai, **base)
    assert r.ok and r.stats.staleness_max <= 3 and r.stats.staleness_mean > 0.5
    poisoned = x.copy()
    poisoned[5] = np.nan  # one example: its gradients are rejected by the server, the run trains on
    r = asgdjax.simulate(least_squares, jnp.zeros(D), (poisoned, y), log_every=10, **base)
    assert r.status == "ok" and r.reason.startswith("recovered from train_loss=nan at gradient ")
    assert r.rejected.nonfinite >= 1 and np.isfinite(r.final_loss)


def test_verdicts_name_an_exploded_loss_and_a_run_that_made_no_progress(problem):
    """A front-door loss has no classes to check accuracy against chance, so the loss decides: exploded (1,000x
    the initial parameters' loss) is diverged, however finite; ending no lower than the start is collapsed."""
    x, y = problem
    run = lambda lr: asgdjax.simulate(
        least_squares, jnp.zeros(D), (x, y), optimizer=optax.sgd(lr), num_workers=4, steps=200
    )
    r = run(0.5)
    assert r.status == "diverged" and "x its value" in r.reason and "on the initial parameters" in r.reason
    for lr in (0.0, 1e-6):  # parameters (nearly) standing still: the end looks like the start
        r = run(lr)
        assert r.status == "collapsed" and r.reason.startswith("the training loss made no clear progress: "), r.reason
    assert run(0.01).status == "ok"


def test_arguments_the_run_never_reads_are_warned_about(problem):
    x, y = problem
    run = lambda **kw: asgdjax.simulate(least_squares, jnp.zeros(D), (x, y), optimizer=optax.sgd(0.01), **kw)
    for kw, message in [
        (dict(steps=40, eval_every=10), "eval_every=10 without eval_fn evaluates nothing"),
        (dict(steps=40, local_learning_rate=0.1), "local_learning_rate=0.1 is read by Downpour clients only"),
        (dict(steps=40, protocol=asgdjax.ProtocolSpec(kind="sync", max_staleness=2)), "'sync' ignores it"),
        (
            dict(steps=40, protocol=asgdjax.ProtocolSpec(num_workers=4, warm_start_steps=40)),
            "warm_start_steps=40 covers",
        ),
    ]:
        with pytest.warns(UserWarning, match=message):
            run(**kw)


def test_repeated_calls_with_the_same_loss_and_optimizer_compile_once(problem):
    """A loop of simulate calls (seeds, delay models, replays) reuses the compiled simulator when the loss,
    optimizer and rule objects, protocol and shapes are the same; another optimizer object gets its own;
    the numbers are those of a first call."""
    from jax._src import monitoring

    x, y = problem
    compiles = []
    monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: (
            compiles.append(1) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    opt = optax.sgd(0.01)
    run = lambda seed, o=opt: asgdjax.simulate(least_squares, np.zeros(D, np.float32), (x, y), optimizer=o,
                                               num_workers=K, steps=200, key=seed)  # fmt: skip
    first = run(0)
    compiles.clear()
    again, other_seed = run(0), run(1)
    assert len(compiles) <= 2  # small host-side ops at most; the simulator's step is not among them
    np.testing.assert_array_equal(np.asarray(again.params), np.asarray(first.params))
    assert not np.array_equal(np.asarray(other_seed.params), np.asarray(first.params))
    compiles.clear()
    run(0, optax.sgd(0.01))
    assert len(compiles) >= 1  # a new optimizer object: its own program
