"""asgdjax-plan: the search space parses or says what is wrong in one line; successive halving keeps the
best 1/eta and resumes runs; the Pareto front and the recommendation follow the scores; a lane advanced in
rungs matches one advanced at once; and the whole plan runs from the command line to a command that runs."""

import json
import math
import shlex
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import one_line_error, run_cli

from asgdjax.configs.default import get_config
from asgdjax.delays import DelayModel
from asgdjax.errors import ConfigError
from asgdjax.plan import Candidate, Clocks, FrontRow, Lanes, ProtocolChoice, Score, Space, pareto_front, recommend
from asgdjax.plan.front import command
from asgdjax.plan.halving import default_rungs, rung_times, successive_halving
from asgdjax.plan.search import warm_start_end
from asgdjax.predict import Calibration
from asgdjax.predict.targets import gradient_times

CLOCK = Calibration(DelayModel(kind="lognormal", mean=0.01, spread=0.1, service=0.0005))
SPACE = dict(workers="2,4", protocols="async", rules="none", learning_rates="0.05", momenta="0.5")


def test_the_space_parses_every_axis_into_typed_candidates():
    space = Space.parse(
        workers="8,2,4", protocols="async,downpour:4,ssp:0,softsync:2", rules="none,staleness_lr",
        learning_rates="0.05,0.1", momenta="0,0.9",
    )  # fmt: skip
    assert space.workers == (2, 4, 8) and space.size == 3 * 4 * 2 * 2 * 2
    assert space.protocols[1] == ProtocolChoice("downpour", 4) and space.protocols[2].overrides()["max_staleness"] == 0
    cand = space.candidates(4)[0]
    assert isinstance(cand, Candidate) and cand.overrides()["num_workers"] == 4
    assert ProtocolChoice("softsync", 2).overrides()["protocol"] == "softsync"
    assert ProtocolChoice("downpour", 4).overrides()["n_push"] == 4
    assert "warm_start_steps" not in cand.overrides() and "warm_start" not in cand.name  # the config's own


def test_warm_starts_are_gradients_the_configs_own_or_a_multiple_of_it():
    """The paper's warm start is a knob the planner searches: on a 2-core host a lone worker runs nearly as
    fast as two (the calibration's solo factor 0.55), so a longer warm start reached 97% on MNIST sooner."""
    space = Space.parse(**SPACE, warm_starts="config,2x,0,1000", config_warm_start=250)
    assert space.warm_starts == (250, 500, 0, 1000)  # several searched: each named, the config's too
    assert Space.parse(**SPACE, warm_starts="config,2x", config_warm_start=0).warm_starts == (None,)  # 2 x 0 is 0
    cand = space.candidates(2)[1]
    assert cand.warm_start == 500 and cand.overrides()["warm_start_steps"] == 500
    assert cand.name.endswith(",warm_start=500") and space.candidates(2)[0].name.endswith(",warm_start=250")
    assert Space.parse(**SPACE, warm_starts="config,1x", config_warm_start=250).warm_starts == (None,)
    assert {c.warm_start for c in space.candidates(1)} == {None}  # a lone worker has no warm start
    assert space.size == 2 * 4
    with pytest.raises(ConfigError, match=r"'3x' \(750 gradients\) is not allowed: it covers all 500 steps"):
        Space.parse(**SPACE, warm_starts="config,3x", config_warm_start=250, config_steps=500)
    # The flag's default (config,2x) leaves out a multiple that covers the run instead of refusing it.
    quiet = Space.parse(
        **SPACE, warm_starts="config,2x", config_warm_start=100, config_steps=200, warm_starts_given=False
    )
    assert quiet.warm_starts == (None,)


@pytest.mark.parametrize(
    "axis, value, named",
    [
        ("workers", "0,2", "'0'"),
        ("workers", "two", "'two'"),
        ("protocols", "ring", "'ring'"),
        ("protocols", "downpour", "'downpour'"),
        ("protocols", "ssp:-1", "'ssp:-1'"),
        ("rules", "adam", "'adam'"),
        ("learning_rates", "0.1,-1", "'-1'"),
        ("learning_rates", "nan", "'nan'"),
        ("momenta", "1.0", "'1.0'"),
        ("momenta", ",", "','"),
        ("workers", "2,,4", "'2,,4' has an empty entry"),
        ("workers", "2,4,2", "--workers gives '2' twice; give each value once"),
        ("learning_rates", "0.1,0.10", r"gives 0.1 twice \('0.1' and '0.10'\)"),
        ("warm_starts", "config,-5", "--warm_starts entry '-5' is not allowed; use config, a multiple"),
        ("warm_starts", "twice", "'twice'"),
        ("warm_starts", "1.5", "'1.5'"),
        ("warm_starts", "config,config", "twice"),
    ],
)
def test_a_bad_axis_value_is_one_error_naming_it(axis, value, named):
    with pytest.raises(ConfigError, match=named):
        Space.parse(**{**SPACE, axis: value})


def test_successive_halving_keeps_the_best_third_and_resumes_each_run():
    quality = {c: c / 10 for c in range(9)}  # candidate c reaches accuracy c/10: 8 is the best
    trained: dict[int, float] = {}

    def advance(c, seconds):
        assert seconds >= trained.get(c, 0.0)  # runs only ever continue
        trained[c] = seconds
        acc = quality[c] * min(1.0, seconds / 9)
        return Score(seconds if acc >= 0.7 else None, acc, int(seconds * 10), diverged=(c == 7))

    rungs = successive_halving(list(range(9)), advance, rung_times(9.0, 3, 3), eta=3)
    assert [r.seconds for r in rungs] == [1.0, 3.0, 9.0]
    assert [len(r.scores) for r in rungs] == [9, 3, 1]
    assert [c for c, _ in rungs[0].scores[:3]] == [8, 6, 5]  # 7 diverged: ranked last
    assert 7 not in [c for c, _ in rungs[1].scores]
    assert rungs[-1].scores[0][0] == 8 and rungs[-1].scores[0][1].seconds_to_target == 9.0
    assert trained[8] == 9.0 and trained[0] == 1.0


@pytest.mark.parametrize(
    ("n", "eta", "rungs"), [(1, 3, 1), (2, 3, 1), (3, 3, 2), (18, 3, 3), (27, 3, 4), (32, 3, 4), (32, 4, 3)]
)
def test_the_default_rung_count_leaves_fewer_than_eta_candidates_at_the_last_rung(n, eta, rungs):
    assert default_rungs(n, eta) == rungs
    alive = [n]
    for _ in range(rungs - 1):
        alive.append(math.ceil(alive[-1] / eta))  # successive_halving keeps ceil(n / eta)
    assert alive[-1] < eta  # the last rung trains fewer than eta candidates ...
    assert len(alive) == 1 or alive[-2] >= eta  # ... and one rung fewer would train eta or more


def test_scores_rank_reached_first_then_accuracy_then_diverged():
    s = [Score(None, 0.9, 1), Score(2.0, 0.95, 1), Score(None, 0.0, 1, True), Score(1.0, 0.96, 1)]
    assert sorted(s, key=Score.rank) == [s[3], s[1], s[0], s[2]]


def _row(workers, seconds, acc=0.97):
    cand = Candidate(workers, ProtocolChoice("async"), "none", 0.05, 0.5)
    return FrontRow(cand, tuple(Score(t, acc, 100) for t in seconds), steps=100)


def test_the_front_keeps_rows_faster_than_every_smaller_count_and_recommends_the_fastest():
    rows = [_row(2, [10.0, 12.0]), _row(4, [6.0, 6.0]), _row(8, [7.0, 7.5]), _row(16, [3.0, None])]
    assert [r.workers for r in pareto_front(rows)] == [2, 4]
    assert recommend(rows).workers == 4 and rows[0].seconds == 11.0 and rows[0].spread == 1.0
    assert rows[3].seconds is None and not rows[3].reached  # one seed missed: not reached
    none = [_row(2, [None], acc=0.5), _row(4, [None], acc=0.8)]
    assert pareto_front(none) == [] and recommend(none).workers == 4


def test_the_recommended_command_names_only_what_differs_from_the_config():
    base = get_config()
    cand = Candidate(4, ProtocolChoice("downpour", 2), "staleness_lr", 0.2, base.momentum)
    line = command(FrontRow(cand, (Score(1.0, 1.0, 1),), steps=321), "c.py", base)
    args = shlex.split(line)
    assert args[0] == "asgdjax-train" and "--config.num_workers=4" in args and "--config.steps=321" in args
    assert "--config.n_push=2" in args and "--config.learning_rate=0.2" in args
    assert not any(a.startswith("--config.momentum") for a in args)
    # The user's own flag for a key the plan searched stays when the candidate agrees with it (dropped, the
    # run took the config file's value instead of the one the plan used).
    base.momentum, base.warm_start_steps, base.n_push = 0.9, 100, 4  # the config the user's flags made
    cand = Candidate(4, ProtocolChoice("async"), "none", 0.2, 0.9, warm_start=100)
    flags = ["--config.momentum=0.9", "--config.warm_start_steps=100", "--config.n_push=4"]
    args = shlex.split(command(FrontRow(cand, (Score(1.0, 1.0, 1),), steps=321), "c.py", base, user_flags=flags))
    assert "--config.momentum=0.9" in args and "--config.warm_start_steps=100" in args
    assert "--config.n_push=4" not in args and "--config.n_push=1" in args  # the plan's async, not the user's 4


def test_a_lane_advanced_rung_by_rung_matches_one_advanced_at_once(digits):
    config = get_config()
    config.model, config.steps, config.warm_start_steps = "mlp", 120, 0
    cand = Candidate(2, ProtocolChoice("async"), "staleness_lr", 0.1, 0.5)
    budget = 0.7
    stepped = Lanes(config, Clocks(default=CLOCK), budget=budget, target=0.99, evals=6)
    for t in rung_times(budget, 3, 3):
        s1 = stepped.advance(cand, t)
    once = Lanes(config, Clocks(default=CLOCK), budget=budget, target=0.99, evals=6)
    s2 = once.advance(cand, budget)
    lane = stepped.lane(cand)
    assert s1.gradients == s2.gradients == lane.config.steps > 0
    # Same gradients on the same schedule: the evaluations agree where both evaluated (the stepped lane also
    # evaluates at each rung's end; calls split differently, so within one example's accuracy).
    a, b = np.array(stepped.curve(cand)), np.array(once.curve(cand))
    common = np.isin(a[:, 0], b[:, 0])
    assert common.sum() == len(b) and len(a) > len(b)
    assert np.allclose(a[common, 1], b[:, 1], atol=1 / 359 + 1e-9) and np.allclose(a[common, 2], b[:, 2])
    assert stepped.simulated_gradients() == once.simulated_gradients() == s1.gradients


def test_rungs_divide_the_time_after_the_warm_start(digits):
    """Before the warm start ends only worker 0 trains, so every candidate of a learning rate is the same
    run there; a first rung inside it would drop protocols and rules by nothing (the paine2013 MNIST plan's
    first rung, 44 of the warm start's 50 s, did)."""
    assert rung_times(9.0, 3, 3, start=0.0) == [1.0, 3.0, 9.0]
    assert rung_times(10.0, 3, 3, start=1.0) == [2.0, 4.0, 10.0]
    assert rung_times(1.0, 3, 3, start=2.0) == rung_times(1.0, 3, 3)  # a warm start past the budget: ignored
    config = get_config()
    config.model, config.steps, config.warm_start_steps = "mlp", 120, 40
    lanes = Lanes(config, Clocks(default=CLOCK), budget=0.7, target=0.99, evals=6)
    cand = Candidate(4, ProtocolChoice("async"), "none", 0.1, 0.5)
    end = lanes.warm_start_end(cand)
    trace = lanes.lane(cand).trace
    times, workers = gradient_times(trace), np.asarray(trace.worker)[np.asarray(trace.step) >= 0]
    assert end == times[39] > 0 and set(workers[:40]) == {0} and len(set(workers[40:])) > 1
    assert lanes.warm_start_end(cand._replace(workers=1)) == 0.0
    # A searched warm start gets a schedule of its own, and a bracket's rungs start where its shortest ends.
    longer = cand._replace(warm_start=55)
    long_trace = lanes.lane(longer).trace
    long_workers = np.asarray(long_trace.worker)[np.asarray(long_trace.step) >= 0]
    assert set(long_workers[:55]) == {0} and set(long_workers[55:]) - {0}
    assert lanes.warm_start_end(longer) == gradient_times(long_trace)[54] > end
    assert warm_start_end(lanes, [longer, cand]) == end


def test_a_hit_past_the_budget_is_not_a_time_to_target(digits):
    """The paine2013 plan's 4-client winner counted a seed's hit at 406.9 s of a 399 s budget."""
    config = get_config()
    config.model, config.steps = "mlp", 120
    lanes = Lanes(config, Clocks(default=CLOCK), budget=0.7, target=0.9, evals=6)
    lane = lanes.lane(Candidate(2, ProtocolChoice("async"), "none", 0.1, 0.5))
    lane.curve = [(50, 0.8, 0.5), (100, 0.95, 0.7)]
    assert lanes.score(lane).seconds_to_target == 0.7
    lane.curve = [(50, 0.8, 0.5), (100, 0.95, 0.71)]
    score = lanes.score(lane)
    assert score.seconds_to_target is None and score.accuracy == 0.95


def test_a_clock_per_worker_count_and_protocol_refuses_an_uncalibrated_pair():
    plain, downpour = ProtocolChoice("async"), ProtocolChoice("downpour", 4)
    clocks = Clocks(measured={(2, plain): CLOCK})
    assert clocks.for_run(2, plain) is CLOCK
    with pytest.raises(ConfigError, match="no clock for 4 workers under async; calibrated: 2 x async"):
        clocks.for_run(4, plain)
    with pytest.raises(ConfigError, match="no clock for 2 workers under downpour:4"):
        clocks.for_run(2, downpour)
    assert Clocks(default=CLOCK).for_run(8, downpour) is CLOCK


@pytest.mark.slow
def test_a_plan_runs_from_the_command_line_and_its_command_runs(tmp_path):
    CLOCK.save(str(tmp_path / "clock.json"))
    args = [
        "--config.model=mlp", "--config.steps=200", "--config.warm_start_steps=0",
        "--workers=2,4", "--protocols=async,downpour:2", "--rules=none,staleness_lr",
        "--learning_rates=0.05,0.2", "--momenta=0.5", "--seeds=2", "--evals=5", "--target=0.85",
        "--calibration=clock.json", "--workdir=plan",
    ]  # fmt: skip
    out = run_cli("plan", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["target"] == 0.85 and len(plan["rows"]) == 2
    rec = plan["recommended"]
    assert rec["seconds_to_target"] is not None and math.isfinite(rec["seconds_to_target"])
    assert len(rec["seconds_per_seed"]) == 2 and rec["accuracy_mean"] >= 0.85
    assert (tmp_path / "plan" / "plan.png").stat().st_size > 10_000
    assert "recommended:" in out.stdout and rec["command"] in out.stdout
    # The recommended command is a valid asgdjax-train command line (checked, not trained).
    train_args = shlex.split(rec["command"])[1:]
    assert "--config.model=mlp" in train_args and "--config.warm_start_steps=0" in train_args  # the user's flags
    assert "--config.steps=200" not in train_args  # the plan's steps replace the user's
    checked = run_cli("train", [*train_args, "--dry_run"], tmp_path)
    assert checked.returncode == 0, checked.stderr[-3000:]


@pytest.mark.parametrize(
    "flag, named",
    [
        ("--target=1.5", "--target=1.5"),
        ("--protocols=async,ring", "'ring'"),
        ("--rules=adamw", "'adamw'"),
        ("--eta=1", "--eta=1"),
        ("--budget=inf", "--budget=inf"),
        ("--calibrate_rounds=0", "--calibrate_rounds=0"),  # accepted before: every rung trained to "inf", 40,000 steps
        ("--calibration=missing.json", "missing.json"),
        ("--profile=nowhere", "nowhere"),
        ("--profile=paine2013", "paine2013_gigabit"),  # the line names the packaged profiles
        ("--config.model=resnet", "resnet"),
    ],
)
def test_bad_plan_input_is_one_line_exit_2(tmp_path, flag, named):
    out = run_cli("plan", [flag, "--workdir=p"], tmp_path)
    assert named in one_line_error(out)


def test_one_clock_for_other_worker_counts_is_noted():
    """--calibration measured with 2 workers and reused for 4 predicted 4 workers as fast as 2 (a
    stranger's trial; 4 workers' own calibration did not reach the target in that time): say so."""
    from asgdjax.plan_main import other_workers

    two = Calibration(CLOCK.delay, {"num_workers": 2})
    assert "measured with 2 workers; 4,8 workers reuse its step times" in other_workers(two, (2, 4, 8))
    assert other_workers(two, (2,)) is None and other_workers(CLOCK, (2, 4)) is None  # unknown: no claim


@pytest.mark.parametrize("tool", ["plan", "predict"])
def test_a_tool_refuses_a_training_runs_workdir_and_touches_nothing(tmp_path, tool):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    out = run_cli(tool, ["--profile=paine2013_gigabit", "--workdir=run"], tmp_path)
    assert "holds a training run (config.json)" in one_line_error(out)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_an_evaluation_far_below_the_target_stops_after_its_first_examples():
    """A probe scores the test split in parts of a fixed random order (250, then up to 500, ..., all) and
    stops where the examples so far reject a hit (an exact hypergeometric tail below ALPHA); once complete
    evaluations have shown which examples are hard, it scores those first, so a point just below the
    target stops after them and a few hundred others. What it returns is the whole split's accuracy, exact."""
    from asgdjax.plan.probe import ALPHA, HARD, STAGES, Probe, needed, rejects

    n = 20_000
    rng = np.random.default_rng(1)

    class Task:  # params: the per-example truth (right or wrong), looked up by the part's test_y (= index)
        def __init__(self):
            self.calls = []

        def correct(self, right, d):
            self.calls.append(len(d["test_y"]))
            return right[np.asarray(d["test_y"])]

    def truth(acc, hard=()):  # acc * n right; wrong ones among `hard` first, then at random
        right = np.ones(n, bool)
        wrong = n - round(acc * n)
        pick = list(hard)[:wrong]
        others = rng.permutation(np.setdiff1d(np.arange(n), pick))[: wrong - len(pick)]
        right[np.concatenate([pick, others]).astype(int)] = False
        return right

    data = {"train_x": np.zeros(1), "test_x": np.arange(n), "test_y": np.arange(n)}
    probe = Probe(Task(), data, 0.97)
    sizes = [250, 250, 500, 1000, 1000, 2000, 2000, 13_000]
    assert [len(p["test_y"]) for p in probe.parts] == sizes and STAGES == (250, 500, 1000, 2000, 3000, 5000, 7000)
    assert sorted(np.concatenate([p["test_y"] for p in probe.parts]).tolist()) == list(range(n))  # a partition
    assert probe.parts[0]["test_y"].max() > 0.9 * n and probe.parts[0]["test_y"].min() < 0.1 * n  # not a prefix
    assert probe.accuracy(truth(0.80), full=False) is None and probe.task.calls == [250]
    probe.task.calls.clear()
    assert probe.accuracy(truth(0.5), full=True) == 0.5 and probe.task.calls == sizes  # full: every part

    # complete evaluations teach the probe the hard examples: a point at 96.9% whose errors lie among them
    # (as a network's do) is rejected after the hard part and a few hundred of the rest
    hard_set = rng.choice(n, 900, replace=False)
    probe = Probe(Task(), data, 0.97)
    for acc in (0.955, 0.96, 0.965):
        assert probe.accuracy(truth(acc, hard_set), full=True) == acc
    first = np.concatenate([probe.parts[0]["test_y"], probe.parts[1]["test_y"]])
    assert len(first) == HARD and set(hard_set) <= set(first.tolist())  # HARD_PARTS = 2 parts of them
    probe.task.calls.clear()
    assert probe.accuracy(truth(0.969, hard_set), full=False) is None
    assert probe.task.calls[:2] == [HARD // 2] * 2 and sum(probe.task.calls) <= HARD + 1000
    probe.task.calls.clear()  # far below, its errors among the hard ones: no hit once they are scored
    assert probe.accuracy(truth(0.95, hard_set), full=False) is None and probe.task.calls == [HARD // 2] * 2
    strict = Probe(Task(), data, 0.985)  # 300 errors allowed: more among the 500 hardest rule a hit out
    for acc in (0.955, 0.96, 0.965):
        strict.accuracy(truth(acc, hard_set), full=True)
    strict.task.calls.clear()
    assert strict.accuracy(truth(0.95, hard_set), full=False) is None and strict.task.calls == [HARD // 2]
    probe.task.calls.clear()
    assert probe.accuracy(truth(0.97, hard_set), full=False) == 0.97  # exactly at the target: a hit, counted
    assert probe.accuracy(truth(0.9705), full=False) == 0.9705  # errors elsewhere: still exact

    assert needed(0.97, 10_000) == 9700 and needed(0.97, 359) == 349 and 349 / 359 >= 0.97 > 348 / 359
    assert rejects(0, 0, 10, 9) and not rejects(5, 5, 0, 9)  # impossible / certain
    assert rejects(240, 250, 9000, 9000) and not rejects(250, 250, 9000, 9000)  # any miss: not all right
    # the tail at exactly `need` is below ALPHA when rejecting, above it otherwise
    from scipy.stats import hypergeom

    assert hypergeom.cdf(200, 10_000, 9000, 250) < ALPHA and rejects(200, 250, 9000, 10_000)
    assert hypergeom.cdf(222, 10_000, 9000, 250) > ALPHA and not rejects(222, 250, 9000, 10_000)

    class Plain:  # a task with evaluate only: counts from accuracies, no hard examples
        def evaluate(self, right, d):
            return {"test_accuracy": float(np.mean(right[np.asarray(d["test_y"])]))}

    plain = Probe(Plain(), data, 0.97)
    assert plain.accuracy(truth(0.975), full=False) == 0.975 and len(plain.parts) == len(sizes)


def test_more_workers_train_only_to_a_margin_past_the_time_fewer_workers_take(monkeypatch):
    """Brackets run from the fewest workers up; once a count reaches the target in T, larger counts train
    to BEAT_MARGIN * T (on the front they must be faster), and their rows say how far they trained."""
    from types import SimpleNamespace

    from asgdjax.plan import search as search_mod

    hits = {2: 3.0, 4: 2.0, 8: 5.0}  # seconds each worker count needs (lr 0.05); lr 0.2 never gets there
    trained: dict = {}

    class FakeLanes:
        def __init__(self, config, clocks, *, budget, target, evals, rules):
            self.budget = budget

        def advance(self, cand, seconds, seed=0):
            assert seconds <= self.budget
            trained[cand, seed] = max(trained.get((cand, seed), 0.0), seconds)
            t = hits[cand.workers] if cand.learning_rate == 0.05 else math.inf
            return Score(t if t <= seconds else None, 0.97 if t <= seconds else 0.9, int(seconds * 100))

        def lane(self, cand):
            return SimpleNamespace(config=SimpleNamespace(steps=100))

        def warm_start_end(self, cand):
            return 0.0

        def release(self, cand, seed=0):
            pass

        def release_prefixes(self):
            pass

        def simulated_gradients(self):
            return 0

    monkeypatch.setattr(search_mod, "Lanes", FakeLanes)
    space = Space.parse(workers="8,4,2", protocols="async", rules="none", learning_rates="0.05,0.2", momenta="0.5")
    plan = search_mod.search(get_config(), Clocks(default=CLOCK), space, target=0.97, budget=12.0, seeds=2)
    rows = {r.workers: r for r in plan.rows}
    assert rows[2].seconds == 3.0 and rows[2].trained_seconds == 12.0  # the first bracket: the whole budget
    beat = search_mod.BEAT_MARGIN * 3.0
    assert rows[4].seconds == 2.0 and rows[4].trained_seconds == beat  # faster: measured
    assert rows[8].seconds is None and rows[8].trained_seconds == search_mod.BEAT_MARGIN * 2.0  # beaten by 4
    assert max(s for (c, _), s in trained.items() if c.workers == 8) == search_mod.BEAT_MARGIN * 2.0
    assert plan.brackets[8][-1].seconds == search_mod.BEAT_MARGIN * 2.0
    assert [r.workers for r in plan.front] == [2, 4] and plan.recommended.workers == 4
    assert rows[8].to_json()["trained_seconds"] == search_mod.BEAT_MARGIN * 2.0
    # a row reaches the target only if every seed does: after the bracket's own run (seed 0) missed, no
    # other seed of 8 workers ran; 2 and 4 workers ran both seeds
    assert len(rows[8].scores) == 1 and not any(c.workers == 8 and s == 1 for c, s in trained)
    assert len(rows[2].scores) == len(rows[4].scores) == 2
    assert plan.notes == ()
    # A target met before the warm start ends (worker 0 alone) compares no asynchronous training: said.
    monkeypatch.setattr(FakeLanes, "warm_start_end", lambda self, cand: 2.5)
    plan = search_mod.search(get_config(), Clocks(default=CLOCK), space, target=0.97, budget=12.0, seeds=2)
    (note,) = plan.notes
    assert note.startswith("4 workers reach the target at 2 s, inside the warm start (worker 0 trains alone until 2.5")


def test_one_program_serves_every_rule_and_run_length_with_the_same_numbers(digits):
    """Lanes named the search's rules compile one simulator per workers x protocol: the rule, learning rate,
    momentum and the cosine schedule's length (seeds differ in it) are data. Each lane's evaluations equal
    those of a lane compiled for its own rule alone."""
    config = get_config()
    config.model, config.steps, config.warm_start_steps, config.lr_schedule = "mlp", 120, 0, "cosine"
    rules = ("none", "staleness_lr")
    shared = Lanes(config, Clocks(default=CLOCK), budget=0.5, target=0.99, evals=4, rules=rules)
    for rule in rules:
        for seed in (0, 1):
            cand = Candidate(2, ProtocolChoice("async"), rule, 0.1, 0.5)
            shared.advance(cand, 0.5, seed)
            alone = Lanes(config, Clocks(default=CLOCK), budget=0.5, target=0.99, evals=4)
            alone.advance(cand, 0.5, seed)
            assert shared.curve(cand, seed) == alone.curve(cand, seed)
    assert len(shared._sims) == 1
    lanes = [shared.lane(Candidate(2, ProtocolChoice("async"), r, 0.1, 0.5), s) for r in rules for s in (0, 1)]
    assert len({int(lane.hparams["schedule_updates"]) for lane in lanes}) > 1  # the seeds' run lengths differ


@pytest.mark.slow
def test_rule_siblings_share_their_run_until_the_first_stale_gradient_and_match_runs_alone(digits):
    """Candidates that differ only in a rule passing fresh gradients through (asgdjax.rules.FRESH_IDENTITY)
    run the warm start once: the later ones start from the first one's state, whether it stopped inside
    the prefix (a short rung) or passed it, and every lane's evaluations and final parameters equal those
    of the same candidate run alone, bit for bit; the search counts the shared gradients once."""
    config = get_config()
    config.model, config.steps, config.warm_start_steps = "mlp", 120, 40
    rules = ("none", "staleness_lr", "dc_asgd")
    cands = [Candidate(2, ProtocolChoice("async"), r, 0.1, 0.5) for r in rules]
    budget, short = 1.0, 0.2

    def run(lanes, cand, times):
        for t in times:
            lanes.advance(cand, t)
        lane = lanes.lane(cand)
        return lane.curve, np.concatenate([np.ravel(x) for x in jax.tree.leaves(lane.state.server.params)])

    for times in ([short, budget], [budget]):
        shared = Lanes(config, Clocks(default=CLOCK), budget=budget, target=0.999, evals=6, rules=rules)
        together = [run(shared, c, times) for c in cands]  # halving's order: every candidate to each time
        fresh = shared.lane(cands[0]).fresh_end
        assert 0 < fresh < len(shared.lane(cands[0]).trace)
        assert [shared.lane(c).inherited > 0 for c in cands] == [False, True, True]
        for cand, (curve, params) in zip(cands, together, strict=True):
            alone = Lanes(config, Clocks(default=CLOCK), budget=budget, target=0.999, evals=6, rules=rules)
            want_curve, want_params = run(alone, cand, times)
            assert curve == want_curve
            np.testing.assert_array_equal(params, want_params)
        assert together[0][0] != together[1][0]  # the rules do differ once gradients go stale
        inherited = sum(shared.lane(c).inherited for c in cands)
        assert shared.simulated_gradients() == 3 * together_gradients(shared, cands[0]) - inherited


def together_gradients(lanes, cand):
    return int((lanes.lane(cand).trace.step[: lanes.lane(cand).event] >= 0).sum())


def test_the_per_example_kernel_counts_what_evaluate_counts(digits_task):
    """ClassificationTask.correct (the probe's kernel) marks exactly as many examples right as evaluate's
    accuracy counts, on the whole split and on a part scored in several batches with a padded last one."""
    task, data = digits_task
    params = task.init(jax.random.key(3))
    right = task.correct(params, data)
    n = len(data["test_y"])
    assert right.shape == (n,) and right.dtype == bool
    assert round(task.evaluate(params, data)["test_accuracy"] * n) == int(right.sum())
    idx = np.arange(0, n, 3)
    part = {**data, "test_x": data["test_x"][idx], "test_y": data["test_y"][idx]}
    np.testing.assert_array_equal(task.correct(params, part, batch_size=50), right[idx])


def test_a_second_plan_in_the_same_workdir_keeps_the_first(tmp_path, monkeypatch):
    from asgdjax.plan import report

    monkeypatch.setattr(report, "plot", lambda plan, path, target: Path(path).write_text(f"png {target}"))
    first = report.write(None, str(tmp_path), {"target": 0.9})
    assert "kept" not in first
    second = report.write(None, str(tmp_path), {"target": 0.8})
    assert second["kept"] == str(tmp_path / "plan.1.json")
    assert json.loads((tmp_path / "plan.1.json").read_text())["target"] == 0.9
    assert (tmp_path / "plan.1.png").read_text() == "png 0.9"
    assert json.loads((tmp_path / "plan.json").read_text())["target"] == 0.8
    assert report.write(None, str(tmp_path), {"target": 0.7})["kept"] == str(tmp_path / "plan.2.json")


def test_pooled_rounds_average_their_terms_and_record_each_run():
    """Several calibration runs of one pair make one clock: the mean of their fitted terms (a single run
    caught this host in a slow spell, 1.18 ms a step against 0.87-0.90 in the real runs it predicted)."""
    from asgdjax.predict.calibration import pooled

    a = Calibration(
        DelayModel(kind="lognormal", mean=1.0, spread=0.2, speeds=(1.0, 1.2), service=0.4), {"workdir": "a"}
    )
    b = Calibration(DelayModel(kind="constant", mean=2.0, spread=0.5, speeds=(1.2, 1.0), service=0.2), {"workdir": "b"})
    got = pooled([a, b])
    assert got.delay.kind == "lognormal" and got.delay.spread == pytest.approx(0.2)  # a constant fit's 0.5 is no noise
    assert got.delay.mean == pytest.approx(1.5) and got.delay.service == pytest.approx(0.3)
    assert got.delay.speeds == pytest.approx((1.1, 1.1))
    assert got.measured == {"rounds": 2, "round_step_seconds": [1.0, 2.0], "workdirs": ["a", "b"]}
    with pytest.raises(ValueError, match="no calibration runs"):
        pooled([])


def fake_calibration_run(calls: list, seconds: dict):
    """A stand-in for a real calibration run: writes what a finished mode=async run leaves (runtime_stats.json,
    config.json), its step time taken from `seconds` by call order (the host's spells)."""

    def run(c, folder):
        Path(folder).mkdir(parents=True)
        t = seconds[len(calls)]
        calls.append((int(c.num_workers), int(c.n_push), Path(folder).name))
        stats = {
            "step_seconds": [[i % c.num_workers, t] for i in range(40)],
            "notice_seconds": [t / 10] * 40,
            "service_seconds": [t / 5] * 40,
        }
        (Path(folder) / "runtime_stats.json").write_text(json.dumps(stats))
        (Path(folder) / "config.json").write_text(json.dumps({"num_workers": c.num_workers, "warm_start_steps": 0}))

    return run


def test_calibration_rounds_go_in_turn_across_the_pairs_pool_and_are_reused(tmp_path):
    from asgdjax.plan.calibrate import calibrate_pairs

    config = get_config()
    pairs = [(2, ProtocolChoice("async")), (4, ProtocolChoice("downpour", 2))]
    calls, said = [], []
    run = fake_calibration_run(calls, {0: 1.0, 1: 3.0, 2: 1.5, 3: 3.0, 4: 2.0, 5: 3.0})
    got = calibrate_pairs(config, pairs, str(tmp_path), steps=50, rounds=3, say=said.append, run=run)
    assert calls == [(2, 1, "round_0"), (4, 2, "round_0"), (2, 1, "round_1"), (4, 2, "round_1"),
                     (2, 1, "round_2"), (4, 2, "round_2")]  # fmt: skip
    assert got[pairs[0]].delay.mean == pytest.approx(1.5) and got[pairs[1]].delay.mean == pytest.approx(3.0)
    assert got[pairs[0]].measured["round_step_seconds"] == pytest.approx([1.0, 1.5, 2.0])
    assert said[-2].startswith("2 workers under async: 1500.000 ms a step, then 150.000 ms until the coordinator")
    assert "300.000 ms it holds it (the mean of 3 runs, a step 1000.000-2000.000 ms)" in said[-2]
    assert "moved 100% between them" in said[-2] and "moved" not in said[-1]  # the pair that agreed: no warning
    saved = Calibration.load(str(tmp_path / "calibration" / "workers_4_downpour2" / "calibration.json"))
    assert saved.delay.mean == pytest.approx(3.0)

    def refuse(c, folder):
        raise AssertionError("calibrated again")

    again = calibrate_pairs(config, pairs, str(tmp_path), steps=50, rounds=3, say=said.append, run=refuse)
    assert again[pairs[0]].delay.mean == pytest.approx(1.5) and "already in the workdir" in said[-1]
    # An interrupted calibration (no calibration.json yet) keeps its finished runs and makes only the rest.
    (tmp_path / "calibration" / "workers_2_async" / "calibration.json").unlink()
    shutil.rmtree(tmp_path / "calibration" / "workers_2_async" / "round_2")
    calls.clear()
    resumed = calibrate_pairs(config, pairs, str(tmp_path), steps=50, rounds=3, say=said.append,
                              run=fake_calibration_run(calls, {0: 3.0}))  # fmt: skip
    assert calls == [(2, 1, "round_2")] and resumed[pairs[0]].delay.mean == pytest.approx((1.0 + 1.5 + 3.0) / 3)


@pytest.mark.slow
def test_a_plan_calibrates_each_pair_with_real_runs_and_reuses_them(tmp_path):
    args = [
        "--config.model=mlp", "--config.steps=200", "--workers=2", "--protocols=async", "--rules=none",
        "--learning_rates=0.1", "--momenta=0.5", "--seeds=1", "--evals=4", "--target=0.5",
        "--calibrate_steps=60", "--calibrate_rounds=2", "--workdir=plan",
    ]  # fmt: skip
    out = run_cli("plan", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    pair = tmp_path / "plan" / "calibration" / "workers_2_async"
    assert sorted(p.name for p in pair.iterdir()) == ["calibration.json", "round_0", "round_1"]
    cal = Calibration.load(str(pair / "calibration.json"))
    assert cal.measured["rounds"] == 2 and cal.measured["num_workers"] == 2
    assert "real run 2 of 2, 60 gradients" in out.stderr and "(the mean of 2 runs, a step" in out.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["clocks"]["2 workers, async"]["measured"]["rounds"] == 2
    again = run_cli("plan", args, tmp_path)
    assert again.returncode == 0 and "the calibration already in the workdir" in again.stderr
