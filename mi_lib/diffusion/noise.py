"""Counter-based Gaussian noise: the value drawn for sample k at step t is a fixed function of
(seed, t, k, element), whatever the batch it is drawn in and whatever the device.

Construction. Each (seed, step) pair names a stream: a 64-bit key and an odd 64-bit increment ``gamma``,
derived on the host with SplitMix64's mixers. Element e of sample k gets the counter c = k * D + e
(D = elements per sample) and the 64 random bits h = mix64(key + c * gamma), SplitMix64's output function
(Steele, Lea and Flood 2014, the "split" of SplittableRandom). All of this is int64 torch arithmetic, which
wraps modulo 2**64 on every device; logical right shifts are arithmetic shifts followed by a mask.
Box-Muller turns each h into one normal, in float64: the top 40 bits give u1 = (m + 1) / 2**40 in (0, 1],
the low 24 bits an angle theta on a midpoint grid, and z = sqrt(-2 ln u1) cos(theta).

Tails: |z| <= sqrt(80 ln 2) = 7.4466 (the largest radius, at u1 = 2**-40); P(|Z| > 7.4466) = 1e-13 for an
exact normal, so 100 M samples x 1000 steps would miss about 0.01 draws. Below that the tail is exact up to
the 2**-40 grid of u1: summed exactly over the grids (``tests/test_noise.py``), P(|z| > 5) is within 4e-7
of erfc(5/sqrt 2) relative, P(|z| > 6) within 1e-4 and P(|z| > 7) within 5%.
The integer bits are identical on every device; float64 ``log``/``cos`` may differ in their last bit
between CPU and CUDA, which survives rounding to float32 in about one draw in 2**28.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["normal", "random_bits", "MAX_ABS_NORMAL"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's default increment, 2**64 / golden ratio (odd)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64's mix64 (Stafford's variant 13)
_RADIUS_BITS, _ANGLE_BITS = 40, 24

#: The largest |z| that :func:`normal` can return: sqrt(-2 ln 2**-40).
MAX_ABS_NORMAL: float = math.sqrt(2 * _RADIUS_BITS * math.log(2))


def _as_int64(u: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``u``."""
    return u - (1 << 64) if u >= 1 << 63 else u


def _mix64_int(z: int) -> int:
    """SplitMix64's output function on a Python int in [0, 2**64)."""
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _mix_gamma(z: int) -> int:
    """SplitMix64's increment for a new stream: odd, with enough bit transitions to be a good Weyl step."""
    z = ((z ^ (z >> 33)) * 0xFF51AFD7ED558CCD) & _MASK64
    z = ((z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53) & _MASK64
    z = (z ^ (z >> 33)) | 1
    return z ^ 0xAAAAAAAAAAAAAAAA if bin(z ^ (z >> 1)).count("1") < 24 else z


def _stream(seed: int, step: int) -> tuple[int, int]:
    """(key, gamma) of the stream for (seed, step), as unsigned 64-bit Python ints."""
    h = _mix64_int((seed & _MASK64) ^ 0x5EED5EED5EED5EED)
    h = _mix64_int((h + _GOLDEN * (step + 1)) & _MASK64)
    return _mix64_int((h + _GOLDEN) & _MASK64), _mix_gamma((h + 2 * _GOLDEN) & _MASK64)


def _shr(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic for negative int64)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix64(z: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors holding unsigned 64-bit values (in place on ``z``)."""
    z ^= _shr(z, 30)
    z *= _as_int64(_MIX1)
    z ^= _shr(z, 27)
    z *= _as_int64(_MIX2)
    z ^= _shr(z, 31)
    return z


def _check(shape: Sequence[int], seed: int, step: int, sample_offset: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"shape must be (B, ...) with non-negative sizes, got {shape}")
    for name, v in (("seed", seed), ("step", step), ("sample_offset", sample_offset)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if step < 0 or sample_offset < 0:
        raise ValueError(f"step and sample_offset must be >= 0, got step={step}, sample_offset={sample_offset}")
    per_sample = math.prod(shape[1:])
    if (sample_offset + shape[0]) * per_sample >= 1 << 62:
        raise ValueError(f"counter overflow: {sample_offset + shape[0]} samples of {per_sample} elements")
    return shape


def random_bits(
    shape: Sequence[int], *, seed: int, step: int, sample_offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """The 64 random bits behind :func:`normal`, as an int64 tensor of ``shape`` = (B, ...).

    Entry [b, ...] depends only on (seed, step, sample_offset + b, its position within the sample), and is
    bitwise the same on every device."""
    shape = _check(shape, seed, step, sample_offset)
    key, gamma = _stream(seed, step)
    per_sample = math.prod(shape[1:])
    start = sample_offset * per_sample
    c = torch.arange(start, start + math.prod(shape), dtype=torch.int64, device=torch.device(device))
    c *= _as_int64(gamma)
    c += _as_int64(key)
    return _mix64(c).reshape(shape)


def normal(
    shape: Sequence[int],
    *,
    seed: int,
    step: int,
    sample_offset: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise of ``shape`` = (B, ...) for samples sample_offset .. sample_offset + B - 1.

    Entry [b, ...] is a fixed function of (seed, step, sample_offset + b, its position within the sample):
    drawing samples 0..9 at once or as 0..3 and 4..9 gives the same numbers, on any device. Different
    ``step`` values (non-negative ints) give independent streams. |z| <= MAX_ABS_NORMAL = 7.4466; see the
    module docstring for the construction and its tails. Computed in float64, returned in ``dtype``."""
    return _box_muller(random_bits(shape, seed=seed, step=step, sample_offset=sample_offset, device=device)).to(dtype)


def _box_muller(h: Tensor) -> Tensor:
    """One float64 normal per 64 random bits: radius from the top 40 bits, angle from the low 24."""
    u1 = (_shr(h, 64 - _RADIUS_BITS) + 1).to(torch.float64).mul_(2.0**-_RADIUS_BITS)  # (0, 1]
    theta = (h & ((1 << _ANGLE_BITS) - 1)).to(torch.float64).add_(0.5).mul_(2 * math.pi / 2**_ANGLE_BITS)
    return u1.log_().mul_(-2.0).sqrt_().mul_(theta.cos_())
