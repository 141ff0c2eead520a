"""Noise schedules of the forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

Everything is computed once in float64 and stored per device (float32 for the arithmetic, float64 kept
for analysis). Timesteps are integers ``t`` in ``0..T-1``; step ``t`` uses ``beta[t]``, so
``alpha_bar[t] = prod_{s<=t} (1 - beta[s])``. The schedule knows nothing of networks or data shapes:
per-sample coefficients are broadcast to any rank by :func:`broadcast_to`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ScheduleConfig", "NoiseSchedule", "OFFICIAL", "STANDARD", "COSINE", "SCHEDULE_PRESETS", "broadcast_to"
]

_KINDS = ("linear", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    """A beta schedule. ``kind`` is ``"linear"`` (beta from ``beta_start`` to ``beta_end``) or ``"cosine"``
    (Nichol & Dhariwal 2021, offset ``cosine_s``, betas clipped at ``max_beta``)."""

    kind: str = "linear"
    T: int = 1000
    beta_start: float = 1e-3
    beta_end: float = 0.2
    cosine_s: float = 0.008
    max_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"schedule kind must be one of {_KINDS}, got {self.kind!r}")
        if isinstance(self.T, bool) or not isinstance(self.T, int):
            raise TypeError(f"T must be an int, got {type(self.T).__name__}")
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if self.kind == "linear" and not (0.0 < self.beta_start <= self.beta_end < 1.0):
            raise ValueError(
                f"linear schedule needs 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )
        if self.kind == "cosine" and not (self.cosine_s > 0 and 0 < self.max_beta < 1):
            raise ValueError("cosine schedule needs cosine_s > 0 and 0 < max_beta < 1")


#: The official code's schedule: linear 1e-3 -> 0.2 over 1000 steps (aggressive; see chapter 1).
OFFICIAL = ScheduleConfig("linear", 1000, 1e-3, 0.2)
#: Ho et al. (2020): linear 1e-4 -> 0.02 over 1000 steps.
STANDARD = ScheduleConfig("linear", 1000, 1e-4, 0.02)
#: Nichol & Dhariwal (2021) cosine schedule over 1000 steps.
COSINE = ScheduleConfig("cosine", 1000)
SCHEDULE_PRESETS: dict[str, ScheduleConfig] = {"official": OFFICIAL, "standard": STANDARD, "cosine": COSINE}


def _betas_float64(cfg: ScheduleConfig) -> Tensor:
    if cfg.kind == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, cfg.T, dtype=torch.float64)
    steps = torch.arange(cfg.T + 1, dtype=torch.float64) / cfg.T
    f = torch.cos((steps + cfg.cosine_s) / (1 + cfg.cosine_s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=cfg.max_beta)


def _normalise(device: torch.device) -> torch.device:
    """'cuda' and 'cuda:0' name the same device: key copies by the explicit index."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def broadcast_to(coef: Tensor, x: Tensor) -> Tensor:
    """View a per-sample coefficient of shape (B,) (or (1,)/scalar) as (B, 1, ..., 1) to broadcast against
    ``x`` of shape (B, ...). One helper serves (B, 1), (B, 2) and (B, C, H, W)."""
    return coef.reshape(-1, *([1] * (x.dim() - 1)))


class NoiseSchedule:
    """The forward-process constants for one :class:`ScheduleConfig`, on one device.

    Attributes are 1-D tensors of length T indexed by t: ``beta, alpha_bar, posterior_variance`` (beta tilde),
    ``posterior_log_variance_clipped, log_beta``, ``posterior_mean_coef_x0``, ``posterior_mean_coef_xt`` and the
    square roots the forward process and the samplers use, in float32 on ``device``; ``beta_64`` and
    ``alpha_bar_64`` are their float64 twins on the CPU for analysis. Use :meth:`to` to get the same
    schedule on another device; each device's copy is built once and reused.
    """

    def __init__(self, config: ScheduleConfig | str = OFFICIAL, device: torch.device | str | None = None):
        if isinstance(config, str):
            if config not in SCHEDULE_PRESETS:
                raise ValueError(f"unknown schedule {config!r}; presets are {sorted(SCHEDULE_PRESETS)}")
            config = SCHEDULE_PRESETS[config]
        if not isinstance(config, ScheduleConfig):
            raise TypeError(f"config must be a ScheduleConfig or preset name, got {type(config).__name__}")
        self.config = config
        self.T = config.T
        self.device = _normalise(torch.device(device) if device is not None else torch.device("cpu"))

        beta = _betas_float64(config)
        alpha = 1 - beta
        alpha_bar = torch.cumprod(alpha, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.beta_64, self.alpha_bar_64 = beta, alpha_bar
        posterior_variance = beta * (1 - alpha_bar_prev) / (1 - alpha_bar)
        tables = {
            "beta": beta,
            "alpha_bar": alpha_bar,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            "sqrt_recip_alpha_bar": alpha_bar.rsqrt(),
            "sqrt_recip_alpha_bar_minus_one": (1 / alpha_bar - 1).sqrt(),
            "posterior_variance": posterior_variance,
            # beta tilde_0 = 0: Improved DDPM's clipped log uses beta tilde_1 at t = 0
            "posterior_log_variance_clipped": torch.cat([posterior_variance[1:2], posterior_variance[1:]]).log()
            if config.T > 1 else beta.log(),
            "log_beta": beta.log(),
            "posterior_mean_coef_x0": beta * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "posterior_mean_coef_xt": (1 - alpha_bar_prev) * alpha.sqrt() / (1 - alpha_bar),
        }
        for name, value in tables.items():
            setattr(self, name, value.to(device=self.device, dtype=torch.float32))
        self._copies: dict[torch.device, NoiseSchedule] = {self.device: self}

    def __repr__(self) -> str:
        c = self.config
        detail = f"beta {c.beta_start:g}->{c.beta_end:g}" if c.kind == "linear" else f"s={c.cosine_s:g}"
        return f"NoiseSchedule({c.kind}, T={c.T}, {detail}, device={self.device})"

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule on ``device`` (built once per device, then reused)."""
        device = _normalise(torch.device(device))
        if device not in self._copies:
            copy = NoiseSchedule(self.config, device)
            copy._copies = self._copies
            self._copies[device] = copy
        return self._copies[device]

    # ------------------------------------------------------------------ forward process
    def _coef(self, table: Tensor, t: Tensor | int, x: Tensor) -> Tensor:
        if isinstance(t, int):
            if not 0 <= t < self.T:
                raise ValueError(f"t must be in 0..{self.T - 1}, got {t}")
            return table[t]
        return broadcast_to(table[t], x)

    def q_sample(self, x0: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps. ``x0``, ``eps``: (B, ...); ``t``: (B,) or int."""
        return self._coef(self.sqrt_alpha_bar, t, x0) * x0 + self._coef(self.sqrt_one_minus_alpha_bar, t, x0) * eps

    def x0_from_eps(self, xt: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
        """The clean sample implied by a noise prediction: x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        return self._coef(self.sqrt_recip_alpha_bar, t, xt) * xt - self._coef(self.sqrt_recip_alpha_bar_minus_one, t, xt) * eps

    def posterior_mean(self, x0: Tensor, xt: Tensor, t: Tensor | int) -> Tensor:
        """Mean of q(x_{t-1} | x_t, x_0)."""
        return self._coef(self.posterior_mean_coef_x0, t, xt) * x0 + self._coef(self.posterior_mean_coef_xt, t, xt) * xt

    def learned_log_variance(self, v: Tensor, t: Tensor | int) -> Tensor:
        """The reverse step's log-variance a learned-variance network chooses with ``v`` (Improved DDPM's
        "learned range"): frac log beta_t + (1 - frac) log beta tilde_t with frac = (v + 1) / 2, beta tilde
        clipped at t = 0 (where it is 0) to its t = 1 value. ``v``: (B, ...); ``t``: (B,) or int."""
        frac = (v + 1) / 2
        return frac * self._coef(self.log_beta, t, v) + (1 - frac) * self._coef(self.posterior_log_variance_clipped, t, v)

    def snr_64(self) -> Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) in float64, shape (T,)."""
        return self.alpha_bar_64 / (1 - self.alpha_bar_64)
