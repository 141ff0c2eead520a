"""Denoisers. One interface for every network: ``model(x, t) -> eps`` with ``x`` of shape (B, ...) and
``t`` an integer tensor of shape (B,) in 0..T-1.

:class:`MLPDenoiser` is the official code's low-dimensional network ("Decoder"): an input projection,
a sinusoidal time embedding, residual blocks that each add a projection of the time embedding, and an
output projection. The official code builds its blocks as ``[block] * 3`` -- one block applied three
times, sharing weights. ``tied_blocks=True`` reproduces that; ``False`` gives independent blocks.
One difference, kept because every shipped model was trained with it: :func:`sinusoidal_embedding` spaces its
frequencies as 10000^(-i / half), improved-diffusion's ``timestep_embedding``, where the official
``get_timestep_embedding`` (fairseq's) uses 10000^(-i / (half - 1)), whose lowest frequency is exactly 1e-4.
Same layout, parameter count and initialisation; the first time layer sees slightly different features.

A network that also learns its reverse-step variance (Improved DDPM's "learned range", ``learn_sigma=True``)
returns twice x's channels, guided-diffusion's convention: eps, then v in roughly [-1, 1], which places the
log-variance between log beta tilde_t (v = -1) and log beta_t (v = 1) (:meth:`NoiseSchedule.learned_log_variance`).
The sampler and the loss split such an output; nothing else takes one.

On the CPU, a forward pass without autograd (sampling, scoring) runs the MLP's linear layers through oneDNN
instead of MKL: MKL in the compatible mode that the chapters pin (``MKL_CBWR=COMPATIBLE``, the Makefile's
CPU_NUMERICS) multiplies on SSE2 at about a quarter of oneDNN's AVX2 speed, and the matrix products are most of a
CPU sampling run, which takes half the time this way (``benchmarks/cpu_sampler.py`` times both). oneDNN gives the same
bits for every thread count and for every batch of at least 3 rows (the sampler runs blocks of 16); its AVX2 code
is what ``ONEDNN_MAX_CPU_ISA=AVX2`` pins, as for the UNet's convolutions. Its products round differently from
MKL's in the last bits, so a sampling run and a training step (autograd: MKL) see slightly different networks'
roundings, never different weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..params import positive_int
from ..storage.cache import KEY_OMITS_DEFAULT

__all__ = ["MLPConfig", "MLPDenoiser", "sinusoidal_embedding", "shared_timestep"]

try:  # torch's own oneDNN linear (what Inductor calls on the CPU); absent from some builds
    _ONEDNN_LINEAR = torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
    _ONEDNN_LINEAR = None


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style embedding of integer timesteps, [sin(t f_i), cos(t f_i)] with f_i = 10000^(-i / half),
    i < half = dim // 2 (improved-diffusion's spacing; the official code divides by half - 1). ``t``: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


def shared_timestep(t: int, batch_size: int, device: torch.device | str) -> Tensor:
    """A (B,) timestep tensor in which every sample has the same ``t``, built as a stride-0 view.

    Networks recognise the stride-0 view and compute the time embedding once instead of B times; the
    sampler always passes its timesteps this way."""
    return torch.full((1,), t, dtype=torch.long, device=device).expand(batch_size)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # pragma: no cover - torch < 2.4
        return torch.is_autocast_cpu_enabled()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) that runs through oneDNN on the CPU without autograd
    or autocast (see the module docstring). Under ``torch.compile`` it is a plain linear layer: Inductor cannot
    lower the oneDNN op on weights it has not packed itself, and on the CPU picks oneDNN for linear layers anyway."""

    def forward(self, x: Tensor) -> Tensor:
        if (_ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
                and not _cpu_autocast() and not torch.compiler.is_compiling()):
            return _ONEDNN_LINEAR(x, self.weight, self.bias, "none", [], "")
        return super().forward(x)


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of :class:`MLPDenoiser`. Defaults are the official code's (width 128, 3 tied blocks,
    LeakyReLU slope 0.02). ``learn_sigma``: also output the reverse-step variance (see the module docstring)."""

    data_dim: int = 1
    width: int = 128
    depth: int = 3
    tied_blocks: bool = True
    time_dim: int = 128
    negative_slope: float = 0.02
    learn_sigma: bool = field(default=False, metadata=KEY_OMITS_DEFAULT)

    def __post_init__(self) -> None:
        if not isinstance(self.learn_sigma, bool):
            raise TypeError(f"MLPConfig.learn_sigma must be a bool, got {self.learn_sigma!r}")
        for name in ("data_dim", "width", "depth", "time_dim"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"MLPConfig.{name}"))  # a numpy int is stored as int


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, time_dim: int, slope: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.fc1 = Linear(width, width, bias=False)
        self.time_proj = Linear(time_dim, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc2 = Linear(width, width, bias=False)
        self.act = nn.LeakyReLU(slope)

    def forward(self, h: Tensor, t_emb: Tensor) -> Tensor:  # h: (B, width), t_emb: (B or 1, time_dim)
        z = self.fc1(self.act(self.norm1(h))) + self.time_proj(t_emb)
        return h + self.fc2(self.act(self.norm2(z)))


class MLPDenoiser(nn.Module):
    """The official low-dimensional denoiser; ``model(x, t) -> eps`` with x: (B, data_dim), t: (B,)
    (with ``learn_sigma``: (B, 2 * data_dim), eps then v).

    When all samples share one timestep (``t`` built by :func:`shared_timestep`), the time embedding and
    its per-block projections are computed for one row and broadcast."""

    def __init__(self, config: MLPConfig = MLPConfig()):
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.sample_shape: tuple[int, ...] = (c.data_dim,)
        self.in_proj = Linear(c.data_dim, c.width, bias=False)
        self.time_mlp = nn.Sequential(Linear(c.time_dim, c.time_dim), nn.LeakyReLU(c.negative_slope))
        n_unique = 1 if c.tied_blocks else c.depth
        self.blocks = nn.ModuleList(_ResidualBlock(c.width, c.time_dim, c.negative_slope) for _ in range(n_unique))
        self.out_norm = nn.LayerNorm(c.width)
        self.out_proj = Linear(c.width, c.data_dim * (2 if c.learn_sigma else 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.config
        if x.dim() != 2 or x.shape[1] != c.data_dim:
            raise ValueError(f"x must have shape (B, {c.data_dim}), got {tuple(x.shape)}")
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if t.shape[0] > 1 and t.stride(0) == 0:
            t = t[:1]  # one timestep for the whole batch: embed it once, broadcast below
        t_emb = self.time_mlp(sinusoidal_embedding(t, c.time_dim))
        h = self.in_proj(x)
        for i in range(c.depth):
            h = self.blocks[0 if c.tied_blocks else i](h, t_emb)
        return self.out_proj(self.out_norm(h))
