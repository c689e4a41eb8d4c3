"""mode=sync: plain minibatch training, one jitted step per batch (the baseline every mode is held to)."""

from __future__ import annotations

import jax
import numpy as np
import optax

from asgdjax.core.inputs import one_event
from asgdjax.core.task import batch_key
from asgdjax.train.build import keys, sampler_from_config
from asgdjax.train.loop import RunContext, log_and_eval


def make_sync_step(task, optimizer):
    """jit(params, opt_state, data, indices, key) -> (params, opt_state, loss), donating the state."""

    def step(params, opt_state, data, indices, key):
        loss, grads = task.grad(params, data, indices, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def run_sync(ctx: RunContext) -> dict:
    """Train for config.steps updates; resumes from the latest checkpoint in the workdir."""
    config, task = ctx.config, ctx.task
    sampler = sampler_from_config(config, ctx.dataset.num_train)
    run_keys = keys(config)
    params = ctx.placement.put(task.init(run_keys.init))
    opt_state = jax.jit(
        ctx.optimizer.init, out_shardings=ctx.placement.shardings(jax.eval_shape(ctx.optimizer.init, params))
    )(params)
    state = {"params": params, "opt_state": opt_state, "step": np.asarray(0, np.int64)}
    state = ctx.restore(state)
    params, opt_state, start = state["params"], state["opt_state"], int(state["step"])
    step_fn = make_sync_step(task, ctx.optimizer)
    losses = []
    for step in ctx.progress(start, config.steps):
        batch = one_event(task, sampler, 0, step)
        params, opt_state, loss = step_fn(params, opt_state, ctx.data, batch, batch_key(run_keys.data, 0, step))
        losses.append(loss)
        done = step + 1
        log_and_eval(ctx, done, params, losses)
        if done % config.checkpoint_every == 0 or done == config.steps:
            ctx.save(done, {"params": params, "opt_state": opt_state, "step": np.asarray(done, np.int64)})
    return {"params": params, "updates": config.steps, "gradients": config.steps}
