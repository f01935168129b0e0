"""The samplers are diffusers' schedulers (recommenders.schedulers only configures them for embeddings):
settings, the forward process, DDIM/DDPM equivalence, DiffRec's noise-free posterior step, and
few-step sampling on toy problems with a known answer."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from recommenders.schedulers import SAMPLERS, make_scheduler, set_steps

torch.set_num_threads(1)


def alpha_bar(sched, t: int) -> float:
    return float(sched.alphas_cumprod[t])


def mixture_denoiser(points: torch.Tensor, log_prior: torch.Tensor, sched, prediction_type: str):
    """The exact E[x0 | x_t] for data on a few points with per-row priors (B, K); optionally as eps."""
    def model(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = alpha_bar(sched, t)
        d2 = ((x[:, None, :] - math.sqrt(ab) * points[None]) ** 2).sum(-1)
        w = torch.softmax(log_prior - d2 / (2 * (1 - ab)), dim=-1)
        x0 = w @ points
        if prediction_type == "sample":
            return x0
        return (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return model


def run(sched, model, x, steps, *, generator=None, **step_kwargs):
    set_steps(sched, steps)
    for t in sched.timesteps.tolist():
        x = sched.step(model(x, t), t, x, generator=generator, **step_kwargs).prev_sample
    return x


def test_the_samplers_are_diffusers_schedulers_set_up_for_embeddings():
    kinds = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler}
    assert set(SAMPLERS) == set(kinds)
    for name, cls in kinds.items():
        s = make_scheduler(name, num_train_timesteps=1000)
        assert type(s) is cls and s.config.prediction_type == "sample" and s.config.timestep_spacing == "trailing"
        assert not s.config.get("clip_sample", False) and not s.config.thresholding  # embeddings are not in [-1, 1]
    assert make_scheduler("ddim").config.set_alpha_to_one  # the last DDIM step lands on clean data
    dpm = make_scheduler("dpmsolver").config
    assert dpm.algorithm_type == "dpmsolver++" and dpm.solver_order == 2 and dpm.final_sigmas_type == "zero"


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_give_a_decreasing_signal(schedule):
    ab = make_scheduler("ddpm", beta_schedule=schedule).alphas_cumprod
    assert ab.shape == (1000,) and (ab[1:] < ab[:-1]).all() and ab[-1] < 0.01 and ab[0] > 0.99


def test_unknown_names_and_step_counts_are_refused():
    for kwargs in ({"sampler": "euler"}, {"sampler": "ddim", "beta_schedule": "quadratic"},
                   {"sampler": "ddim", "prediction_type": "v"}):
        with pytest.raises(ValueError):
            make_scheduler(kwargs.pop("sampler"), **kwargs)
    s = make_scheduler("ddim", num_train_timesteps=10)
    for n in (0, 11):
        with pytest.raises(ValueError, match="1..10"):
            set_steps(s, n)


def test_add_noise_matches_the_closed_form():
    s = make_scheduler("ddpm", num_train_timesteps=100)
    x0, eps = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 10, 50, 99])
    ab = s.alphas_cumprod[t][:, None]
    torch.testing.assert_close(s.add_noise(x0, eps, t), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)


@pytest.mark.parametrize("name", SAMPLERS)
def test_timesteps_are_trailing_and_descending(name):
    s = make_scheduler(name, num_train_timesteps=1000)
    for n in (1, 2, 3, 5, 7, 10, 20, 50, 1000):
        set_steps(s, n)
        ts = s.timesteps
        assert len(ts) == n and ts[0] == 999 and ts[-1] >= 0 and (ts[1:] < ts[:-1]).all()


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
def test_ddim_eta1_all_steps_is_ddpm(prediction_type):
    """With every timestep and eta=1, DDIM is DDPM's ancestral step: same noise draws, same path."""
    T = 100
    ddpm = make_scheduler("ddpm", num_train_timesteps=T, prediction_type=prediction_type)
    ddim = make_scheduler("ddim", num_train_timesteps=T, prediction_type=prediction_type)
    points = torch.randn(3, 4)
    model = mixture_denoiser(points, torch.zeros(2, 3), ddpm, prediction_type)
    x_T = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    a = run(ddpm, model, x_T, T, generator=torch.Generator().manual_seed(1))
    b = run(ddim, model, x_T, T, generator=torch.Generator().manual_seed(1), eta=1.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_one_deterministic_step_returns_the_x0_estimate():
    """One DDIM or DPM-Solver++ step from pure noise lands on the model's x0 estimate (alpha_bar = 1 at the end)."""
    x0_hat = torch.randn(5, 8)
    for name in ("ddim", "dpmsolver"):
        s = make_scheduler(name)
        set_steps(s, 1)
        x = torch.randn(5, 8)
        torch.testing.assert_close(s.step(x0_hat, int(s.timesteps[0]), x).prev_sample, x0_hat)


def test_zero_learned_variance_gives_the_posterior_mean():
    """DiffRec's reverse step: DDPM with a zero 'learned' variance is the mean of q(x_s | x_t, x0) (Ho et al.
    2020, eq. 7) on custom strided timesteps, whatever noise the generator would give."""
    betas = torch.linspace(1e-3, 0.05, 20, dtype=torch.float64)
    s = make_scheduler("ddpm", num_train_timesteps=20, trained_betas=betas.numpy(), variance_type="learned")
    s.set_timesteps(timesteps=[12, 6, 0])
    x_t, x0 = torch.randn(4, 7), torch.randn(4, 7)
    ab = s.alphas_cumprod
    out = []
    for seed in (0, 1):
        step = s.step(torch.cat([x0, torch.zeros_like(x0)], 1), 12, x_t, generator=torch.Generator().manual_seed(seed))
        out.append(step.prev_sample)
    a_t, a_s = ab[12], ab[6]
    alpha = a_t / a_s
    mean = (a_s.sqrt() * (1 - alpha) / (1 - a_t)) * x0 + (alpha.sqrt() * (1 - a_s) / (1 - a_t)) * x_t
    torch.testing.assert_close(out[0], mean)
    assert torch.equal(out[0], out[1])


def test_eps_and_x0_prediction_give_the_same_ddim_path():
    T = 100
    points = torch.randn(3, 4)
    x_T = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    out = []
    for p in ("sample", "epsilon"):
        s = make_scheduler("ddim", num_train_timesteps=T, prediction_type=p)
        out.append(run(s, mixture_denoiser(points, torch.zeros(5, 3), s, p), x_T, 10))
    torch.testing.assert_close(out[0], out[1], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name,steps", [("ddpm", 1000), ("ddpm", 50), ("ddim", 20), ("ddim", 10),
                                        ("dpmsolver", 20), ("dpmsolver", 10), ("dpmsolver", 5)])
def test_few_steps_land_on_the_conditioned_item(name, steps):
    """Rows conditioned on item k (prior 0.9 on k) must generate an embedding nearest to item k."""
    torch.manual_seed(0)
    K, D, B = 8, 16, 64
    items = torch.randn(K, D)
    target = torch.arange(B) % K
    log_prior = torch.full((B, K), math.log(0.1 / (K - 1)))
    log_prior[torch.arange(B), target] = math.log(0.9)
    s = make_scheduler(name, num_train_timesteps=1000)
    model = mixture_denoiser(items, log_prior, s, "sample")
    x = run(s, model, torch.randn(B, D), steps, generator=torch.Generator().manual_seed(0))
    top1 = (x @ items.T).argmax(-1)
    hit = (top1 == target).float().mean().item()
    assert hit >= 0.75, f"{name}@{steps}: top-1 hit {hit:.2f}"
    # and the sample sits on the data, not between points (few steps must still denoise)
    assert torch.cdist(x, items).min(-1).values.median() < 0.5


def test_dpmsolver_converges_to_the_ode_solution():
    """DPM-Solver++ at 20 steps ~ DDIM (eta=0) at 1000 steps on a Gaussian problem; 2nd order beats 1st."""
    T = 1000
    mu, std = torch.tensor([2.0, -1.0]), 0.5

    def model(x, t, s):
        ab = alpha_bar(s, t)
        # exact E[x0 | x_t] for x0 ~ N(mu, std^2 I)
        return mu + (math.sqrt(ab) * std ** 2) / (ab * std ** 2 + 1 - ab) * (x - math.sqrt(ab) * mu)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    ref_s = make_scheduler("ddim", num_train_timesteps=T)
    ref = run(ref_s, lambda x, t: model(x, t, ref_s), x_T, T)
    dpm = make_scheduler("dpmsolver", num_train_timesteps=T)
    fast = run(dpm, lambda x, t: model(x, t, dpm), x_T, 20)
    ddim = make_scheduler("ddim", num_train_timesteps=T)
    first = run(ddim, lambda x, t: model(x, t, ddim), x_T, 20)
    err_dpm, err_ddim = (fast - ref).abs().max().item(), (first - ref).abs().max().item()
    assert err_dpm < 0.1 and err_dpm < 0.5 * err_ddim, (err_dpm, err_ddim)
