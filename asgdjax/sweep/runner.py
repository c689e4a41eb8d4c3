"""Run a grid of configurations, each into its own workdir (resumable: a finished point is read back, not
rerun). mode=sim points that share a compiled program run together through `asgdjax.sim.sweep` (vmapped
on accelerators, one after another on the CPU, by `strategy`), evaluated every eval_every gradients;
everything else runs through the trainer, one point at a time; a point that diverges is recorded as such
(where, why, its last evaluation) and the grid goes on."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from asgdjax.core.health import ADVICE, CollapseDetector, divergence
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.data import require_prepared
from asgdjax.errors import Diverged
from asgdjax.sim import Simulator
from asgdjax.sim.sweep import Member, sweep
from asgdjax.sweep.grid import Point, apply, program_key
from asgdjax.train import tensorboard, train
from asgdjax.train.build import hparams_from_config, keys, sampler_from_config, schedule_from_config, server_factory
from asgdjax.train.outputs import MetricsWriter, read_json, write_json
from asgdjax.train.run import check, prepare
from asgdjax.train.sim import record_events
from asgdjax.train.task import device_data
from asgdjax.train.validate import validate
from asgdjax.train.workdir import Workdir


class Row(NamedTuple):
    """One point's result (what the table shows)."""

    point: Point
    summary: dict[str, Any]


def run_grid(
    base: Any,
    points: list[Point],
    workdir: str,
    *,
    strategy: str = "auto",
    progress: Callable[[str], None] = lambda s: None,
) -> list[Row]:
    """Every point's summary; finished points are read from their workdirs."""
    configs = [apply(base, p) for p in points]
    for c in configs:
        validate(c)
    for dataset in dict.fromkeys((c.dataset, c.data_dir or None) for c in configs):  # before any point runs
        require_prepared(*dataset)
    for p, c in zip(points, configs, strict=True):  # all the trainer checks (shards, images, memory, devices)
        check(c, os.path.join(workdir, p.name))
    rows: dict[int, Row] = {}
    todo = []
    for p, c in zip(points, configs, strict=True):  # a point's folder holding another config: refused first
        Workdir(os.path.join(workdir, p.name)).check_same_run(c.to_dict())
    for i, (p, c) in enumerate(zip(points, configs, strict=True)):
        done = read_json(os.path.join(workdir, p.name, "summary.json"))
        if done is not None and done.get("steps") == c.steps:
            rows[i] = Row(p, done)
        else:
            todo.append(i)
    groups: dict[str, list[int]] = {}
    for i in todo:
        key = program_key(configs[i]) if configs[i].mode == "sim" and not configs[i].trace else f"solo{i}"
        groups.setdefault(key, []).append(i)
    started = 0
    for members in groups.values():
        names = ", ".join(points[i].name for i in members)
        where = f"{started + 1}" if len(members) == 1 else f"{started + 1}-{started + len(members)}"
        together = "" if len(members) == 1 else " (one simulated sweep)"
        progress(f"point {where} of {len(todo)}{together}: {names}")
        started += len(members)
        if len(members) > 1:
            summaries = run_together(
                [configs[i] for i in members], [os.path.join(workdir, points[i].name) for i in members], strategy
            )
        else:
            i = members[0]
            summaries = [solo(configs[i], os.path.join(workdir, points[i].name), progress)]
        for i, s in zip(members, summaries, strict=True):
            rows[i] = Row(points[i], s)
    return [rows[i] for i in range(len(points))]


def solo(config: Any, workdir: str, progress: Callable[[str], None]) -> dict:
    """One point through the trainer. A point that diverges is a result of the grid, not the end of it
    (a learning-rate sweep's largest value often diverges): its summary says where and why, and is written
    like a finished one's, so a resumed grid reads it back instead of diverging again."""
    try:
        return train(config, workdir, show_progress=False)
    except Diverged as e:
        progress(f"diverged: {e}")
        summary = diverged_summary(config, workdir)
        write_json(os.path.join(workdir, "summary.json"), summary)
        return summary


def diverged_summary(config: Any, workdir: str) -> dict:
    """summary.json of a point that diverged: the step and reason from its metrics.jsonl, its last
    evaluation before that, and no final accuracy (its parameters are not a result)."""
    records = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:  # a torn line
                continue
    stop = next(r for r in reversed(records) if r.get("diverged"))
    last = lambda key: next((r[key] for r in reversed(records) if key in r), None)  # noqa: E731
    return {
        "mode": config.mode,
        "dataset": config.dataset,
        "model": config.model,
        "steps": config.steps,
        "diverged": True,
        "diverged_at": stop["step"],
        "reason": stop.get("reason"),
        "final_test_accuracy": None,
        "final_test_loss": None,
        "last_test_accuracy": last("test_accuracy"),
        "staleness_mean": last("staleness_mean"),
        "virtual_seconds": last("virtual_seconds"),
        "workdir": os.path.abspath(workdir),
    }


def run_together(configs: list[Any], workdirs: list[str], strategy: str) -> list[dict]:
    """Simulate configurations that share one compiled program as one sweep; each gets a workdir with its
    config.json, metrics.jsonl (evaluations), trace.npz and summary.json, as a lone mode=sim run would."""
    t0 = time.time()
    setup = prepare(configs[0])
    task, data = setup.task, device_data(setup.dataset)
    traces = [schedule_from_config(c) for c in configs]
    spec = ProtocolSpec.from_config(configs[0])
    sim = Simulator(task, server_factory(configs[0], traces[0].num_updates), spec, strategy=configs[0].sim_strategy)
    members = []
    for c, t in zip(configs, traces, strict=True):
        k = keys(c)
        grads = np.cumsum(t.step >= 0)
        members.append(
            Member(
                task.init(k.init),
                t,
                hparams_from_config(c),
                sampler_from_config(c, setup.dataset.num_train),
                k.data,
                record_events(c, grads),
            )
        )
    writers = [_open(c, w) for c, w in zip(configs, workdirs, strict=True)]
    last_eval: list[dict] = [{} for _ in configs]
    watch = [CollapseDetector(num_classes=setup.dataset.spec.num_classes) for _ in configs]  # as the trainer does
    stopped: list[dict] = [{} for _ in configs]  # where a member diverged (the sweep's program runs on)

    def on_cut(i: int, event: int, state: Any, losses: np.ndarray) -> None:
        if stopped[i]:
            return
        done = int(np.cumsum(traces[i].step >= 0)[event - 1])
        record = {"train_loss": float(losses.mean())} if len(losses) else {}
        why = divergence(record["train_loss"], limit=configs[i].max_train_loss) if record else None
        if why is not None:  # as the trainer logs it; later cuts of this member are not results
            stopped[i] = {"diverged_at": done, "reason": why}
            loss = record["train_loss"]
            writers[i].write(done, train_loss=loss if np.isfinite(loss) else str(loss), diverged=True, reason=why)
            return
        if record:
            watch[i].loss(record["train_loss"])
        if done % configs[i].eval_every == 0 or event == len(traces[i]):
            last_eval[i] = task.evaluate(state.server.params, data)
            record.update(last_eval[i])
            watch[i].accuracy(last_eval[i]["test_accuracy"])
        s = traces[i].slice(event).stats()
        writers[i].write(done, **record, updates=int(state.server.version), staleness_mean=s.staleness_mean)

    finals = sweep(sim, members, data, strategy=strategy, on_cut=on_cut)
    share = (time.time() - t0) / len(configs)
    out = []
    for c, w, t, st, wr, ev, stop, wt in zip(
        configs, workdirs, traces, finals, writers, last_eval, stopped, watch, strict=True
    ):
        wr.close()
        out.append(_finish(c, w, t, st, ev, share, wt) if not stop else _finish_diverged(c, w, t))
    return out


def _finish_diverged(config: Any, workdir: str, trace: Any) -> dict:
    trace.save(os.path.join(workdir, "trace.npz"))
    summary = diverged_summary(config, workdir) | {"swept_together": True}
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


class _PointWriter(NamedTuple):
    """A swept point's records, where a lone run writes them: metrics.jsonl and (asked for and installed)
    TensorBoard event files."""

    jsonl: MetricsWriter
    board: Any = None

    def write(self, step: int, **record: Any) -> None:
        self.jsonl.write(step, **record)
        if self.board is not None:
            self.board.write(step, **record)

    def close(self) -> None:
        self.jsonl.close()
        if self.board is not None:
            self.board.close()


def _open(config: Any, workdir: str) -> _PointWriter:
    with Workdir(workdir) as wd:
        wd.check_same_run(config.to_dict())
        write_json(wd.file("config.json"), config.to_dict())
    writer = MetricsWriter(workdir)
    writer.truncate_after(-1)  # an interrupted sweep starts this point over
    if not (config.tensorboard and tensorboard.available()):
        return _PointWriter(writer)
    shutil.rmtree(os.path.join(workdir, tensorboard.SUBDIR), ignore_errors=True)  # and its event files
    return _PointWriter(writer, tensorboard.TensorBoardWriter(workdir))


def _finish(config: Any, workdir: str, trace: Any, state: Any, last: dict, wall: float, watch: Any) -> dict:
    trace.save(os.path.join(workdir, "trace.npz"))
    why = watch.verdict(final=True)  # summary.json's health, as a lone run writes it
    health_ = {"status": "ok"} if why is None else {"status": "collapsed", "reason": why, "advice": ADVICE}
    s = trace.stats()
    rejected = np.asarray(state.server.rejected)
    summary = {
        "mode": "sim",
        "dataset": config.dataset,
        "model": config.model,
        "steps": config.steps,
        "gradients": trace.num_gradients,
        "updates": int(state.server.version),
        "final_test_accuracy": last.get("test_accuracy"),
        "final_test_loss": last.get("test_loss"),
        "staleness_mean": s.staleness_mean,
        "staleness_max": s.staleness_max,
        "virtual_seconds": s.virtual_time,
        "rejected_nonfinite": int(rejected[:, 0].sum()),
        "rejected_stale": int(rejected[:, 1].sum()),
        "wall_seconds": wall,
        "health": health_,
        "workdir": os.path.abspath(workdir),
        "swept_together": True,
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
