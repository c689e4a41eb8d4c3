"""Schedules: staleness statistics, SSP bounds, sync groups, Downpour n_fetch/n_push, determinism."""

import jax
import numpy as np
import pytest

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.sim import make_schedule, uniform_staleness_schedule

KEY = jax.random.key(0)


def sched(key, k, steps, delays=DelayModel(), protocol="async", **kw):
    return make_schedule(key, ProtocolSpec(num_workers=k, kind=protocol, **kw), num_steps=steps, delays=delays)


def rows(trace):
    return list(
        zip(
            trace.worker.tolist(),
            trace.step.tolist(),
            trace.push.tolist(),
            trace.apply.tolist(),
            trace.fetch.tolist(),
            trace.v_read.tolist(),
            trace.v_apply.tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("kind", ["exponential", "uniform", "lognormal"])
def test_equal_speed_workers_have_mean_staleness_k_minus_1(kind):
    for k in (4, 8):
        stats = sched(KEY, k, 20000, DelayModel(kind)).stats()
        assert abs(stats.staleness_mean - (k - 1)) <= 0.05 * (k - 1)


def test_constant_delays_give_round_robin_with_staleness_exactly_k_minus_1():
    t = sched(KEY, 4, 40, DelayModel("constant"))
    assert t.worker[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert set(t.staleness[4:].tolist()) == {3}


def test_same_key_same_schedule_other_key_other_schedule():
    a = sched(KEY, 8, 500, DelayModel("exponential"))
    b = sched(KEY, 8, 500, DelayModel("exponential"))
    c = sched(jax.random.key(1), 8, 500, DelayModel("exponential"))
    assert rows(a) == rows(b) and rows(a) != rows(c)


@pytest.mark.parametrize("s", [0, 1, 3, 6])
@pytest.mark.parametrize("kind", ["exponential", "lognormal"])
def test_ssp_bound_is_respected_in_every_schedule(s, kind):
    for seed in range(3):
        d = DelayModel(kind, spread=1.0, speeds=(1, 1, 2, 3, 1, 1))
        t = sched(jax.random.key(seed), 6, 600, d, max_staleness=s)
        assert t.staleness.max() <= s
        assert t.num_gradients == 600
        assert (t.v_apply[t.apply] == np.arange(t.num_updates)).all()  # one apply per version, in order


def test_ssp_waiting_costs_virtual_time():
    d = DelayModel("exponential", speeds=(1, 1, 1, 4))
    free = sched(KEY, 4, 400, d).virtual_time
    bounded = sched(KEY, 4, 400, d, max_staleness=1).virtual_time
    assert bounded > free


def test_sync_is_groups_of_k_with_zero_staleness():
    t = sched(KEY, 4, 40, DelayModel("exponential"), protocol="sync")
    assert t.num_updates == 10 and t.staleness.max() == 0
    groups = np.split(t.worker, np.flatnonzero(t.apply)[:-1] + 1)
    assert all(sorted(g.tolist()) == [0, 1, 2, 3] for g in groups)


def test_softsync_applies_every_k_over_n_pushes():
    t = sched(KEY, 8, 80, DelayModel("exponential"), protocol="softsync", softsync_n=2)
    assert t.num_updates == 20
    pushes_between = np.diff(np.flatnonzero(t.apply), prepend=-1)
    assert (pushes_between == 4).all()


def test_downpour_n_fetch_n_push_on_a_hand_traced_two_worker_example():
    # Worker 0 takes 1.0 per step, worker 1 takes 1.5; n_fetch = n_push = 2; 6 gradients in all.
    t = sched(KEY, 2, 6, DelayModel("constant", speeds=(1.0, 1.5)), n_fetch=2, n_push=2)
    assert rows(t) == [
        # (worker, step, push, apply, fetch, v_read, v_apply)
        (0, 0, False, False, 0, 0, -1),  # t=1.0 local step, nothing sent
        (1, 0, False, False, 0, 0, -1),  # t=1.5
        (0, 1, True, True, 2, 0, 0),  # t=2.0 push 2 accumulated grads -> v1, fetch v1
        (0, 2, False, False, 0, 1, -1),  # t=3.0 local step on v1 (+ its own local update)
        (1, 1, True, True, 2, 0, 1),  # t=3.0 push (read v0, applied to v1: staleness 1), fetch v2
        (0, 3, True, True, 2, 1, 2),  # t=4.0 last step: push -> v3
    ]
    assert t.t_arrive.tolist() == [1.0, 1.5, 2.0, 3.0, 3.0, 4.0]


def test_n_fetch_larger_than_n_push_keeps_reading_the_old_copy():
    t = sched(KEY, 1, 6, DelayModel("constant"), n_fetch=3, n_push=1)
    assert t.v_read.tolist() == [0, 0, 0, 3, 3, 3]
    assert t.fetch.tolist() == [0, 0, 2, 0, 0, 2]


def test_warm_start_trains_one_worker_then_the_others_fetch_its_parameters():
    t = sched(KEY, 3, 9, DelayModel("constant"), warm_start_steps=3)
    assert t.worker[:3].tolist() == [0, 0, 0] and t.staleness[:3].tolist() == [0, 0, 0]
    joins = np.flatnonzero(t.step == -1)
    assert t.worker[joins].tolist() == [1, 2] and t.v_read[joins].tolist() == [3, 3]
    assert t.num_gradients == 9


def test_uniform_staleness_model_of_dai_et_al():
    t = uniform_staleness_schedule(KEY, 4, 4000, bound=8)
    tau = t.staleness[8:]
    assert tau.min() == 0 and tau.max() == 8
    assert abs(tau.mean() - 4.0) < 0.2


def test_trace_round_trips_through_npz(tmp_path):
    t = sched(KEY, 3, 50, DelayModel("exponential"), n_push=2)
    t.save(str(tmp_path / "trace.npz"))
    u = Trace.load(str(tmp_path / "trace.npz"))
    assert rows(u) == rows(t) and u.num_workers == 3 and u.meta["n_push"] == 2
    assert u.rows() == t.rows() and u.rows()[0]._fields[:2] == ("worker", "step")


def test_protocol_spec_derives_every_setting_once():
    assert ProtocolSpec(num_workers=8, kind="sync").bound == 0
    assert ProtocolSpec(num_workers=8, kind="sync").group_size == 8
    assert ProtocolSpec(num_workers=8, kind="softsync", softsync_n=2).group_size == 4
    assert ProtocolSpec(num_workers=8, max_staleness=2).group_size == 8
    assert ProtocolSpec(num_workers=8).group_size == 1
    assert ProtocolSpec(n_fetch=2).local_updates and not ProtocolSpec().local_updates
    assert ProtocolSpec(num_workers=8, kind="softsync", softsync_n=2).expected_updates(80) == 20
    assert ProtocolSpec(num_workers=8, kind="sync").meta()["max_staleness"] == 0


def test_bad_delay_and_protocol_values_are_named():
    with pytest.raises(ConfigError, match="unknown delay.kind 'gamma'"):
        DelayModel("gamma")
    with pytest.raises(ConfigError, match="delay.mean=-1.0"):
        DelayModel("constant", mean=-1.0)
    with pytest.raises(ConfigError, match="unknown protocol 'hogwild'"):
        sched(KEY, 2, 10, protocol="hogwild")
    with pytest.raises(ConfigError, match="softsync_n=5 is not allowed with num_workers=4"):
        ProtocolSpec(num_workers=4, kind="softsync", softsync_n=5)
    with pytest.raises(ConfigError, match="n_push=0 is not allowed"):
        ProtocolSpec(n_push=0)


def test_communication_costs_scale_with_the_bytes_and_n_push_amortises_them():
    # One worker, 1 s steps; a push and a fetch each move the payload over a 100 MB/s server link.
    def seconds(payload, n_sync=1, k=1, steps=200):
        d = DelayModel("constant", payload_bytes=payload, server_bandwidth=100e6)
        return sched(KEY, k, steps, d, n_fetch=n_sync, n_push=n_sync).virtual_time

    # The run ends when the last push arrives (its fetch is never needed): hence the "- fetch" terms.
    assert seconds(0) == pytest.approx(200, abs=1e-9)  # free: 200 steps of 1 s
    assert seconds(25e6) == pytest.approx(200 * (1 + 2 * 0.25) - 0.25, rel=1e-9)  # 0.25 s each way per step
    assert seconds(50e6) == pytest.approx(200 * (1 + 2 * 0.5) - 0.5, rel=1e-9)  # twice the bytes, twice the cost
    assert seconds(50e6, n_sync=10) == pytest.approx(200 + 20 * 0.5 + 19 * 0.5, rel=1e-9)  # per 10 steps
    # Eight workers share the server's link (a queue each way): throughput is link-bound at 1 / 0.5 s.
    assert 1600 / seconds(50e6, k=8, steps=1600) == pytest.approx(1 / 0.5, rel=0.05)  # 2 gradients/s
    assert 1600 / seconds(50e6, n_sync=10, k=8, steps=1600) > 5  # amortised: close to 8 workers' 8/s


def test_latencies_and_the_servers_apply_time_are_charged_per_push_and_fetch():
    d = DelayModel("constant", worker_latency=0.01, server_latency=0.02, apply_seconds=0.1)
    # per step: push (0.01 + 0.02) + apply 0.1 + fetch (0.02 + 0.01) on top of the 1 s of compute; the run
    # ends when the last push arrives
    assert sched(KEY, 1, 50, d).virtual_time == pytest.approx(50 * 1.16 - 0.13, rel=1e-9)


def test_a_lone_worker_runs_its_cycle_solo_times_as_long_and_shared_workers_as_before():
    """A worker with no other in flight (the warm start) runs step, latency and service `solo` times as
    long: on a shared host a lone worker and the coordinator do not compete for cores."""
    import dataclasses

    shared = DelayModel("constant", latency=0.5, service=0.5)  # a 2 s cycle: 1 s step, 0.5 + 0.5 s server
    fast = dataclasses.replace(shared, solo=0.5)
    a = sched(KEY, 2, 40, shared, warm_start_steps=10)
    b = sched(KEY, 2, 40, fast, warm_start_steps=10)
    ends = lambda t: np.asarray(t.t_arrive)[np.asarray(t.step) >= 0]
    assert np.allclose(np.diff(ends(a)[:10]), 2.0) and np.allclose(np.diff(ends(b)[:10]), 1.0)
    assert a.worker.tolist() == b.worker.tolist() and a.v_read.tolist() == b.v_read.tolist()
    late = slice(14, None)  # both workers stepping: the same cycle, 10 solo cycles of 1 s earlier
    assert np.allclose(ends(a)[late] - ends(b)[late], 10 * 1.0)
    assert sched(KEY, 2, 40, dataclasses.replace(shared, solo=1.0), warm_start_steps=10).t_arrive.tolist() == (
        a.t_arrive.tolist()
    )
    with pytest.raises(ConfigError, match="delay.solo=0"):
        DelayModel("constant", solo=0.0)


def test_config_speeds_are_one_per_worker_repeats_included():
    """`delay.speeds="1,1,3"` is three workers (session 13's list parser dropped the repeat: two workers)."""
    from asgdjax.configs.default import get_config

    c = get_config().delay
    c.speeds = "1,1,3"
    assert DelayModel.from_config(c).speeds == (1.0, 1.0, 3.0)
    c.speeds = ""
    assert DelayModel.from_config(c).speeds == ()
