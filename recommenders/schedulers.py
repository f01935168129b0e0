"""diffusers' schedulers, configured for embedding diffusion: the samplers of DreamRec and DiffRec.

diffusers' DDPM, DDIM and DPM-Solver++ schedulers work on any tensor whose first axis is the batch, so
recommenders use them as they are; `make_scheduler` only picks the settings an embedding (not an
image) needs: no clipping of x0 to [-1, 1], "trailing" timesteps (the first reverse step starts at
pure noise, t = T - 1, whatever the step count), DDIM's last step to alpha_bar = 1, and
DPM-Solver++(2M) with a final step to sigma = 0 (the x0 estimate itself). Swapping samplers is one
name; `set_timesteps(n)`, `scale_model_input`, `step(...).prev_sample` and `add_noise` are
diffusers' own.

    sched = make_scheduler("dpmsolver", num_train_timesteps=1000, prediction_type="sample")
    sched.set_timesteps(5)
    for t in sched.timesteps: x = sched.step(model(x, t), t, x).prev_sample
"""
from __future__ import annotations

from typing import Any

SAMPLERS = ("ddpm", "ddim", "dpmsolver")
PREDICTION_TYPES = ("sample", "epsilon")
# Atelier's schedule names -> diffusers' ("cosine" is Nichol & Dhariwal 2021, eq. 17, betas capped at 0.999)
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def make_scheduler(sampler: str, *, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                   beta_start: float = 1e-4, beta_end: float = 0.02, prediction_type: str = "sample",
                   trained_betas=None, **overrides: Any):
    """A diffusers scheduler ("ddpm", "ddim" or "dpmsolver") over one forward process.

    `trained_betas` (a float array) replaces the named schedule (DiffRec's own); `overrides` go to the
    scheduler's constructor as they are (e.g. `variance_type`).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    if trained_betas is None and beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {beta_schedule!r} (use {' or '.join(BETA_SCHEDULES)})")
    common = dict(num_train_timesteps=num_train_timesteps, beta_schedule=BETA_SCHEDULES.get(beta_schedule, "linear"),
                  beta_start=beta_start, beta_end=beta_end, prediction_type=prediction_type,
                  trained_betas=None if trained_betas is None else [float(b) for b in trained_betas],
                  timestep_spacing="trailing")
    if sampler == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, **{"variance_type": "fixed_small", **overrides})
    if sampler == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True, steps_offset=0, **overrides)
    return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                       final_sigmas_type="zero", lower_order_final=True, **overrides)


def set_steps(scheduler, num_inference_steps: int) -> None:
    """`scheduler.set_timesteps(n)` with a plain error for n outside 1..num_train_timesteps."""
    T = scheduler.config.num_train_timesteps
    if not 1 <= num_inference_steps <= T:
        raise ValueError(f"num_inference_steps must be in 1..{T}, got {num_inference_steps}")
    scheduler.set_timesteps(num_inference_steps)
