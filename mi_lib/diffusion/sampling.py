"""Reverse process: ONE loop, many uses.

:func:`reverse_process` is a generator yielding a :class:`ReverseStep` (t, x_t, x0_hat, x_prev) at every
step; everything else consumes it. :func:`sample` draws final samples in chunks with a progress bar and can,
in the same pass, record chosen steps and accumulate the Hal statistic (variance of x0_hat over a window of
steps) without storing trajectories.

Samplers: ``"ddpm"`` ancestral sampling over all T steps with ``variance="large"`` (sigma_t^2 = beta_t, the
official code's choice), ``"small"`` (sigma_t^2 = beta tilde_t) or, for a network that learns it (its output has
twice x's channels, :mod:`mi_lib.diffusion.nets`), ``"learned"``; ``"ddim"`` over ``steps`` evenly spaced
timesteps with stochasticity ``eta`` (0 = deterministic), at every step or, with ``eta_steps=k``, only at the
last k steps that add noise (deterministic before them: a few stochastic steps at the end, Ashiq et al. 2026).
``start`` (DDIM only) begins the reverse process at timestep ``start`` < T-1 from the same N(0, I) x_T: right
where q_start is pure noise to within what the sampler resolves. Under a schedule whose alpha_bar_{T-1} is far
below that (the official one: 1.3e-47), DDIM's step sqrt(alpha_bar_prev / alpha_bar) (x_t - sqrt(1 - alpha_bar)
eps) multiplies the network's error in eps by up to ~1e20 before the data has any say, and its samples blow up.

Noise is per sample (:mod:`mi_lib.diffusion.noise`): sample k's x_T is ``normal(seed, step=T)`` and the noise added when
leaving timestep t is ``normal(seed, step=t)``, both at sample index k. So sample k is the same whatever the
chunk size it is drawn in, and CPU and GPU draw the same noise. Fast paths (``precision``, ``compile``) apply
to the network only; see :mod:`mi_lib.diffusion.fast`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..params import number_parameter, positive_int
from ..runtime import progress_bar
from . import noise
from .fast import Denoiser, FastDenoiser
from .nets import shared_timestep
from .schedule import NoiseSchedule

__all__ = ["ReverseStep", "SampleResult", "WindowVariance", "initial_noise", "model_device", "reverse_process", "sample", "timesteps",
           "SAMPLERS"]

SAMPLERS = ("ddpm", "ddim")
_ROW_BLOCK = 16  # sample() runs the network on a multiple of this many rows
_VARIANCES = ("large", "small", "learned")


class WindowVariance:
    """Streaming (Welford) per-sample variance of a quantity over the reverse steps t in [t_lo, t_hi] (inclusive):
    the paper's Hal (Eq. 4) when fed x0_hat. Feed every step to :meth:`update` (steps outside the window are
    ignored; memory is O(batch), no trajectory is stored); :meth:`result` gives the variance."""

    def __init__(self, t_lo: int, t_hi: int):
        if t_lo < 0 or t_hi < t_lo:
            raise ValueError(f"window needs 0 <= t_lo <= t_hi, got ({t_lo}, {t_hi})")
        self.t_lo, self.t_hi = int(t_lo), int(t_hi)
        self.count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, t: int, value: Tensor) -> None:
        """Add the batch's value at step ``t`` (value: (B, ...)) if ``t`` lies in the window."""
        if not self.t_lo <= t <= self.t_hi:
            return
        v = value.to(torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype)
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = v.clone(), torch.zeros_like(v)
            return
        delta = v - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (v - self._mean)

    def result(self) -> Tensor:
        """Population variance over the window's steps, averaged over non-batch dims: (B,)."""
        if self._m2 is None:
            raise ValueError(f"no step fell in the window [{self.t_lo}, {self.t_hi}]")
        return (self._m2 / self.count).flatten(1).mean(1)


@dataclass
class ReverseStep:
    """One reverse step: the input ``xt`` at timestep ``t``, the network's clean-sample estimate ``x0_hat``
    from it, and the next state ``x_prev`` (x_{t-1}; after t = 0 it is the final sample)."""

    t: int
    xt: Tensor
    x0_hat: Tensor
    x_prev: Tensor


@dataclass
class SampleResult:
    """Output of :func:`sample`: final samples (N, ...), Hal (N,) if a window was given, and the recorded
    steps as {t: (x_t (N, ...), x0_hat (N, ...))} on the CPU."""

    x0: Tensor
    hal: Tensor | None = None
    records: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)


def timesteps(T: int, sampler: str = "ddpm", steps: int | None = None, start: int | None = None) -> list[int]:
    """The timesteps visited, in reverse order: all of T-1..0 for DDPM; for DDIM ``steps`` evenly spaced ones
    from ``start`` (default T-1; at most start + 1 of them) down to 0."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler == "ddpm":
        if steps not in (None, T):
            raise ValueError(f"ddpm visits all T={T} steps; use sampler='ddim' for steps={steps}")
        if start not in (None, T - 1):
            raise ValueError(f"ddpm starts at t = T-1 = {T - 1}; use sampler='ddim' for start={start}")
        return list(range(T - 1, -1, -1))
    start = T - 1 if start is None else start
    number_parameter(start, "start", int, at_least=0, at_most=T - 1)
    steps = start + 1 if steps is None else steps
    number_parameter(steps, "steps", int, at_least=1, at_most=start + 1)
    grid = torch.linspace(start, 0, steps, dtype=torch.float64).round().long().unique_consecutive()
    return grid.tolist()


def _check_eta_steps(eta_steps: int | None, sampler: str) -> None:
    if eta_steps is None:
        return
    number_parameter(eta_steps, "eta_steps", int, at_least=0)
    if sampler != "ddim":
        raise ValueError("eta_steps applies to sampler='ddim' only")


def check_clip(clip_x0: float | None) -> None:
    """One clear error unless ``clip_x0`` is None or a positive number."""
    if clip_x0 is not None and (isinstance(clip_x0, bool) or not isinstance(clip_x0, (int, float)) or not clip_x0 > 0):
        raise ValueError(f"clip_x0 must be a positive number or None, got {clip_x0!r}")


def model_device(model: nn.Module | Denoiser) -> torch.device:
    """A module's parameters' device; else the denoiser's ``device`` attribute, if any; else the CPU."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device(getattr(model, "device", "cpu"))


@torch.inference_mode()
def reverse_process(
    model: Denoiser,
    schedule: NoiseSchedule,
    x_T: Tensor,
    *,
    sampler: str = "ddpm",
    variance: str = "large",
    steps: int | None = None,
    start: int | None = None,
    eta: float = 0.0,
    eta_steps: int | None = None,
    seed: int = 0,
    sample_offset: int = 0,
    clip_x0: float | None = None,
) -> Iterator[ReverseStep]:
    """Run the reverse process from ``x_T`` (B, ...), yielding a :class:`ReverseStep` per visited timestep.

    ``model(x, t) -> eps``. Row b of ``x_T`` is sample ``sample_offset + b``: the noise added when leaving
    timestep t is :func:`mi_lib.diffusion.noise.normal` with (seed, step=t) at that sample index, on x_T's device; no
    noise is added at the final step. :func:`sample` puts the network behind its fast paths
    (:mod:`mi_lib.diffusion.fast`); x_t, x0_hat and the step arithmetic stay in x_T's dtype. See the module docstring
    for samplers and ``eta_steps``. ``clip_x0=c`` clamps x0_hat to [-c, c] before the step uses it (and yields the clamped
    value), as DDPM and ADM do for images in [-1, 1]; DDIM then uses the eps implied by the clamped x0_hat."""
    check_clip(clip_x0)
    if variance not in _VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {_VARIANCES}")
    if not 0.0 <= eta:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if sampler == "ddpm" and eta != 0.0:
        raise ValueError("eta applies to sampler='ddim' only")
    _check_eta_steps(eta_steps, sampler)
    if sampler == "ddim" and variance != "large":
        raise ValueError("variance applies to sampler='ddpm' only (DDIM's noise is set by eta)")
    ts = timesteps(schedule.T, sampler, steps, start)
    # the first step at which eta applies: the last eta_steps of the len(ts) - 1 steps that can add noise
    first_noisy = 0 if eta_steps is None else max(0, len(ts) - 1 - eta_steps)
    sched = schedule.to(x_T.device)
    var_table = sched.beta if variance == "large" else sched.posterior_variance
    x = x_T
    B = x.shape[0]
    for i, t in enumerate(ts):
        eps = model(x, shared_timestep(t, B, x.device))
        v = None
        if eps.shape != x.shape:  # a learned-variance network: eps, then v
            eps, v = eps.chunk(2, dim=1)
        if variance == "learned" and v is None:
            raise ValueError("variance='learned' needs a network that learns it (MLPConfig(learn_sigma=True))")
        x0_hat = sched.x0_from_eps(x, t, eps)
        if clip_x0 is not None:
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
            if sampler == "ddim":  # the eps consistent with the clamped estimate
                eps = (x - sched.sqrt_alpha_bar[t] * x0_hat) / sched.sqrt_one_minus_alpha_bar[t]
        if sampler == "ddpm":
            mean = sched.posterior_mean(x0_hat, x, t)
            if t == 0:
                std = None
            elif variance == "learned":
                std = (0.5 * sched.learned_log_variance(v, t)).exp()
            else:
                std = var_table[t].sqrt()
        else:
            # float64 host scalars: the official schedule's alpha_bar underflows float32 near t = T-1
            ab = float(schedule.alpha_bar_64[t])
            ab_prev = float(schedule.alpha_bar_64[ts[i + 1]]) if i + 1 < len(ts) else 1.0
            step_eta = eta if i >= first_noisy else 0.0
            sigma = step_eta * math.sqrt(max(0.0, (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)))
            mean = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(0.0, 1 - ab_prev - sigma**2)) * eps
            std = sigma if (i + 1 < len(ts) and sigma > 0) else None
        if std is None:
            x_prev = mean
        else:
            z = noise.normal(x.shape, seed=seed, step=t, sample_offset=sample_offset, device=x.device, dtype=x.dtype)
            x_prev = mean + std * z
        yield ReverseStep(t, x, x0_hat, x_prev)
        x = x_prev


def initial_noise(
    shape: Sequence[int], schedule: NoiseSchedule, *, seed: int = 0, sample_offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """x_T for samples sample_offset .. sample_offset + B - 1: float32 N(0, I) of ``shape`` = (B, ...), drawn by
    :func:`mi_lib.diffusion.noise.normal` with (seed, step=T), a stream no reverse step uses."""
    return noise.normal(shape, seed=seed, step=schedule.T, sample_offset=sample_offset, device=device)


def sample(
    model: Denoiser,
    schedule: NoiseSchedule,
    n: int,
    *,
    shape: Sequence[int] | None = None,
    sampler: str = "ddpm",
    variance: str = "large",
    steps: int | None = None,
    start: int | None = None,
    eta: float = 0.0,
    eta_steps: int | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    hal_window: tuple[int, int] | None = None,
    record_steps: Sequence[int] = (),
    progress: bool = True,
    precision: str = "float32",
    compile: bool | str = False,
    clip_x0: float | None = None,
    fused: bool | str = False,
) -> SampleResult:
    """Draw ``n`` samples from the reverse process, ``chunk_size`` at a time (all at once if None).

    ``shape`` is the per-sample shape (default: ``model.sample_shape``). ``hal_window=(t_lo, t_hi)`` also
    returns Hal, the variance of x0_hat over steps t_lo..t_hi (the paper's last 10 steps: (0, 9)).
    ``record_steps`` lists timesteps whose (x_t, x0_hat) are copied to the CPU. Sample k's noise depends on
    (seed, k) only (see the module docstring), so the results do not depend on ``chunk_size``: on one
    device they are bit-identical for every chunk size, provided the network's kernels round each row
    independently of the batch size. CPU BLAS and convolution kernels do not for a ragged or tiny batch, so
    the network always sees whole blocks of 16 rows (checked on the CPU; ``tests/test_gpu.py`` checks
    CUDA). ``precision`` ("float32", "tf32", "bf16") and ``compile`` are the network's fast paths
    (:mod:`mi_lib.diffusion.fast`). ``fused=True`` runs the whole reverse process of each chunk as one Triton kernel
    (:mod:`mi_lib.diffusion.fused`: the official MLP, DDPM, no ``record_steps``; ``precision`` is then the kernel's; a
    string "ROWSxWARPS" also sets the kernel's launch configuration, which changes its speed, not the samples). ``clip_x0`` clamps x0_hat at every step (see :func:`reverse_process`; Hal is then
    the variance of the clamped estimates). Runs on the model's device (a module's parameters', else its ``device`` attribute, else the CPU), holding O(chunk_size) there; the outputs are gathered
    on the CPU. Leaves the model in eval mode."""
    n = positive_int(n, "n")
    if shape is None:
        shape = getattr(model, "sample_shape", None)
        if shape is None:
            raise ValueError("shape is required for a model without a sample_shape attribute")
    shape = tuple(shape)
    chunk = n if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    check_clip(clip_x0)
    _check_eta_steps(eta_steps, sampler)
    ts = timesteps(schedule.T, sampler, steps, start)
    if hal_window is not None:
        t_lo, t_hi = hal_window
        if not 0 <= t_lo <= t_hi < schedule.T:
            raise ValueError(f"hal_window must satisfy 0 <= t_lo <= t_hi < T={schedule.T}, got {hal_window}")
        if not any(t_lo <= t <= t_hi for t in ts):
            raise ValueError(f"no visited timestep falls in hal_window {hal_window}")
    bad = [t for t in record_steps if t not in ts]
    if bad:
        raise ValueError(f"record_steps {bad} are not visited by this sampler")

    device = model_device(model)
    if isinstance(model, nn.Module):
        model.eval()
    if not isinstance(fused, (bool, str)):
        raise TypeError(f"fused must be a bool or a 'ROWSxWARPS' string, got {fused!r}")
    if fused:
        return _sample_fused(model, schedule, n, chunk, sampler, variance, seed, hal_window, record_steps, progress, precision, compile, clip_x0,
                             fused)
    net = FastDenoiser(model, precision=precision, compile=compile, device=device)  # compiled once for all chunks
    # Outputs are filled on the CPU chunk by chunk (the device holds one chunk at a time).
    out: dict[str, Tensor] = {}
    recorded = set(record_steps)
    n_chunks = -(-n // chunk)
    with progress_bar(total=n_chunks * len(ts), desc=f"sampling {n:,}", disable=not progress) as bar:
        for c in range(n_chunks):
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            b = hi - lo
            # Run whole blocks of _ROW_BLOCK samples (the extra ones are samples hi, hi+1, ..., then dropped):
            # CPU kernels round a row differently in a batch with a ragged tail (BLAS) or of fewer than 16 rows
            # (oneDNN convolutions), so this keeps sample k bit-identical whatever the chunk size.
            rows = -(-b // _ROW_BLOCK) * _ROW_BLOCK
            x_T = initial_noise((rows, *shape), schedule, seed=seed, sample_offset=lo, device=device)
            window = WindowVariance(*hal_window) if hal_window is not None else None
            loop = reverse_process(
                net, schedule, x_T, sampler=sampler, variance=variance, steps=steps, start=start, eta=eta, eta_steps=eta_steps,
                seed=seed, sample_offset=lo, clip_x0=clip_x0,
            )
            for k, step in enumerate(loop, start=1):
                if window is not None:
                    window.update(step.t, step.x0_hat[:b])
                if step.t in recorded:
                    _store(out, f"xt{step.t}", n, lo, step.xt[:b])
                    _store(out, f"x0_hat{step.t}", n, lo, step.x0_hat[:b])
                if k % 50 == 0 or k == len(ts):
                    bar.update(k - (k - 1) // 50 * 50)  # steps since the last update
                x = step.x_prev
            _store(out, "x0", n, lo, x[:b])
            if window is not None:
                _store(out, "hal", n, lo, window.result())
    return SampleResult(
        x0=out["x0"], hal=out.get("hal"), records={t: (out[f"xt{t}"], out[f"x0_hat{t}"]) for t in record_steps}
    )


def _sample_fused(model: Denoiser, schedule: NoiseSchedule, n: int, chunk: int, sampler: str, variance: str, seed: int,
                  hal_window: tuple[int, int] | None, record_steps: Sequence[int], progress: bool, precision: str,
                  compile: bool | str, clip_x0: float | None, fused: bool | str) -> SampleResult:
    """:func:`sample` through :func:`mi_lib.diffusion.fused.fused_ddpm_sample`, chunk by chunk (checks first, then work)."""
    from .fused import (  # Triton is imported only when asked for
        fused_ddpm_sample,
        parse_config,
    )

    config = parse_config(fused)
    if sampler != "ddpm":
        raise ValueError(f"fused=True runs DDPM ancestral sampling, not sampler={sampler!r}")
    if variance not in ("large", "small"):
        raise ValueError(f"fused=True samples with variance 'large' or 'small', not {variance!r}")
    if record_steps:
        raise ValueError("fused=True keeps every step on the chip: it cannot record_steps (use fused=False)")
    if compile is not False:
        raise ValueError("fused=True is its own compiled kernel: it does not combine with compile")
    out: dict[str, Tensor] = {}
    n_chunks = -(-n // chunk)
    with progress_bar(total=n, desc=f"sampling {n:,} (fused)", disable=not progress) as bar:
        for c in range(n_chunks):
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            x0, hal = fused_ddpm_sample(model, schedule, hi - lo, seed=seed, sample_offset=lo, variance=variance, hal_window=hal_window,
                                        precision=precision, clip_x0=clip_x0, config=config)
            _store(out, "x0", n, lo, x0)
            if hal is not None:
                _store(out, "hal", n, lo, hal)
            bar.update(hi - lo)
    return SampleResult(x0=out["x0"], hal=out.get("hal"))


def _store(out: dict[str, Tensor], name: str, n: int, lo: int, value: Tensor) -> None:
    """Copy a chunk's ``value`` (b, ...) into rows lo..lo+b of the CPU tensor ``out[name]`` (n, ...), made on first use."""
    if name not in out:
        out[name] = torch.empty((n, *value.shape[1:]), dtype=value.dtype)
    out[name][lo : lo + value.shape[0]] = value
