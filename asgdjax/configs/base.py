"""Defaults shared by every config; each config file overrides what its experiment needs."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = "sync"  # sync | sim | async
    c.dataset = "digits"
    c.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.model = "small_cnn"
    c.augment = False  # random crop + flip (natural-image datasets only)
    c.batch_size = 32
    c.steps = 1000  # minibatch gradients computed (= updates in sync mode)
    c.optimizer = "momentum"
    c.learning_rate = 0.05
    c.momentum = 0.9  # the total momentum wanted (what synchronous training is tuned with)
    # Asynchrony adds momentum of its own (Mitliagkas et al. 2016); the explicit coefficient shrinks to keep
    # the total at `momentum`: staleness (measured from the updates) | workers (1 - 1/K) | none
    c.momentum_compensation = "staleness"
    c.weight_decay = 0.0
    c.lr_schedule = "constant"  # constant | cosine (decays to 0 over the run's updates)
    c.seed = 0  # root of every random stream (init, batches, schedule, example order)
    c.sampler = "shards"  # shards (each worker walks its 1/K of every epoch) | replacement
    c.max_train_loss = 100.0  # guard: a logged training loss that is NaN or above this stops the run
    c.log_every = 50
    c.eval_every = 250
    c.checkpoint_every = 500
    # Asynchrony (mode=sim and mode=async).
    c.num_workers = 1
    c.devices = ""  # mode=async: comma-separated device ids per worker; "" = round-robin over jax.devices()
    c.model_parallel = 1  # devices per model replica (worker group), parameters sharded over them
    c.cpu_devices = 0  # split the host CPU into this many JAX devices (0 = leave JAX's default)
    c.protocol = "async"  # async | softsync | sync
    c.softsync_n = 1  # n-softsync: the server applies every floor(num_workers / n) arrivals
    # Staleness rule applied to each arriving gradient; lr0/tau (Zhang et al. 2016) with the momentum
    # compensation above keeps a synchronously tuned config training as workers are added.
    c.rule = "staleness_lr"  # none | staleness_lr | dc_asgd | dc_asgd_adaptive | delay_adaptive
    c.rule_lambda = 0.04  # DC-ASGD variance-control lambda (lambda0 for the adaptive form)
    c.n_fetch = 1  # Downpour: fetch server parameters every n_fetch local steps
    c.n_push = 1  # Downpour: push the accumulated gradient every n_push local steps
    c.local_learning_rate = -1.0  # Downpour local-copy SGD step size; < 0 means learning_rate
    c.max_staleness = -1  # SSP bound s (a worker that would exceed it waits); -1 = unbounded
    c.backend = "local"  # mode=async: local (this machine's devices) | ray (Ray actors, any number of hosts)
    c.ray_address = ""  # backend=ray: "" starts Ray here; "auto" (or host:port) joins a `ray start` cluster
    c.ray_cpus_per_worker = 1.0  # backend=ray: resources each worker actor asks for
    c.ray_gpus_per_worker = 0.0
    c.max_worker_failures = 3  # mode=async: a worker failing more often than this is dropped
    c.worker_timeout = 0.0  # mode=async: seconds a step may take before it counts as failed; 0 = no limit
    c.fail_at = ""  # fault drill: "worker:step[:hang],..." fails those steps (sim and async)
    c.staleness_cap = -1  # guard: drop gradients staler than this (counted per worker); -1 = keep all
    c.warm_start_steps = 0  # steps trained on one worker before the others join (paper's warm start)
    c.trace = ""  # mode=sim: replay this trace.npz (e.g. from mode=async) instead of generating a schedule
    c.sim_strategy = "auto"  # simulator: sequential | waves | auto (= sequential, measured faster)
    c.sim_memory = "auto"  # simulator: workers (K copies) | ring (last D versions) | auto
    c.sim_chunk = 0  # simulator: events per compiled call; 0 = 10 (sequential) or num_workers (waves)
    c.delay = ml_collections.ConfigDict()
    c.delay.kind = "exponential"  # constant | uniform | exponential | lognormal | uniform_staleness
    c.delay.mean = 1.0  # mean step time (virtual seconds) of a speed-1 worker
    c.delay.spread = 0.5  # uniform: half-width / mean; lognormal: sigma
    c.delay.speeds = ""  # comma-separated relative step times per worker, e.g. "1,1,3"; "" = all 1
    c.delay.straggler_prob = 0.0  # probability that a step is slowed down ...
    c.delay.straggler_factor = 1.0  # ... by this factor
    c.delay.staleness_bound = 0
    c.delay.latency = 0.0  # seconds from a gradient being ready to the server taking it
    c.delay.service = 0.0  # server seconds per arrival (serial); asgdjax-predict calibrates both  # uniform_staleness (Dai et al.): tau uniform on {0..bound}
    return c
