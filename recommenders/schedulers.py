"""Noise schedules and samplers for embedding diffusion, shaped like diffusers schedulers.

Each sampler has diffusers' verbs: `set_timesteps(n)`, `scale_model_input`, `step(model_output,
t, sample, ...)` and `add_noise`, so swapping DDPM for DDIM or DPM-Solver++ is one line. They work
on any tensor whose first axis is the batch (recommenders diffuse (B, D) item embeddings).

- DDPM ancestral sampling (Ho et al. 2020), with strided steps when n < T.
- DDIM (Song et al. 2021, eq. 12); eta=1 with all steps is exactly DDPM's ancestral update.
- DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction multistep.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

PREDICTION_TYPES = ("sample", "epsilon")


def make_betas(schedule: str, num_train_timesteps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> torch.Tensor:
    """Return the float64 beta_t of a named noise schedule ("linear" or "cosine")."""
    T = num_train_timesteps
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if schedule == "cosine":
        # Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2), s = 0.008.
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r} (use linear or cosine)")


@dataclass
class SchedulerConfig:
    """What defines the forward process; every sampler of one model shares it."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "sample"  # the model predicts x0 ("sample") or the noise ("epsilon")


@dataclass
class SchedulerOutput:
    """One sampler step: the less noisy sample and the model's current estimate of x0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class Scheduler:
    """The forward process q(x_t | x_0) and what all samplers share; subclasses add `step`."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02, prediction_type: str = "sample"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.config = SchedulerConfig(num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type)
        self.betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        self.init_noise_sigma = 1.0
        self.set_timesteps(num_train_timesteps)

    @classmethod
    def from_config(cls, config: SchedulerConfig | dict, **kwargs) -> "Scheduler":
        """Build this sampler over the same forward process as another one."""
        cfg = asdict(config) if isinstance(config, SchedulerConfig) else dict(config)
        return cls(**cfg, **kwargs)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose n timesteps from T-1 down ("trailing" spacing: the first step starts at pure noise)."""
        T = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps must be in 1..{T}, got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        ts = torch.round(torch.arange(T, 0, -T / num_inference_steps, dtype=torch.float64)).long() - 1
        self.timesteps = ts[:num_inference_steps]
        self._next = {int(a): int(b) for a, b in zip(self.timesteps, list(self.timesteps[1:]) + [-1])}

    def scale_model_input(self, sample: torch.Tensor, timestep: int) -> torch.Tensor:
        """Identity; kept so sampling loops read like diffusers'."""
        return sample

    def alpha_bar(self, timestep: int) -> float:
        """Cumulative signal level at a timestep; t = -1 is clean data (alpha_bar = 1)."""
        return 1.0 if timestep < 0 else float(self.alphas_cumprod[timestep])

    def previous_timestep(self, timestep: int) -> int:
        """The timestep the sampler steps to from `timestep` (-1 after the last)."""
        return self._next[int(timestep)]

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """q_sample: sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, one timestep per row."""
        ab = self.alphas_cumprod.to(original_samples.device)[timesteps].to(original_samples.dtype)
        ab = ab.reshape(-1, *([1] * (original_samples.dim() - 1)))
        return ab.sqrt() * original_samples + (1 - ab).sqrt() * noise

    def to_x0(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor) -> torch.Tensor:
        """Convert the model's output at timestep t to an estimate of x0."""
        if self.config.prediction_type == "sample":
            return model_output
        ab = self.alpha_bar(timestep)
        return (sample - math.sqrt(1 - ab) * model_output) / math.sqrt(ab)

    def to_eps(self, x0: torch.Tensor, timestep: int, sample: torch.Tensor) -> torch.Tensor:
        """The noise implied by an x0 estimate at timestep t."""
        ab = self.alpha_bar(timestep)
        return (sample - math.sqrt(ab) * x0) / math.sqrt(max(1 - ab, 1e-20))

    @staticmethod
    def _noise(sample: torch.Tensor, noise: torch.Tensor | None,
               generator: torch.Generator | None) -> torch.Tensor:
        if noise is not None:
            return noise
        return torch.randn(sample.shape, generator=generator, dtype=sample.dtype, device=sample.device)


class DDPMScheduler(Scheduler):
    """Ancestral sampling from the posterior q(x_s | x_t, x0_hat); strided when n < T."""

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, *,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> SchedulerOutput:
        """One reverse step; pass `noise=zeros` for the deterministic posterior-mean path."""
        t, s = int(timestep), self.previous_timestep(timestep)
        ab_t, ab_s = self.alpha_bar(t), self.alpha_bar(s)
        alpha = ab_t / ab_s  # the (strided) alpha between s and t
        x0 = self.to_x0(model_output, t, sample)
        # Ho et al. 2020, eq. 7: posterior mean and variance of q(x_s | x_t, x0).
        mean = (math.sqrt(ab_s) * (1 - alpha) / (1 - ab_t)) * x0 \
            + (math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t)) * sample
        if s < 0:
            return SchedulerOutput(mean, x0)
        var = (1 - ab_s) / (1 - ab_t) * (1 - alpha)
        return SchedulerOutput(mean + math.sqrt(var) * self._noise(sample, noise, generator), x0)


class DDIMScheduler(Scheduler):
    """DDIM; eta=0 is the deterministic ODE-like sampler, eta=1 the DDPM posterior."""

    def __init__(self, *args, eta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.eta = eta

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, *,
             eta: float | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> SchedulerOutput:
        """One DDIM update (Song et al. 2021, eq. 12) from t to the previous chosen timestep."""
        eta = self.eta if eta is None else eta
        t, s = int(timestep), self.previous_timestep(timestep)
        ab_t, ab_s = self.alpha_bar(t), self.alpha_bar(s)
        x0 = self.to_x0(model_output, t, sample)
        eps = self.to_eps(x0, t, sample)
        sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        prev = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            prev = prev + sigma * self._noise(sample, noise, generator)
        return SchedulerOutput(prev, x0)


class DPMSolverMultistepScheduler(Scheduler):
    """DPM-Solver++(2M): second-order multistep in log-SNR time on x0 predictions."""

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose the timesteps and forget the previous x0 estimates."""
        super().set_timesteps(num_inference_steps)
        self._last: tuple[torch.Tensor, float] | None = None  # (x0 estimate, its lambda)

    def _lambda(self, timestep: int) -> float:
        ab = self.alpha_bar(timestep)
        return 0.5 * math.log(ab / (1 - ab))  # log(alpha_t / sigma_t)

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor,
             **_: object) -> SchedulerOutput:
        """One DPM-Solver++ update; first order on the first and the final step."""
        t, s = int(timestep), self.previous_timestep(timestep)
        x0 = self.to_x0(model_output, t, sample)
        lam_t = self._lambda(t)
        if s < 0:  # sigma_s = 0: the exact solution of the linear part is the x0 estimate itself
            self._last = None
            return SchedulerOutput(x0, x0)
        ab_s = self.alpha_bar(s)
        alpha_s, sigma_s, sigma_t = math.sqrt(ab_s), math.sqrt(1 - ab_s), math.sqrt(1 - self.alpha_bar(t))
        lam_s = self._lambda(s)
        h = lam_s - lam_t
        d = x0
        if self._last is not None:
            x0_prev, lam_prev = self._last
            r = (lam_t - lam_prev) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        prev = (sigma_s / sigma_t) * sample - alpha_s * math.expm1(-h) * d
        self._last = (x0, lam_t)
        return SchedulerOutput(prev, x0)


SAMPLERS: dict[str, type[Scheduler]] = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, config: SchedulerConfig | dict, **kwargs) -> Scheduler:
    """Build a sampler by name ("ddpm", "ddim", "dpmsolver") over a model's forward process."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name].from_config(config, **kwargs)
