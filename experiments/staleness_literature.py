"""The classic staleness results, reproduced in the simulator; each study writes a table (JSON) and a plot
and states the published outcome next to the reproduced one (the verdict is computed from the numbers).

  python experiments/staleness_literature.py --quick                 # MNIST, about 15 minutes on 2 CPU cores
  python experiments/staleness_literature.py --study=dai            # one study, full setting

zhang  Zhang, Gupta, Lian, Liu 2016 (Staleness-aware async-SGD): n-softsync with a fixed learning rate
       degrades and fails as n approaches the number of learners; lr0 / staleness keeps every protocol
       near hardsync.
zheng  Zheng et al. 2017 (DC-ASGD): test error DC-ASGD-adaptive <= DC-ASGD-constant <= plain ASGD, the
       gap growing from 4 to 8 workers.
dai    Dai et al. 2019 (Toward understanding the impact of staleness): batches to a target accuracy grow
       with staleness s in {0, 4, 8, 16}, more for deeper models and for momentum and Adam than for SGD.
"""

from __future__ import annotations

import math
import os

from absl import flags
from study import configure, ensure_dataset, first_reaching, pyplot, run, run_script, save, savefig

from asgdjax.cli import fail
from asgdjax.configs import dai2019, zhang2016, zheng2017
from asgdjax.flag_lists import items

flags.DEFINE_bool("quick", False, "Short runs, fewer settings (a few minutes).")
flags.DEFINE_string("study", "zhang,zheng,dai", "Which studies.")
flags.DEFINE_string("outdir", "experiments/results/staleness", "Where JSON, PNG and run folders go.")
FLAGS = flags.FLAGS
RUNS = ""
# Each study's settings live in its config file (asgdjax/configs/zhang2016.py, zheng2017.py, dai2019.py).


def error(r) -> float:
    acc = r["summary"].get("final_test_accuracy", float("nan"))
    return 1.0 - acc if not r["diverged"] and not math.isnan(acc) else float("nan")


# ----------------------------------------------------------------------------------------------- Zhang
def zhang(out: str) -> dict:
    ns = [1, 2, 4, 8]
    rows = []
    for policy, variant in (("fixed lr", "fixed"), ("lr0 / staleness", "scaled")):
        base = zhang2016.get_config(variant + (",quick" if FLAGS.quick else ""))
        k, steps, lr, rule = base.num_workers, base.steps, base.learning_rate, base.rule
        hard = run(configure(base, protocol="sync"), f"{RUNS}/zhang_{steps}_{rule}_hardsync")
        rows.append(
            {
                "policy": policy,
                "protocol": "hardsync",
                "n": 0,
                "staleness_mean": 0.0,
                "test_error": error(hard),
                "diverged": hard["diverged"],
            }
        )
        for n in ns:
            r = run(configure(base, protocol="softsync", softsync_n=n), f"{RUNS}/zhang_{steps}_{rule}_softsync{n}")
            rows.append(
                {
                    "policy": policy,
                    "protocol": f"{n}-softsync",
                    "n": n,
                    "staleness_mean": r["summary"].get("staleness_mean", float("nan")),
                    "test_error": error(r),
                    "diverged": r["diverged"],
                }
            )
    fixed = {r["n"]: r["test_error"] for r in rows if r["policy"] == "fixed lr"}
    scaled = {r["n"]: r["test_error"] for r in rows if r["policy"] != "fixed lr"}
    worst_fixed = max((v if not math.isnan(v) else 1.0) for n, v in fixed.items() if n == ns[-1])
    degrade = worst_fixed > fixed[0] + 0.01
    near = all(not math.isnan(v) and v <= scaled[0] + 0.01 for v in scaled.values())
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for policy, d in (("fixed lr", fixed), ("lr0 / staleness", scaled)):
        xs = ["hard"] + [str(n) for n in ns]
        ax.plot(xs, [d[0]] + [d[n] if not math.isnan(d[n]) else 1.0 for n in ns], "o-", label=policy)
    ax.set(
        xlabel="n of n-softsync (8 learners); 'hard' = hardsync",
        ylabel="test error (1.0 = failed)",
        title="Zhang et al. 2016 on MNIST (MLP)",
        yscale="log",
    )
    ax.legend()
    savefig(fig, f"{out}/zhang2016.png")
    return {
        "study": "Zhang et al. 2016",
        "setting": f"MNIST, MLP (128 hidden), {k} learners, batch 32, {steps} gradients, SGD lr {lr}",
        "published": "fixed lr: error grows with n and training fails as n -> learners; lr0/staleness: every "
        "protocol stays near hardsync",
        "reproduced": {"fixed_lr_degrades": degrade, "scaled_lr_within_1pt_of_hardsync": near},
        "agrees": degrade and near,
        "rows": rows,
    }


# ----------------------------------------------------------------------------------------------- Zheng
def zheng(out: str) -> dict:
    steps = 2000  # full: the quick runs plus a second seed
    seeds = [0] if FLAGS.quick else [0, 1]
    rules = [("ASGD", "asgd"), ("DC-ASGD-c", "dc_asgd"), ("DC-ASGD-a", "dc_asgd_adaptive")]
    rows = []
    lr = zheng2017.get_config().learning_rate
    for k in (4, 8):
        for name, variant in rules:
            errs = []
            for seed in seeds:
                c = configure(zheng2017.get_config(variant), num_workers=k, seed=seed, steps=steps)
                errs.append(error(run(c, f"{RUNS}/zheng_{steps}_k{k}_{variant}_lr{lr}_s{seed}")))
            mean = sum(errs) / len(errs)
            rows.append({"workers": k, "method": name, "test_error": mean, "per_seed": errs})
    by = {(r["workers"], r["method"]): r["test_error"] for r in rows}
    order = {k: by[(k, "DC-ASGD-a")] <= by[(k, "DC-ASGD-c")] <= by[(k, "ASGD")] for k in (4, 8)}
    gap = {k: by[(k, "ASGD")] - by[(k, "DC-ASGD-a")] for k in (4, 8)}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, (name, _) in enumerate(rules):
        ax.bar([j + 0.27 * (i - 1) for j in range(2)], [by[(k, name)] for k in (4, 8)], 0.27, label=name)
    ax.set(
        xticks=[0, 1],
        xticklabels=["4 workers", "8 workers"],
        ylabel="test error",
        title="Zheng et al. 2017 on MNIST (small CNN)",
    )
    ax.legend()
    savefig(fig, f"{out}/zheng2017.png")
    return {
        "study": "Zheng et al. 2017",
        "setting": f"MNIST, small CNN, momentum 0.9, lr {lr}, batch 32, {steps} gradients, exponential delays, "
        f"seeds {seeds}",
        "published": "test error DC-ASGD-a <= DC-ASGD-c <= ASGD, the gap growing from 4 to 8 workers",
        "reproduced": {"ordering_holds": order, "gap_asgd_minus_dca": gap, "gap_grows": gap[8] > gap[4]},
        "agrees": all(order.values()) and gap[8] > gap[4],
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------- Dai
def dai(out: str) -> dict:
    steps = 1500 if FLAGS.quick else 2000
    models = ["mlr", "mlp", "mlp3"]
    optims = [(name, *lr_mom) for name, lr_mom in dai2019.OPTIMIZERS.items()]
    bounds = [0, 4, 8, 16]
    target = 0.9
    rows = []
    for model in models:
        for opt, _, _ in optims:
            for s in bounds:
                c = configure(dai2019.get_config(f"{model},{opt}"), steps=steps, delay__staleness_bound=s)
                r = run(c, f"{RUNS}/dai_{steps}_{model}_{opt}_s{s}")
                rows.append(
                    {
                        "model": model,
                        "optimizer": opt,
                        "s": s,
                        "batches_to_target": first_reaching(r["curve"], target),
                        "diverged": r["diverged"],
                    }
                )
    table = {(r["model"], r["optimizer"], r["s"]): r["batches_to_target"] for r in rows}

    def slowdown(model, opt):
        a, b = table[(model, opt, 0)], table[(model, opt, bounds[-1])]
        return (b or 2 * steps) / a if a else float("nan")

    slow = {f"{m}/{o}": slowdown(m, o) for m in models for o, _, _ in optims}
    grows = all(slow[f"{m}/{o}"] >= 1.0 for m in models for o, _, _ in optims)
    deeper = sum(slow[f"mlp3/{o}"] >= slow[f"mlr/{o}"] for o, _, _ in optims) >= 2
    adaptive = sum(slow[f"{m}/{o}"] >= slow[f"{m}/sgd"] for m in models for o in ("momentum", "adam")) >= 4
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, (opt, _, _) in zip(axes, optims, strict=True):
        for model in models:
            ys = [table[(model, opt, s)] or float("nan") for s in bounds]
            ax.plot(bounds, ys, "o-", label=model)
        ax.set(xlabel="staleness bound s", title=opt)
    axes[0].set(ylabel=f"batches to {target:.0%} test accuracy")
    axes[0].legend()
    fig.suptitle("Dai et al. 2019 on MNIST (8 workers, staleness uniform on {0..s})")
    savefig(fig, f"{out}/dai2019.png")
    return {
        "study": "Dai et al. 2019",
        "setting": f"MNIST, batch 32, up to {steps} batches, target {target}, staleness uniform on {{0..s}}",
        "published": "batches to target grow with s; more for deeper models; more for momentum and Adam than SGD",
        "reproduced": {
            "slowdown_s16_over_s0": slow,
            "grows_with_s": grows,
            "deeper_more_sensitive": deeper,
            "momentum_adam_more_sensitive": adaptive,
        },
        "agrees": grows and deeper and adaptive,
        "rows": rows,
    }


def main(argv):
    del argv
    global RUNS
    studies = {"zhang": zhang, "zheng": zheng, "dai": dai}
    names = items("study", FLAGS.study)
    for name in names:
        if name not in studies:
            fail(f"--study={FLAGS.study!r} names {name!r}; allowed: {', '.join(studies)} (comma-separated)")
    ensure_dataset("mnist")
    out = os.path.join(FLAGS.outdir, "quick" if FLAGS.quick else "full")
    RUNS = os.path.join(FLAGS.outdir, "runs")  # shared: a run named by its settings is never recomputed
    os.makedirs(out, exist_ok=True)
    for name in names:
        result = studies[name](out)
        save(f"{out}/{name}.json", result)
        print(f"{result['study']}: published: {result['published']}")
        print(
            f"    reproduced: {result['reproduced']}  -> {'agrees' if result['agrees'] else 'DOES NOT agree'}",
            flush=True,
        )


if __name__ == "__main__":
    run_script(main)
