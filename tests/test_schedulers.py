"""Samplers: the forward process, DDIM/DDPM equivalence, and few-step sampling on a toy problem."""
import math

import pytest
import torch

from recommenders.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    make_betas,
    make_scheduler,
)

torch.set_num_threads(1)


def mixture_denoiser(points: torch.Tensor, log_prior: torch.Tensor, sched, prediction_type: str):
    """The exact E[x0 | x_t] for data on a few points with per-row priors (B, K); optionally as eps."""
    def model(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = sched.alpha_bar(t)
        d2 = ((x[:, None, :] - math.sqrt(ab) * points[None]) ** 2).sum(-1)
        w = torch.softmax(log_prior - d2 / (2 * (1 - ab)), dim=-1)
        x0 = w @ points
        if prediction_type == "sample":
            return x0
        return (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return model


def run(sched, model, x, steps, *, noise_fn=None, generator=None):
    sched.set_timesteps(steps)
    for i, t in enumerate(sched.timesteps):
        noise = noise_fn(i) if noise_fn else None
        x = sched.step(model(x, int(t)), int(t), x, noise=noise, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_betas_give_a_decreasing_signal(schedule):
    betas = make_betas(schedule, 1000)
    ab = torch.cumprod(1 - betas, 0)
    assert betas.shape == (1000,) and (betas > 0).all() and (betas < 1).all()
    assert (ab[1:] < ab[:-1]).all() and ab[-1] < 0.01 and ab[0] > 0.99


def test_unknown_names_are_refused():
    with pytest.raises(ValueError):
        make_betas("quadratic", 10)
    with pytest.raises(ValueError):
        make_scheduler("euler", {"num_train_timesteps": 10})
    with pytest.raises(ValueError):
        DDPMScheduler(num_train_timesteps=10).set_timesteps(11)


def test_add_noise_matches_the_closed_form():
    s = DDPMScheduler(num_train_timesteps=100)
    x0, eps = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 10, 50, 99])
    xt = s.add_noise(x0, eps, t)
    ab = s.alphas_cumprod[t].float()[:, None]
    torch.testing.assert_close(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)


def test_timesteps_are_trailing_and_descending():
    s = DDIMScheduler(num_train_timesteps=1000)
    for n in (1, 10, 20, 50, 1000):
        s.set_timesteps(n)
        ts = s.timesteps
        assert len(ts) == n and ts[0] == 999 and ts[-1] >= 0
        assert (ts[1:] < ts[:-1]).all()


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
def test_ddim_eta1_all_steps_is_ddpm(prediction_type):
    """With every timestep and eta=1, DDIM is DDPM's ancestral step: same noise, same path."""
    T = 100
    cfg = {"num_train_timesteps": T, "prediction_type": prediction_type}
    ddpm, ddim = make_scheduler("ddpm", cfg), make_scheduler("ddim", cfg, eta=1.0)
    points = torch.randn(3, 4)
    model = mixture_denoiser(points, torch.zeros(2, 3), ddpm, prediction_type)
    x_T = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    noises = torch.randn(T, 2, 4, generator=torch.Generator().manual_seed(1))
    a = run(ddpm, model, x_T, T, noise_fn=lambda i: noises[i])
    b = run(ddim, model, x_T, T, noise_fn=lambda i: noises[i])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # The deterministic mean path (no noise injected) agrees too, and differs from the noisy one.
    zero = torch.zeros(2, 4)
    a0 = run(ddpm, model, x_T, T, noise_fn=lambda i: zero)
    b0 = run(ddim, model, x_T, T, noise_fn=lambda i: zero)
    torch.testing.assert_close(a0, b0, rtol=1e-4, atol=1e-4)


def test_eps_and_x0_prediction_give_the_same_ddim_path():
    T = 100
    points = torch.randn(3, 4)
    x_T = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    out = []
    for p in ("sample", "epsilon"):
        s = DDIMScheduler(num_train_timesteps=T, prediction_type=p)
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
    s = make_scheduler(name, {"num_train_timesteps": 1000})
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
        ab = s.alpha_bar(t)
        # exact E[x0 | x_t] for x0 ~ N(mu, std^2 I)
        return mu + (math.sqrt(ab) * std ** 2) / (ab * std ** 2 + 1 - ab) * (x - math.sqrt(ab) * mu)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    ref_s = DDIMScheduler(num_train_timesteps=T)
    ref = run(ref_s, lambda x, t: model(x, t, ref_s), x_T, T)
    dpm = DPMSolverMultistepScheduler(num_train_timesteps=T)
    fast = run(dpm, lambda x, t: model(x, t, dpm), x_T, 20)
    ddim = DDIMScheduler(num_train_timesteps=T)
    first = run(ddim, lambda x, t: model(x, t, ddim), x_T, 20)
    err_dpm, err_ddim = (fast - ref).abs().max().item(), (first - ref).abs().max().item()
    assert err_dpm < 0.1 and err_dpm < 0.5 * err_ddim, (err_dpm, err_ddim)
