"""The fused sampler (mi_lib.diffusion.fused): one Triton kernel for the whole DDPM reverse process of the MLP.

Without a GPU the kernel runs under Triton's interpreter (numpy), which must be switched on before
mi_lib.diffusion.fused is first imported; with a GPU these tests run the compiled kernel (tests/test_gpu.py times it)."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import mi_lib as mi  # noqa: E402
from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, ScheduleConfig, sample  # noqa: E402
from mi_lib.diffusion import fused  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHORT = NoiseSchedule(ScheduleConfig("linear", 20, 1e-2, 0.3))  # 20 steps: the interpreter is slow


def _model(data_dim: int = 1, tied: bool = True, seed: int = 0) -> MLPDenoiser:
    torch.manual_seed(seed)
    model = MLPDenoiser(MLPConfig(data_dim=data_dim, width=32, time_dim=16, tied_blocks=tied)).to(DEVICE)
    with torch.no_grad():  # LayerNorm affine parameters away from their (1, 0) initial values, so they count
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("data_dim, tied", [(1, True), (2, True), (2, False)])
def test_fused_float32_is_the_eager_sampler(data_dim, tied):
    """Same noise (SplitMix64 bits inside the kernel), same tables, same order of operations: in float32 the
    kernel's samples and Hal equal the eager sampler's up to float rounding in the network."""
    model = _model(data_dim, tied)
    ref = sample(model, SHORT, 150, seed=4, hal_window=(0, 5), progress=False)
    out = sample(model, SHORT, 150, seed=4, hal_window=(0, 5), progress=False, fused=True)
    torch.testing.assert_close(out.x0, ref.x0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.hal, ref.hal, rtol=1e-3, atol=1e-7)
    assert out.x0.device.type == "cpu" and out.x0.shape == (150, data_dim)


def test_fused_sample_k_does_not_depend_on_the_chunk():
    model = _model(2)
    whole = sample(model, SHORT, 150, seed=1, progress=False, fused=True).x0
    chunked = sample(model, SHORT, 150, seed=1, chunk_size=70, progress=False, fused=True).x0
    assert torch.equal(chunked, whole)


@pytest.mark.parametrize("options", [dict(variance="small"), dict(clip_x0=0.5), dict(precision="tf32")])
def test_fused_options_follow_the_eager_sampler(options):
    model = _model(1)
    ref = sample(model, SHORT, 64, seed=2, hal_window=(0, 3), progress=False, **options)
    out = sample(model, SHORT, 64, seed=2, hal_window=(0, 3), progress=False, fused=True, **options)
    tol = 1e-2 if options.get("precision") == "tf32" and DEVICE == "cuda" else 1e-5  # TF32 products on a GPU
    torch.testing.assert_close(out.x0, ref.x0, rtol=tol, atol=tol)
    if "clip_x0" in options:
        assert not torch.equal(ref.x0, sample(model, SHORT, 64, seed=2, progress=False).x0)  # the clamp did bite


def test_fused_bf16_tracks_float32():
    """bfloat16 operands, float32 accumulation and residual stream: not float32, but no farther from it than
    the eager sampler's bf16 autocast (which also keeps the residual stream in bfloat16) is."""
    model = _model(1)
    ref = sample(model, SHORT, 128, seed=3, progress=False).x0
    fused_gap = (sample(model, SHORT, 128, seed=3, progress=False, fused=True, precision="bf16").x0 - ref).abs()
    eager_gap = (sample(model, SHORT, 128, seed=3, progress=False, precision="bf16").x0 - ref).abs()
    # the float32 kernel already differs from the eager sampler by rounding (about 1e-5): bf16 must round far more,
    # as much as the eager bf16 path within a factor of a few, or the precision was not applied
    assert 0.2 * eager_gap.median() < fused_gap.median() <= 2 * eager_gap.median(), (fused_gap.median(), eager_gap.median())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sampler="ddim", steps=5), ValueError, "DDPM"),
    (dict(record_steps=[0]), ValueError, "record_steps"),
    (dict(compile=True), ValueError, "compile"),
    (dict(precision="half"), ValueError, "unknown precision"),
    (dict(fused=1), TypeError, "fused must be a bool"),
])
def test_fused_refuses_what_it_cannot_do(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample(_model(1), SHORT, 16, progress=False, **{"fused": True, **kwargs})


def test_fused_needs_the_official_mlp_and_a_power_of_two_width():
    unet = mi.UNetDenoiser(mi.UNetConfig(base_channels=8, channel_mults=(1,), blocks_per_level=1, patch=4)).to(DEVICE)
    with pytest.raises(TypeError, match="MLPDenoiser"):
        sample(unet, SHORT, 4, progress=False, fused=True)
    odd = MLPDenoiser(MLPConfig(data_dim=1, width=48, time_dim=16)).to(DEVICE)
    with pytest.raises(ValueError, match="power-of-two width"):
        sample(odd, SHORT, 4, progress=False, fused=True)


def test_without_a_gpu_or_the_interpreter_it_says_so(monkeypatch):
    monkeypatch.setattr(fused, "_interpreting", lambda: False)
    assert "CUDA GPU" in fused.fused_available("cpu") and "TRITON_INTERPRET" in fused.fused_available("cpu")
    monkeypatch.setattr(fused, "triton", None)
    assert "needs Triton" in fused.fused_available("cuda")


def test_the_launch_configuration_changes_the_speed_not_the_samples(monkeypatch):
    model = _model(2)
    ref = sample(model, SHORT, 100, seed=6, hal_window=(0, 4), progress=False, fused=True)
    other = sample(model, SHORT, 100, seed=6, hal_window=(0, 4), progress=False, fused="16x2")
    torch.testing.assert_close(other.x0, ref.x0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(other.hal, ref.hal, rtol=1e-5, atol=1e-9)
    for bad in ("64", "100x4", "64x3", "axb"):
        with pytest.raises(ValueError, match="ROWSxWARPS|fused kernel config"):
            sample(model, SHORT, 4, progress=False, fused=bad)
    monkeypatch.setenv("MI_FAST_SAMPLE", "fused=128x8,precision=bf16")
    assert mi.Settings.from_environment("cpu").sample_options() == {"fused": "128x8", "precision": "bf16"}
