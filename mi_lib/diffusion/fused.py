"""The fused sampler: one Triton kernel runs the whole DDPM reverse process of the official MLP.

:func:`mi_lib.sample` with ``fused=True`` calls :func:`fused_ddpm_sample`. Each program of the kernel takes a
block of samples and walks them through all T steps without leaving the chip: the network (input
projection, the residual blocks with their LayerNorms, the output projection), x0_hat, the posterior mean,
the per-sample noise of :mod:`mi_lib.diffusion.noise` (SplitMix64 and Box-Muller, the same bits) and the streaming
Hal statistic. Only the final samples and Hal are written. The width-128 MLP is too small for the GPU's
matrix units to hide the memory traffic of one kernel per layer (an eager or compiled network re-reads
every activation from memory at every layer of every step); here that traffic is gone and the matrix
products are the cost.

What it computes is :func:`mi_lib.diffusion.sampling.reverse_process` with ``sampler="ddpm"``: same noise, same
schedule tables (float32), same order of operations; the network differs from the eager one only in
rounding (``precision``: "bf16" multiplies bfloat16 operands with float32 accumulation and keeps the
residual stream in float32; "tf32" uses TF32 products; "float32" exact float32 products). The time
embedding and each block's projection of it depend on t alone, so they are computed once for all T steps,
by the model itself, before the kernel starts.

Where it runs: a CUDA GPU with Triton, or the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set
before this module is first imported; numpy does the arithmetic, slowly), which is how the tests check the
kernel against the eager sampler without a GPU. (There, "bf16" rounds the operands to bfloat16 and multiplies
in float32: the interpreter's own bfloat16 products are wrong, in Triton 3.9.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import environment
from . import noise
from .fast import check_fast_options
from .nets import MLPDenoiser, sinusoidal_embedding
from .schedule import NoiseSchedule

__all__ = ["DEFAULT_CONFIG", "FUSED_CONFIGS", "fused_available", "fused_ddpm_sample", "parse_config"]

#: (samples per program, warps per program): what the kernel runs with unless told otherwise. Measured on the
#: H200 in window 1 at (64, 4): bf16 1.67 s per million samples x 1000 steps (benchmarks/results/nvidia-h200-short.json);
#: bench.py --short times the others of FUSED_CONFIGS beside it.
DEFAULT_CONFIG = (64, 4)
FUSED_CONFIGS = ((64, 4), (128, 4), (128, 8), (256, 8))

try:  # Triton is optional: torch's CUDA wheels ship it, the CPU wheel does not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


def _interpreting() -> bool:
    return environment.triton_interpret()


def fused_available(device: torch.device | str) -> str | None:
    """None if the fused sampler can run on ``device``, else why not (one sentence)."""
    device = torch.device(device)
    if triton is None:
        return "the fused sampler needs Triton (`pip install triton`; torch's CUDA wheels include it)"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and _interpreting():
        return None
    return (f"the fused sampler runs on a CUDA GPU, or on the CPU under Triton's interpreter (TRITON_INTERPRET=1 before "
            f"mi_lib.diffusion.fused is imported); the model is on {device}")


if triton is not None:

    @triton.jit
    def _layer_norm(h, w_ptr, b_ptr, cols, W: tl.constexpr):
        mean = tl.sum(h, axis=1) / W
        c = h - mean[:, None]
        var = tl.sum(c * c, axis=1) / W
        return c * (1.0 / tl.sqrt(var + 1e-5))[:, None] * tl.load(w_ptr + cols)[None, :] + tl.load(b_ptr + cols)[None, :]

    @triton.jit
    def _leaky(a, slope):
        return tl.where(a > 0, a, a * slope)

    @triton.jit
    def _load_matrix(w_ptr, cols, W: tl.constexpr):
        """The (W, W) matrix at w_ptr (row-major, already transposed: x @ w)."""
        return tl.load(w_ptr + cols[:, None] * W + cols[None, :])

    @triton.jit
    def _matmul(a, w, PRECISION: tl.constexpr, EMULATE_BF16: tl.constexpr):
        """a (BM, W) float32 @ w (W, W), accumulated in float32."""
        if PRECISION == "bf16" and EMULATE_BF16:  # the interpreter's bfloat16 dot is wrong: round, multiply in float32
            return tl.dot(a.to(tl.bfloat16).to(tl.float32), w.to(tl.bfloat16).to(tl.float32), input_precision="ieee", out_dtype=tl.float32)
        elif PRECISION == "bf16":
            return tl.dot(a.to(tl.bfloat16), w.to(tl.bfloat16), out_dtype=tl.float32)
        elif PRECISION == "tf32":
            return tl.dot(a, w, input_precision="tf32", out_dtype=tl.float32)
        else:
            return tl.dot(a, w, input_precision="ieee", out_dtype=tl.float32)

    @triton.jit
    def _normal(key, gamma, counter, angle_step):
        """mi_lib.diffusion.noise.normal's value at ``counter`` of the stream (key, gamma): SplitMix64, then Box-Muller in
        float64 (``angle_step`` = 2 pi / 2**24 as a float64: a float literal here would be float32)."""
        z = key + counter * gamma
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        z = z ^ (z >> 31)
        u1 = ((z >> 24) + 1).to(tl.float64) * 9.094947017729282e-13  # 2**-40, exact in float32 too
        theta = ((z & 0xFFFFFF).to(tl.float64) + 0.5) * angle_step
        return (tl.sqrt(tl.log(u1) * -2.0) * tl.cos(theta)).to(tl.float32)

    # n_rows and sample_offset change from chunk to chunk: left unspecialised, a ragged last chunk (or an offset not
    # divisible by 16) does not compile the kernel again (measured on the H200: 6 s of an 8.6 s run).
    @triton.jit(do_not_specialize=["n_rows", "sample_offset"])
    def _ddpm_kernel(
        x_out, hal_out, n_rows, sample_offset,
        keys, gammas,  # (T + 1,) int64 bit patterns of the noise streams (step T: x_T)
        w_in, tproj, ln1_w, ln1_b, w1, ln2_w, ln2_b, w2, lno_w, lno_b, w_out, b_out,
        c_x0_x, c_x0_eps, c_mean_x0, c_mean_xt, std,  # (T,) float32 schedule tables
        angle, t_lo, t_hi, slope, clip,
        T: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, W: tl.constexpr, DEPTH: tl.constexpr, N_UNIQUE: tl.constexpr,
        BM: tl.constexpr, PRECISION: tl.constexpr, CLIP: tl.constexpr, HAL: tl.constexpr, EMULATE_BF16: tl.constexpr,
    ):
        pid = tl.program_id(0)
        rows = pid * BM + tl.arange(0, BM)
        dims = tl.arange(0, DP)
        cols = tl.arange(0, W)
        live = (rows[:, None] < n_rows) & (dims[None, :] < D)
        # counter of element e of sample k: k * D + e (mi_lib.diffusion.noise), as uint64
        counter = ((sample_offset + rows[:, None]).to(tl.uint64) * D + dims[None, :].to(tl.uint64))
        angle_step = tl.load(angle)
        key = tl.load(keys + T).to(tl.uint64, bitcast=True)
        gamma = tl.load(gammas + T).to(tl.uint64, bitcast=True)
        x = tl.where(live, _normal(key, gamma, counter, angle_step), 0.0)  # x_T, (BM, DP)
        b_o = tl.load(b_out + dims)
        mean_h = tl.zeros((BM, DP), dtype=tl.float32)
        m2_h = tl.zeros((BM, DP), dtype=tl.float32)
        count = 0.0
        for s in range(0, T):
            t = T - 1 - s
            h = tl.zeros((BM, W), dtype=tl.float32)
            for d in tl.static_range(D):  # input projection: sum over the D coordinates
                x_d = tl.sum(tl.where(dims[None, :] == d, x, 0.0), axis=1)
                h += x_d[:, None] * tl.load(w_in + d * W + cols)[None, :]
            if N_UNIQUE == 1:  # tied blocks (the official network): one load of each matrix a step, not DEPTH
                w1_tied = _load_matrix(w1, cols, W)
                w2_tied = _load_matrix(w2, cols, W)
            for i in tl.static_range(DEPTH):
                blk = i % N_UNIQUE
                if N_UNIQUE == 1:
                    w1_i, w2_i = w1_tied, w2_tied
                else:
                    w1_i, w2_i = _load_matrix(w1 + blk * W * W, cols, W), _load_matrix(w2 + blk * W * W, cols, W)
                a = _leaky(_layer_norm(h, ln1_w + blk * W, ln1_b + blk * W, cols, W), slope)
                z = _matmul(a, w1_i, PRECISION, EMULATE_BF16) + tl.load(tproj + (t * N_UNIQUE + blk) * W + cols)[None, :]
                z = _leaky(_layer_norm(z, ln2_w + blk * W, ln2_b + blk * W, cols, W), slope)
                h = h + _matmul(z, w2_i, PRECISION, EMULATE_BF16)
            o = _layer_norm(h, lno_w, lno_b, cols, W)
            eps = tl.zeros((BM, DP), dtype=tl.float32) + b_o[None, :]  # output projection, one coordinate at a time
            for d in tl.static_range(D):
                eps_d = tl.sum(o * tl.load(w_out + cols * DP + d)[None, :], axis=1)
                eps = tl.where(dims[None, :] == d, eps + eps_d[:, None], eps)
            x0_hat = tl.load(c_x0_x + t) * x - tl.load(c_x0_eps + t) * eps
            if CLIP:
                x0_hat = tl.minimum(tl.maximum(x0_hat, -clip), clip)
            if HAL:
                if (t >= t_lo) & (t <= t_hi):  # Welford, as mi_lib.diffusion.sampling.WindowVariance
                    count += 1.0
                    delta = x0_hat - mean_h
                    mean_h += delta / count
                    m2_h += delta * (x0_hat - mean_h)
            mean = tl.load(c_mean_x0 + t) * x0_hat + tl.load(c_mean_xt + t) * x
            if t > 0:
                key = tl.load(keys + t).to(tl.uint64, bitcast=True)
                gamma = tl.load(gammas + t).to(tl.uint64, bitcast=True)
                x = mean + tl.load(std + t) * _normal(key, gamma, counter, angle_step)
            else:
                x = mean
            x = tl.where(live, x, 0.0)
        tl.store(x_out + rows[:, None] * D + dims[None, :], x, mask=live)
        if HAL:
            hal = tl.sum(tl.where(live, m2_h / count, 0.0), axis=1) / D
            tl.store(hal_out + rows, hal, mask=rows < n_rows)


def _stream_tables(seed: int, T: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The (key, gamma) of mi_lib.diffusion.noise's streams for steps 0..T, as int64 bit patterns."""
    pairs = [noise._stream(seed, step) for step in range(T + 1)]
    keys = torch.tensor([noise._as_int64(k) for k, _ in pairs], dtype=torch.int64, device=device)
    gammas = torch.tensor([noise._as_int64(g) for _, g in pairs], dtype=torch.int64, device=device)
    return keys, gammas


def parse_config(config: bool | str | tuple[int, int]) -> tuple[int, int]:
    """The kernel's (samples per program, warps) from ``sample(fused=...)``: True (:data:`DEFAULT_CONFIG`), a
    pair, or "ROWSxWARPS" (as ``$MI_FAST_SAMPLE`` writes it: ``fused=128x8``). Rows a power of two from 16
    to 512, warps 1, 2, 4, 8 or 16; anything else one ValueError."""
    if config is True:
        return DEFAULT_CONFIG
    pair = config
    if isinstance(config, str):
        rows, sep, warps = config.partition("x")
        if not (sep and rows.isdigit() and warps.isdigit()):
            raise ValueError(f"a fused kernel config is ROWSxWARPS, e.g. '128x8', got {config!r}")
        pair = (int(rows), int(warps))
    if (not isinstance(pair, tuple) or len(pair) != 2 or pair[0] not in (16, 32, 64, 128, 256, 512)
            or pair[1] not in (1, 2, 4, 8, 16)):
        raise ValueError(f"a fused kernel config is (rows a power of two in 16..512, warps in 1, 2, 4, 8, 16), got {config!r}")
    return pair


@torch.no_grad()
def _weights(model: MLPDenoiser, T: int, device: torch.device, matrix_dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """The network's weights in the kernel's layout (float32, contiguous; the (W, W) matrices in
    ``matrix_dtype``), with each block's projection of the time embedding precomputed for every t: tproj
    (T, n_unique, W)."""
    c = model.config
    blocks = list(model.blocks)
    t = torch.arange(T, device=device)
    t_emb = model.time_mlp(sinusoidal_embedding(t, c.time_dim))  # (T, time_dim)
    dp = 1 << (c.data_dim - 1).bit_length()
    w_out = torch.zeros(c.width, dp, device=device)
    w_out[:, : c.data_dim] = model.out_proj.weight.t()
    b_out = torch.zeros(dp, device=device)
    b_out[: c.data_dim] = model.out_proj.bias
    f = lambda v: v.detach().float().contiguous()  # noqa: E731
    return {
        "w_in": f(model.in_proj.weight.t()),  # (D, W)
        "tproj": f(torch.stack([b.time_proj(t_emb) for b in blocks], dim=1)),  # (T, n_unique, W)
        "ln1_w": f(torch.stack([b.norm1.weight for b in blocks])), "ln1_b": f(torch.stack([b.norm1.bias for b in blocks])),
        "w1": f(torch.stack([b.fc1.weight.t() for b in blocks])).to(matrix_dtype),  # (n_unique, W, W): x @ w1[i]
        "ln2_w": f(torch.stack([b.norm2.weight for b in blocks])), "ln2_b": f(torch.stack([b.norm2.bias for b in blocks])),
        "w2": f(torch.stack([b.fc2.weight.t() for b in blocks])).to(matrix_dtype),
        "lno_w": f(model.out_norm.weight), "lno_b": f(model.out_norm.bias),
        "w_out": f(w_out), "b_out": f(b_out),
    }


def fused_ddpm_sample(
    model: MLPDenoiser,
    schedule: NoiseSchedule,
    n: int,
    *,
    seed: int = 0,
    sample_offset: int = 0,
    variance: str = "large",
    hal_window: tuple[int, int] | None = None,
    precision: str = "float32",
    clip_x0: float | None = None,
    config: bool | str | tuple[int, int] = True,
) -> tuple[Tensor, Tensor | None]:
    """Samples ``sample_offset .. sample_offset + n - 1`` of DDPM ancestral sampling from ``model`` on its
    device: (x0 (n, D) float32, Hal (n,) or None), both on that device. Sample k is the sample
    :func:`mi_lib.sample` draws as its k-th (same noise); see the module docstring for what differs.
    Memory: the outputs only. ``config``: the kernel's (samples per program, warps), see :func:`parse_config`;
    it changes the speed, not the samples."""
    block_rows, num_warps = parse_config(config)
    if not isinstance(model, MLPDenoiser):
        raise TypeError(f"the fused sampler runs the official MLP (MLPDenoiser), got {type(model).__name__}")
    if model.config.learn_sigma:
        raise ValueError("the fused sampler runs the official MLP, not a learned-variance one (use fused=False)")
    device = next(model.parameters()).device
    why = fused_available(device)
    if why is not None:
        raise RuntimeError(why)
    check_fast_options(precision, False, device)
    c, T = model.config, schedule.T
    if c.width & (c.width - 1) or c.width < 16:
        raise ValueError(f"the fused sampler needs a power-of-two width >= 16, got {c.width}")
    sched = schedule.to(device)
    tables = dict(
        c_x0_x=sched.sqrt_recip_alpha_bar, c_x0_eps=sched.sqrt_recip_alpha_bar_minus_one,
        c_mean_x0=sched.posterior_mean_coef_x0, c_mean_xt=sched.posterior_mean_coef_xt,
        std=(sched.beta if variance == "large" else sched.posterior_variance).sqrt(),
    )
    keys, gammas = _stream_tables(seed, T, device)
    angle = torch.tensor([2 * math.pi / 2**noise._ANGLE_BITS], dtype=torch.float64, device=device)
    emulate = device.type == "cpu"
    weights = _weights(model.eval(), T, device, torch.bfloat16 if precision == "bf16" and not emulate else torch.float32)
    x_out = torch.empty((n, c.data_dim), dtype=torch.float32, device=device)
    hal_out = torch.empty(n if hal_window is not None else 1, dtype=torch.float32, device=device)
    t_lo, t_hi = hal_window if hal_window is not None else (0, 0)
    grid = (math.ceil(n / block_rows),)
    _ddpm_kernel[grid](
        x_out, hal_out, n, sample_offset, keys, gammas,
        *weights.values(), *tables.values(),  # both dicts list their tensors in the kernel's argument order
        angle, t_lo, t_hi, float(c.negative_slope), float(clip_x0 or 0.0),
        T=T, D=c.data_dim, DP=1 << (c.data_dim - 1).bit_length(), W=c.width, DEPTH=c.depth, N_UNIQUE=len(model.blocks),
        BM=block_rows, PRECISION=precision, CLIP=clip_x0 is not None, HAL=hal_window is not None, EMULATE_BF16=emulate,
        num_warps=num_warps,
    )
    return x_out, (hal_out if hal_window is not None else None)
