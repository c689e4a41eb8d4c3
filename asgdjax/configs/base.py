"""Defaults shared by every config; each config file overrides what its experiment needs.

`asgdjax-train --help` lists every key below with its default and comment, by the section headers (`# ==`).
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # == Training ==
    c.mode = "sync"  # sync (one worker) | sim (simulated asynchronous workers) | async (real ones)
    c.dataset = "digits"  # digits (embedded) | mnist | cifar10 (prepared with asgdjax-prepare)
    c.data_dir = ""  # TFDS data folder; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.model = "small_cnn"  # small_cnn | mlr | mlp | mlp3 | cifar_18pct | cifar_80sec | alexnet
    c.dtype = "float32"  # float32 | bfloat16 (compute dtype; parameters, optimizer and gradients stay float32)
    c.augment = False  # random crop + flip (natural-image datasets only)
    c.batch_size = 32  # examples per gradient (per worker)
    c.steps = 1000  # gradients computed in all (= updates in sync mode)
    c.optimizer = "momentum"  # sgd | momentum | nesterov | adagrad | adam (the server's optimizer)
    c.learning_rate = 0.05
    c.momentum = 0.9  # the total momentum wanted (what synchronous training is tuned with)
    c.weight_decay = 0.0  # L2 added to the gradient (cuda-convnet's wc)
    c.lr_schedule = "constant"  # constant | cosine (decays to 0 over the run's updates)
    c.seed = 0  # root of every random stream (init, batches, schedule, example order)
    c.sampler = "shards"  # shards (each worker walks its 1/K of every epoch) | replacement
    c.data_workers = 1  # decode processes per split of a dataset read from disk (imagenet2012)
    c.eval_examples = 0  # held-out examples each evaluation scores (streamed datasets); 0 = the whole split
    # == Asynchrony (mode=sim and mode=async) ==
    c.num_workers = 1  # K workers
    c.protocol = "async"  # async (plain A-SGD) | softsync (n-softsync) | sync (K gradients per update)
    c.softsync_n = 1  # n-softsync: the server applies every floor(num_workers / n) arrivals
    c.max_staleness = -1  # SSP bound s (a worker that would exceed it waits); -1 = unbounded
    c.n_fetch = 1  # Downpour: fetch server parameters every n_fetch local steps
    c.n_push = 1  # Downpour: push the accumulated gradient every n_push local steps
    c.local_learning_rate = -1.0  # Downpour local-copy SGD step size; < 0 means learning_rate
    c.warm_start_steps = 0  # gradients trained on worker 0 alone before the others join (Paine et al. 2013)
    # == Staleness rules ==
    c.rule = "staleness_lr"  # none | staleness_lr (lr0/tau, Zhang 2016) | dc_asgd | dc_asgd_adaptive | delay_adaptive
    c.rule_lambda = 0.04  # DC-ASGD variance-control lambda (lambda0 for the adaptive form)
    c.momentum_compensation = "staleness"  # staleness | workers | none: explicit momentum shrinks as asynchrony adds its own (Mitliagkas 2016)
    # == Simulator (mode=sim) ==
    c.trace = ""  # replay this trace.npz (e.g. from mode=async) instead of generating a schedule
    c.sim_strategy = "auto"  # auto | sequential | scan | waves (auto measures the gradient and chooses)
    c.sim_memory = "auto"  # workers (K copies) | ring (last D versions) | auto
    c.sim_chunk = 0  # events per compiled call; 0 = chosen from the measured gradient time
    # == Clock of the simulated workers (mode=sim; asgdjax-predict calibrates it) ==
    c.delay = ml_collections.ConfigDict()
    c.delay.kind = "exponential"  # constant | uniform | exponential | lognormal | uniform_staleness
    c.delay.mean = 1.0  # mean step time (virtual seconds) of a speed-1 worker
    c.delay.spread = 0.5  # uniform: half-width / mean; lognormal: sigma
    c.delay.speeds = ""  # comma-separated relative step times per worker, e.g. "1,1,3"; "" = all 1
    c.delay.straggler_prob = 0.0  # probability that a step is slowed down ...
    c.delay.straggler_factor = 1.0  # ... by this factor
    c.delay.staleness_bound = 0  # uniform_staleness (Dai et al. 2019): tau uniform on {0..bound}
    c.delay.latency = 0.0  # seconds from a gradient being ready to the server taking it
    c.delay.service = 0.0  # server seconds per arrival (one at a time)
    c.delay.payload_bytes = -1.0  # bytes of one push or fetch; < 0 = the model's float32 parameters
    c.delay.worker_bandwidth = 0.0  # bytes/s of each worker's device <-> host link; 0 = free
    c.delay.worker_latency = 0.0  # seconds per transfer on that link
    c.delay.server_bandwidth = 0.0  # bytes/s of the server's network link, shared by all workers; 0 = free
    c.delay.server_latency = 0.0  # seconds per transfer on the network
    c.delay.apply_seconds = 0.0  # server seconds per update (after service)
    c.delay.solo = 1.0  # a worker alone (warm start) runs step, latency and service this many times as long
    # == Runtime (mode=async) ==
    c.backend = "local"  # local (this machine's devices) | ray (Ray actors, any number of hosts)
    c.devices = ""  # comma-separated device ids, model_parallel per worker; "" = round-robin over jax.devices()
    c.model_parallel = 1  # devices per model replica (worker group), parameters sharded over them
    c.cpu_devices = 0  # split the host CPU into this many JAX devices (0 = leave JAX's default)
    c.ray_address = ""  # backend=ray: "" starts Ray here; "auto" (or host:port) joins a `ray start` cluster
    c.ray_cpus_per_worker = 1.0  # backend=ray: CPUs each worker actor asks for
    c.ray_gpus_per_worker = 0.0  # backend=ray: GPUs (or a fraction) each worker actor asks for
    # == Guards and faults ==
    c.max_train_loss = 100.0  # a logged training loss that is NaN or above this stops the run (exit 3)
    c.staleness_cap = -1  # drop gradients staler than this (counted per worker); -1 = keep all
    c.max_worker_failures = 3  # mode=async: a worker failing more often than this is dropped
    c.worker_timeout = 0.0  # mode=async: seconds a step may take before it counts as failed; 0 = no limit
    c.fail_at = ""  # fault drill: "worker:step[:hang],..." fails those steps (sim and async)
    # == Outputs ==
    c.log_every = 50  # gradients between training-loss records
    c.eval_every = 250  # gradients between evaluations
    c.checkpoint_every = 500  # gradients between checkpoints (resume from the latest)
    c.tensorboard = True  # also write TensorBoard event files to WORKDIR/tensorboard (asgdjax[tensorboard])
    return c
