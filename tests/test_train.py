"""The trainer in-process: sync resume, sim mode outputs, sim resume, async replay, the health verdicts.
The MLP on digits keeps these fast; the CLI tests run the default CNN."""

import io
import json
import pathlib
import shutil

import pytest
from helpers import assert_trees_close, assert_trees_equal, checkpoint_state

from asgdjax.configs.default import get_config
from asgdjax.core.trace import Trace
from asgdjax.errors import ConfigError, Diverged
from asgdjax.train import train


def config(**kw):
    c = get_config()
    c.model, c.warm_start_steps = "mlp", 0
    c.steps, c.log_every, c.eval_every, c.checkpoint_every = 60, 20, 30, 30
    for k, v in kw.items():
        c[k] = v
    return c


def final_params(workdir, like_step=None):
    return None, checkpoint_state(str(workdir))


def test_sync_resume_continues_to_the_same_result(tmp_path):
    full = train(config(), str(tmp_path / "full"), show_progress=False)
    train(config(steps=30), str(tmp_path / "cut"), show_progress=False)
    resumed = train(config(), str(tmp_path / "cut"), show_progress=False)
    assert resumed["resumed_from_step"] == 30 and resumed["steps"] == 60
    records = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 30, "event": "resumed", "checkpoint": 30}.items() <= next(  # as mode=async records it
        r for r in records if r.get("event") == "resumed"
    ).items()
    _, a = final_params(tmp_path / "full")
    _, b = final_params(tmp_path / "cut")
    assert_trees_equal(a, b)
    assert resumed["final_test_accuracy"] == full["final_test_accuracy"]


def test_sim_mode_reports_staleness_and_saves_its_trace(tmp_path):
    s = train(
        config(mode="sim", num_workers=4, rule="staleness_lr", steps=80), str(tmp_path / "sim"), show_progress=False
    )
    assert s["mode"] == "sim" and s["gradients"] == 80 and s["updates"] == 80
    assert 2.0 < s["staleness_mean"] < 4.5 and s["staleness_max"] >= 3 and s["virtual_seconds"] > 0
    trace = Trace.load(s["trace"])
    assert trace.num_gradients == 80 and trace.num_workers == 4
    records = [json.loads(x) for x in (tmp_path / "sim" / "metrics.jsonl").read_text().splitlines()]
    assert any("staleness_mean" in r and "virtual_seconds" in r for r in records)
    assert [r["step"] for r in records if "train_loss" in r] == [20, 40, 60, 80]


@pytest.mark.slow
def test_sim_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    kw = dict(mode="sim", num_workers=3, protocol="async", n_push=2, n_fetch=2, checkpoint_every=25)
    train(config(**kw), str(tmp_path / "full"), show_progress=False)
    train(config(**kw), str(tmp_path / "cut"), show_progress=False)
    # Lose everything after the first checkpoint, as a run killed there would, then rerun the same command.
    ckdir = tmp_path / "cut" / "checkpoints"
    steps = sorted(int(p.name) for p in ckdir.iterdir() if p.name.isdigit())
    assert len(steps) >= 2 and steps[0] < 60
    for s in steps[1:]:
        shutil.rmtree(ckdir / str(s))
    resumed = train(config(**kw), str(tmp_path / "cut"), show_progress=False)
    assert resumed["resumed_from_step"] == steps[0]
    _, a = final_params(tmp_path / "full")
    _, b = final_params(tmp_path / "cut")
    assert_trees_equal(a, b)


@pytest.mark.slow
def test_extending_a_finished_sim_run_records_what_it_computed(tmp_path):
    """More steps for a finished simulated run continue it as the runtime would (every worker restarts from
    the server's parameters after the drain); the workdir's trace then replays to the same parameters, and
    an interrupted extension resumes on that trace."""
    kw = dict(mode="sim", num_workers=4, protocol="async")
    first = train(config(**kw), str(tmp_path / "ext"), show_progress=False)
    short = Trace.load(first["trace"])
    train(config(**kw, steps=100), str(tmp_path / "ext"), show_progress=False)
    trace = Trace.load(str(tmp_path / "ext" / "trace.npz"))
    assert trace.num_gradients == 100 and trace.meta["continued_at_event"] == len(short)
    assert (trace.worker[: len(short)] == short.worker).all() and (trace.step[: len(short)] == short.step).all()
    assert (trace.step[len(short) : len(short) + 4] == -1).all()  # each worker fetches, then steps on
    replay = train(
        config(**kw, steps=100, trace=str(tmp_path / "ext" / "trace.npz")),
        str(tmp_path / "replay"),
        show_progress=False,
    )
    assert replay["gradients"] == 100
    extended = checkpoint_state(str(tmp_path / "ext"))
    assert_trees_equal(extended, checkpoint_state(str(tmp_path / "replay")))
    shutil.rmtree(tmp_path / "ext" / "checkpoints" / "100")  # killed before its last checkpoint
    train(config(**kw, steps=100), str(tmp_path / "ext"), show_progress=False)
    assert_trees_equal(extended, checkpoint_state(str(tmp_path / "ext")))


def test_sim_mode_replays_dai_et_al_uniform_staleness_from_a_version_ring(tmp_path):
    c = config(mode="sim", num_workers=4, steps=40)
    c.delay.kind, c.delay.staleness_bound = "uniform_staleness", 4
    s = train(c, str(tmp_path / "dai"), show_progress=False)
    assert s["sim_memory"] == "ring of 5 versions" and s["staleness_max"] <= 4


def test_async_mode_reports_runtime_metrics_and_its_trace_replays(tmp_path):

    c = config(mode="async", num_workers=4, rule="staleness_lr", steps=60)
    s = train(c, str(tmp_path / "async"), show_progress=False)
    assert s["mode"] == "async" and s["gradients"] == 60 and s["updates"] == 60
    assert len(s["worker_steps_per_second"]) == 4 and s["devices"] == [f"cpu:{i}" for i in range(4)]
    assert 0 <= s["staleness_mean"] <= s["staleness_max"]
    trace = Trace.load(s["trace"])
    assert trace.meta["source"] == "runtime" and trace.num_gradients == 60
    records = [json.loads(x) for x in (tmp_path / "async" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [20, 40, 60]  # the curve, as in sync and sim
    # Replay the recorded trace in the simulator (mode=sim, trace=...): the same final parameters.
    r = train(
        config(mode="sim", num_workers=4, rule="staleness_lr", steps=60, trace=s["trace"]),
        str(tmp_path / "replay"),
        show_progress=False,
    )
    assert r["updates"] == 60
    _, saved = final_params(tmp_path / "async")
    _, replayed = final_params(tmp_path / "replay")
    assert_trees_close(replayed["sim"]["server"]["params"], saved["server"]["params"], atol=1e-6)
    # On other batches it would follow the same order to other numbers: refused before anything runs.
    other = config(mode="sim", num_workers=4, rule="staleness_lr", steps=60, trace=s["trace"], batch_size=16)
    with pytest.raises(ConfigError, match="recorded with batch_size=32 .this config: 16.; an exact replay"):
        train(other, str(tmp_path / "other"), show_progress=False)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("mode", ["sim", "async"])
def test_a_run_whose_gradients_are_mostly_rejected_is_reported_as_diverged(tmp_path, mode):
    # staleness_cap=0 with 4 workers rejects every stale gradient: the parameters barely move while the
    # losses stay finite, and the run must not look like a success.
    c = config(mode=mode, num_workers=4, staleness_cap=0, steps=60)
    with pytest.raises(Diverged, match="the guards rejected .* of .* gradients"):
        train(c, str(tmp_path / mode), show_progress=False)


@pytest.mark.parametrize("mode", ["sim", "async"])
def test_an_exploding_learning_rate_is_diverged_in_every_mode(tmp_path, mode):
    c = config(mode=mode, num_workers=2, learning_rate=1e30, steps=60, max_train_loss=1e38, momentum=0.0)
    with pytest.raises(Diverged, match="diverged at step 20"):
        train(c, str(tmp_path / mode), show_progress=False)


def test_a_collapse_to_chance_is_flagged_in_the_summary(tmp_path):
    # Momentum 0.99 without compensation, lr 0.5 and 8 stale workers: the net is pushed to chance level.
    c = config(mode="sim", num_workers=8, rule="none", momentum_compensation="none", momentum=0.99, learning_rate=0.5)
    c.steps, c.eval_every, c.max_train_loss = 120, 30, 1e38
    try:
        s = train(c, str(tmp_path / "collapse"), show_progress=False)
    except Diverged:
        pytest.skip("this setting diverged outright (also reported) instead of collapsing")
    assert s["health"]["status"] == "collapsed" and "chance" in s["health"]["reason"]
    records = [json.loads(x) for x in (tmp_path / "collapse" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "collapse_warning" for r in records) or s["health"]["status"] == "collapsed"


def file_events(logdir):
    """Every event of the TensorBoard event files in `logdir`, file by file in the order written, read
    without TensorFlow (the TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*"), key=lambda p: pathlib.Path(p).stat().st_mtime):
        data, i = pathlib.Path(path).read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            yield event


def read_events(logdir):
    """(step, tag, kind, value) of every summary value in the event files."""
    return [
        (e.step, v.tag, "histo" if v.HasField("histo") else "scalar", v)
        for e in file_events(logdir)
        for v in e.summary.value
    ]


def shown_events(logdir):
    """What TensorBoard shows: each file's purge step (a resumed run's SessionLog START) drops the earlier
    files' events from that step on."""
    shown = []
    for event in file_events(logdir):
        if event.HasField("session_log") and event.session_log.status == event.session_log.START:
            shown = [(s, tag) for s, tag in shown if s < event.step]
        shown += [(event.step, v.tag) for v in event.summary.value]
    return shown


@pytest.mark.slow
def test_tensorboard_after_a_resume_shows_each_step_once(tmp_path):
    """metrics.jsonl drops the records a resume recomputes; TensorBoard showed them twice (two values per
    step in async runs, whose recomputed steps differ): the resumed event file now purges them."""
    pytest.importorskip("tensorboardX")
    run = str(tmp_path / "run")
    train(
        config(steps=40, log_every=10, eval_every=20, checkpoint_every=20, tensorboard=True), run, show_progress=False
    )
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "40")  # killed between checkpoints: 21..40 are recomputed
    (tmp_path / "run" / "summary.json").unlink()
    train(
        config(steps=40, log_every=10, eval_every=20, checkpoint_every=20, tensorboard=True), run, show_progress=False
    )
    shown = shown_events(tmp_path / "run" / "tensorboard")
    losses = [s for s, tag in shown if tag == "train_loss"]
    assert losses == [10, 20, 30, 40] and [s for s, tag in shown if tag == "test_accuracy"] == [20, 40]


@pytest.mark.parametrize("mode", ["sim", "async"])
def test_tensorboard_events_hold_every_scalar_and_staleness_histograms(tmp_path, mode):
    pytest.importorskip("tensorboardX")
    c = config(mode=mode, num_workers=4, steps=60, tensorboard=True)
    train(c, str(tmp_path / mode), show_progress=False)
    events = read_events(tmp_path / mode / "tensorboard")
    scalars = {(s, tag) for s, tag, kind, _ in events if kind == "scalar"}
    assert {
        (20, "train_loss"),
        (40, "train_loss"),
        (60, "train_loss"),
        (30, "test_accuracy"),
        (60, "test_accuracy"),
    } <= scalars
    records = [json.loads(x) for x in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
    for r in records:  # every number in metrics.jsonl is a scalar at its step
        assert all(
            (r["step"], k) in scalars for k, v in r.items() if k not in ("step", "time") and isinstance(v, float)
        )
    hists = [(s, v.histo) for s, tag, kind, v in events if tag == "staleness_hist"]
    assert [s for s, _ in hists] == [30, 60]
    assert sum(h.num for _, h in hists) == 60  # every applied gradient once


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_writes_whole_lines_into_a_log_and_redraws_on_a_terminal(monkeypatch):
    """A redirected run's log got one line of thousands of '\\r' rewrites (a stranger's trial): a log now
    gets plain lines, at most one every LOG_SECONDS, and the last says where the run ended."""
    from asgdjax.train import progress

    log = io.StringIO()
    bar = progress.progress_bar(total=500, initial=0, unit="grad", enabled=True, stream=log)
    for _ in range(500):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 1 <= len(lines) <= 3, lines
    assert "500/500" in lines[-1]
    terminal = _Terminal()
    bar = progress.progress_bar(total=500, initial=0, unit="grad", enabled=True, stream=terminal)
    bar.update(500)
    bar.close()
    assert "\r" in terminal.getvalue()  # redrawn in place where someone watches
    quiet = io.StringIO()
    progress.progress_bar(total=5, initial=0, unit="grad", enabled=False, stream=quiet).close()
    assert quiet.getvalue() == ""
