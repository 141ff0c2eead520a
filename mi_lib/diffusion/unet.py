"""A small DDPM-style UNet for 64x64 grayscale images (Simple Shapes, hands), with the project's one interface
``model(x, t) -> eps``: x of shape (B, C, H, W), t an integer tensor of shape (B,) in 0..T-1.

The layout is DDPM's (Ho et al. 2020): a 3x3 conv in; per resolution level ``blocks_per_level`` residual
blocks, each adding a projection of the time embedding as a per-channel bias, then a stride-2 conv down; a
middle of two residual blocks (with self-attention between them if ``attention``); the mirror-image path up
with the activation saved after every down-path block concatenated back in, nearest-neighbour upsampling +
conv; GroupNorm -> SiLU -> a zero-initialised 3x3 conv out, so an untrained model predicts eps = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..params import positive_int
from .nets import sinusoidal_embedding

__all__ = ["UNetConfig", "UNetDenoiser"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNetDenoiser`. Level i has ``base_channels * channel_mults[i]`` channels at
    resolution ``image_size / (patch * 2**i)``; ``attention`` adds single-head self-attention at the lowest
    resolution; ``groups`` is the GroupNorm group count (every level's width must be divisible by it).
    ``patch`` > 1 folds each patch x patch block of pixels into channels before the first conv and unfolds
    the output the same way (``pixel_unshuffle`` / ``pixel_shuffle``, as in DiT's patchify): the network then
    runs at 1/patch the resolution, about patch**2 times cheaper, and still predicts every pixel's eps."""

    in_channels: int = 1
    image_size: int = 64
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 2
    time_dim: int = 128
    attention: bool = False
    dropout: float = 0.0
    groups: int = 8
    patch: int = 1


    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "base_channels", "blocks_per_level", "time_dim", "groups", "patch"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"UNetConfig.{name}"))  # a numpy int is stored as int
        if isinstance(self.channel_mults, list):  # a list would make the frozen config unhashable
            object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        mults = self.channel_mults
        if (not isinstance(mults, tuple) or not mults
                or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults)):
            raise ValueError(f"UNetConfig.channel_mults must be a non-empty tuple of positive ints, got {mults!r}")
        factor = self.patch * 2 ** (len(mults) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"UNetConfig.image_size={self.image_size} must be divisible by patch*2**(levels-1)={factor} "
                f"for patch={self.patch} and {len(mults)} levels (channel_mults={mults})"
            )
        widths = [self.base_channels * m for m in mults]
        if any(w % self.groups for w in widths):
            raise ValueError(
                f"every level's width base_channels*mult must be divisible by groups={self.groups}; got widths {widths}"
            )
        if not isinstance(self.attention, bool):
            raise ValueError(f"UNetConfig.attention must be a bool, got {self.attention!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """The per-sample shape (C, H, W)."""
        return (self.in_channels, self.image_size, self.image_size)


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, + time bias, -> GroupNorm -> SiLU -> dropout -> conv, + (1x1) skip."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:  # x: (B, in, h, w), t_emb: (B or 1, time_dim)
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time_proj(t_emb)[:, :, None, None]
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the h*w positions, residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # each (B, H*W, C)
        h = nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))


class _Down(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        return self.conv(x)


class _Up(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetDenoiser(nn.Module):
    """DDPM-style UNet; ``model(x, t) -> eps`` with x: (B, C, H, W) = (B, *config.sample_shape), t: (B,).

    Parameters: 1,534,849 for the default config (64x64, three levels of 32/64/64 channels, two blocks each: the
    paper-scale image models) and 311,124 for the CI-scale ones (16/32/32 channels, one block each, on 2x2
    patches: :data:`mi_lib.diffusion.models.IMAGE_SCALES`). When all samples share one timestep (``t`` built by :func:`~mi_lib.diffusion.nets.shared_timestep`), the
    time embedding and its per-block projections are computed for one row and broadcast."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        self.sample_shape: tuple[int, ...] = c.sample_shape
        widths = [c.base_channels * m for m in c.channel_mults]
        block = lambda i, o: _ResBlock(i, o, c.time_dim, c.groups, c.dropout)  # noqa: E731

        self.time_mlp = nn.Sequential(
            nn.Linear(c.time_dim, c.time_dim), nn.SiLU(), nn.Linear(c.time_dim, c.time_dim), nn.SiLU()
        )
        folded = c.in_channels * c.patch**2  # channels after pixel_unshuffle
        self.conv_in = nn.Conv2d(folded, c.base_channels, 3, padding=1)

        # Down path; skip_widths records the width of every activation saved for the up path.
        self.down = nn.ModuleList()
        skip_widths, ch = [c.base_channels], c.base_channels
        for level, width in enumerate(widths):
            for _ in range(c.blocks_per_level):
                self.down.append(block(ch, width))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.down.append(_Down(ch))
                skip_widths.append(ch)

        mid = [block(ch, ch)] + ([_Attention(ch, c.groups)] if c.attention else []) + [block(ch, ch)]
        self.mid = nn.ModuleList(mid)

        # Up path: one more block per level than on the way down, each eating one saved activation.
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(c.blocks_per_level + 1):
                self.up.append(block(ch + skip_widths.pop(), widths[level]))
                ch = widths[level]
            if level > 0:
                self.up.append(_Up(ch))

        self.out = nn.Sequential(nn.GroupNorm(c.groups, ch), nn.SiLU(), nn.Conv2d(ch, folded, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != c.sample_shape:
            raise ValueError(f"x must have shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(x.shape)}")
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if t.shape[0] > 1 and t.stride(0) == 0:
            t = t[:1]  # one timestep for the whole batch: embed it once, broadcast in the blocks
        t_emb = self.time_mlp(sinusoidal_embedding(t, c.time_dim))  # (B or 1, time_dim)

        h = self.conv_in(nn.functional.pixel_unshuffle(x, c.patch) if c.patch > 1 else x)
        saved = [h]
        for layer in self.down:
            h = layer(h, t_emb)
            saved.append(h)
        for layer in self.mid:
            h = layer(h, t_emb)
        for layer in self.up:
            h = layer(torch.cat([h, saved.pop()], dim=1), t_emb) if isinstance(layer, _ResBlock) else layer(h, t_emb)
        out = self.out(h)
        return nn.functional.pixel_shuffle(out, c.patch) if c.patch > 1 else out
