import shutil

import numpy as np
import pytest
import torch
from torch import nn

from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, ScheduleConfig, TrainConfig, mean_var_zscores, mixture_1d, reverse_process, sample, timesteps, train
from mi_lib.diffusion import fast, nets
from mi_lib.diffusion.noise import normal
from mi_lib.diffusion.sampling import initial_noise


class ZeroEps(nn.Module):
    """Predicts eps = 0 everywhere."""

    sample_shape = (2,)

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return torch.zeros_like(x)


class PointMassEps(nn.Module):
    """The exact eps-prediction for data that is a point mass at ``c``: eps = (x_t - sqrt(ab) c) / sqrt(1 - ab)."""

    def __init__(self, schedule, c):
        super().__init__()
        self.schedule, self.c = schedule, c
        self.sample_shape = (c.shape[0],)

    def forward(self, x, t):
        s = self.schedule
        return (x - s.sqrt_alpha_bar[t][:, None] * self.c) / s.sqrt_one_minus_alpha_bar[t][:, None]


def test_golden_two_step_ddpm_loop():
    """The whole recurrence by hand, T = 2, model eps = 0, fixed-large variance."""
    s = NoiseSchedule(ScheduleConfig("linear", 2, 0.1, 0.2))
    b1, b2 = 0.1, 0.2
    ab1, ab2 = 1 - b1, (1 - b1) * (1 - b2)
    x_T = initial_noise((5, 2), s, seed=3)
    steps = list(reverse_process(ZeroEps(), s, x_T, seed=3))
    x = normal((5, 2), seed=3, step=2).double()  # x_T is the stream step = T
    # t = 1 (the second beta): x0_hat = x / sqrt(ab2); posterior mean = c0 x0_hat + ct x
    x0_hat = x / np.sqrt(ab2)
    c0 = b2 * np.sqrt(ab1) / (1 - ab2)
    ct = (1 - ab1) * np.sqrt(1 - b2) / (1 - ab2)
    x1 = c0 * x0_hat + ct * x + np.sqrt(b2) * normal((5, 2), seed=3, step=1).double()  # noise leaving t = 1
    # t = 0: posterior mean is x0_hat itself, no noise
    x0 = x1 / np.sqrt(ab1)
    assert [st.t for st in steps] == [1, 0]
    assert torch.allclose(steps[0].x0_hat.double(), x0_hat, atol=1e-6)
    assert torch.allclose(steps[0].x_prev.double(), x1, atol=1e-6)
    assert torch.allclose(steps[1].xt, steps[0].x_prev)
    assert torch.allclose(steps[1].x_prev.double(), x0, atol=1e-5)


@pytest.mark.parametrize("sampler, variance, steps, eta", [("ddpm", "large", None, 0.0), ("ddpm", "small", None, 0.0), ("ddim", "large", 20, 0.0), ("ddim", "large", 50, 1.0)])
def test_exact_model_recovers_point_mass(sampler, variance, steps, eta):
    s = NoiseSchedule(ScheduleConfig("linear", 200, 1e-3, 0.05))
    c = torch.tensor([0.7, -1.3])
    out = sample(PointMassEps(s, c), s, 64, sampler=sampler, variance=variance, steps=steps, eta=eta, seed=1, progress=False)
    assert torch.allclose(out.x0, c.expand(64, 2), atol=1e-3)


def test_determinism_and_per_sample_seeds():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2))
    s = NoiseSchedule(ScheduleConfig("linear", 30, 1e-3, 0.2))
    a = sample(net_model := _wrap(net), s, 10, seed=5, chunk_size=5, progress=False).x0
    b = sample(net_model, s, 10, seed=5, chunk_size=5, progress=False).x0
    c = sample(net_model, s, 10, seed=6, chunk_size=5, progress=False).x0
    d = sample(net_model, s, 5, seed=5, chunk_size=5, progress=False).x0
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(a[:5], d)
    assert not torch.allclose(a[:5], a[5:])  # samples differ from one another


def _trained_like_mlp(data_dim: int) -> MLPDenoiser:
    """An untrained official-architecture MLP with non-trivial outputs (its xavier init already has them)."""
    torch.manual_seed(0)
    return MLPDenoiser(MLPConfig(data_dim=data_dim, width=32, time_dim=32))


@pytest.mark.parametrize("sampler, steps, eta, data_dim", [("ddpm", None, 0.0, 1), ("ddpm", None, 0.0, 2), ("ddim", 10, 1.0, 2)])
def test_samples_and_hal_do_not_depend_on_the_chunk_size(sampler, steps, eta, data_dim):
    """Sample k's noise is a function of (seed, k): every chunking gives bit-identical samples, Hal and records.
    (data_dim=1 has a 32 -> 1 output projection, which the CPU's BLAS rounds differently for a ragged batch.)"""
    model = _trained_like_mlp(data_dim)
    s = NoiseSchedule(ScheduleConfig("linear", 40, 1e-3, 0.2))
    kw = dict(seed=11, sampler=sampler, steps=steps, eta=eta, hal_window=(0, 9), record_steps=[0], progress=False)
    ref = sample(model, s, 23, chunk_size=None, **kw)
    for chunk in (1, 4, 7, 23, 100):
        out = sample(model, s, 23, chunk_size=chunk, **kw)
        assert torch.equal(out.x0, ref.x0), chunk
        assert torch.equal(out.hal, ref.hal), chunk
        assert torch.equal(out.records[0][1], ref.records[0][1]), chunk
    # a run of the first 9 samples, and a reverse_process started at sample 9, reproduce their rows
    assert torch.equal(sample(model, s, 9, chunk_size=4, **kw).x0, ref.x0[:9])
    x_T = initial_noise((16, data_dim), s, seed=11, sample_offset=4)  # sample() runs whole blocks of 16 rows
    *_, last = reverse_process(model, s, x_T, sampler=sampler, steps=steps, eta=eta, seed=11, sample_offset=4)
    assert torch.equal(last.x_prev, ref.x0[4:20])


def test_outputs_are_plain_cpu_tensors_in_input_order():
    model = _trained_like_mlp(1)
    s = NoiseSchedule(ScheduleConfig("linear", 20, 1e-3, 0.2))
    out = sample(model, s, 10, seed=0, chunk_size=3, hal_window=(0, 4), record_steps=[19, 0], progress=False)
    assert out.x0.device.type == "cpu" and not out.x0.is_inference() and out.x0.dtype == torch.float32
    assert out.x0.shape == (10, 1) and out.hal.shape == (10,) and out.records[19][0].shape == (10, 1)
    # x_T of sample k is the (seed, step=T) stream at index k
    torch.testing.assert_close(out.records[19][0], normal((10, 1), seed=0, step=20), rtol=0, atol=0)


def _wrap(net):
    class M(nn.Module):
        sample_shape = (2,)

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x) * (1 + t[:, None].float() / 100)

    return M()


def test_hal_and_records_agree_with_the_trajectory():
    torch.manual_seed(0)
    model = _wrap(nn.Linear(2, 2))
    s = NoiseSchedule(ScheduleConfig("linear", 40, 1e-3, 0.2))
    out = sample(model, s, 12, seed=2, hal_window=(0, 9), record_steps=list(range(10)), progress=False)
    x0_hats = torch.stack([out.records[t][1] for t in range(10)]).double()  # (10, N, 2)
    expected = x0_hats.var(dim=0, unbiased=False).mean(-1)
    assert out.hal.shape == (12,)
    assert torch.allclose(out.hal.double(), expected, rtol=1e-5)
    # the recorded state at t = 0 feeds the final sample: its x0_hat, from the network at the recorded x_0
    assert out.records[0][0].shape == (12, 2)
    torch.testing.assert_close(out.x0, out.records[0][1])
    with torch.no_grad():
        eps = model(out.records[0][0], torch.zeros(12, dtype=torch.long))
    ab0 = float(s.alpha_bar_64[0])
    torch.testing.assert_close(out.records[0][1], (out.records[0][0] - (1 - ab0) ** 0.5 * eps) / ab0**0.5,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler, variance, steps, eta, preserves", [
    ("ddpm", "small", None, 0.0, True),
    ("ddim", "large", None, 0.0, True),
    ("ddim", "large", None, 1.0, True),
    ("ddim", "large", 10, 0.0, True),  # strided: each step jumps to the next visited t (its alpha_bar, not t - 1's)
    ("ddim", "large", 10, 1.0, True),
    ("ddpm", "large", None, 0.0, False),
])
def test_exact_model_follows_the_true_marginals(sampler, variance, steps, eta, preserves):
    """With the exact eps of point-mass data, the true posterior (DDPM fixed-small, DDIM any eta and any stride)
    keeps every visited x_t distributed as q_t = N(sqrt(ab) c, (1 - ab) I); fixed-large variance over-disperses the
    middle steps."""
    s = NoiseSchedule(ScheduleConfig("linear", 100, 1e-3, 0.1))
    c = torch.tensor([0.7, -1.3])
    g = torch.Generator().manual_seed(0)
    n, T = 20_000, s.T
    ab = s.alpha_bar_64
    x_T = ab[T - 1].sqrt().float() * c + (1 - ab[T - 1]).sqrt().float() * torch.randn(n, 2, generator=g)
    worst, checked = 0.0, []
    for step in reverse_process(PointMassEps(s, c), s, x_T, sampler=sampler, variance=variance, steps=steps, eta=eta, seed=0):
        t = step.t
        zm, zv = mean_var_zscores(step.xt, ab[t].sqrt() * c.double(), (1 - ab[t]).expand(2))
        worst = max(worst, zm.abs().max().item(), zv.abs().max().item())
        checked.append(t)
    assert len(checked) == (steps or T) and checked[-1] == 0  # every step visited, down to t = 0
    if preserves:
        assert worst < 5, worst
    else:
        assert worst > 20, worst


def test_ddim_is_finite_where_float32_alpha_bar_underflows():
    s = NoiseSchedule("official")  # alpha_bar < 1e-45 for t >= ~980: zero in float32
    c = torch.tensor([0.7, -1.3])
    for steps in (1000, 100):
        out = sample(PointMassEps(s, c), s, 8, sampler="ddim", steps=steps, progress=False)
        assert torch.allclose(out.x0, c.expand(8, 2), atol=1e-4)


def test_timesteps():
    assert timesteps(5) == [4, 3, 2, 1, 0]
    assert timesteps(1000, "ddim", 1) == [999]  # one step starts from noise, not from t = 0
    assert timesteps(10, "ddim", 10) == list(range(9, -1, -1))
    assert timesteps(1000, "ddim", 10)[0] == 999 and timesteps(1000, "ddim", 10)[-1] == 0
    assert len(timesteps(1000, "ddim", 10)) == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "positive int"),
        (dict(sampler="euler"), "unknown sampler"),
        (dict(variance="medium"), "unknown variance"),
        (dict(steps=10), "use sampler='ddim'"),
        (dict(sampler="ddim", steps=0), "steps must be"),
        (dict(sampler="ddim", steps=31), "steps must be"),
        (dict(hal_window=(0, 30)), "hal_window"),
        (dict(hal_window=(5, 2)), "hal_window"),
        (dict(sampler="ddim", steps=3, hal_window=(1, 2)), "no visited timestep"),
        (dict(record_steps=[45]), "record_steps"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(eta=-1.0, sampler="ddim", steps=5), "eta"),
        (dict(eta=0.5), "eta applies"),
        (dict(eta_steps=2), "eta_steps applies"),
        (dict(start=10), "ddpm starts"),
        (dict(sampler="ddim", start=30), "start must be"),
        (dict(sampler="ddim", start=5, steps=7), "steps must be"),
        (dict(sampler="ddim", steps=5, eta=1.0, eta_steps=-1), "eta_steps must be"),
        (dict(sampler="ddim", steps=5, eta=1.0, eta_steps=2.0), "eta_steps must be"),
        (dict(sampler="ddim", steps=5, variance="small"), "variance applies"),
        (dict(clip_x0=0.0), "clip_x0"),
        (dict(clip_x0=True), "clip_x0"),
    ],
)
def test_bad_input(kwargs, match):
    s = NoiseSchedule(ScheduleConfig("linear", 30, 1e-3, 0.2))
    args = dict(n=4, progress=False) | kwargs
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        sample(_wrap(nn.Linear(2, 2)), s, n, **args)


class FarEps(nn.Module):
    """The exact eps-prediction for a point mass at 3 (outside [-1, 1])."""

    sample_shape = (2,)

    def __init__(self, schedule):
        super().__init__()
        self.inner = PointMassEps(schedule, torch.full((2,), 3.0))

    def forward(self, x, t):
        return self.inner(x, t)


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 10)])
def test_clip_x0_clamps_every_estimate_and_the_final_sample(sampler, steps):
    s = NoiseSchedule(ScheduleConfig("linear", 30, 1e-3, 0.2))
    x_T = initial_noise((6, 2), s, seed=0)
    free = list(reverse_process(FarEps(s), s, x_T, sampler=sampler, steps=steps))
    clipped = list(reverse_process(FarEps(s), s, x_T, sampler=sampler, steps=steps, clip_x0=1.0))
    assert free[-1].x_prev.mean() == pytest.approx(3.0, abs=1e-3)  # the exact model lands on its point mass
    assert all(st.x0_hat.abs().max() <= 1.0 for st in clipped)  # ... but clamped estimates stay in [-1, 1]
    assert clipped[-1].x_prev.mean() == pytest.approx(1.0, abs=0.05)
    out = sample(FarEps(s), s, 6, sampler=sampler, steps=steps, clip_x0=1.0, hal_window=(0, 5), progress=False)
    assert torch.equal(out.x0, clipped[-1].x_prev)


def test_shape_required_without_sample_shape():
    with pytest.raises(ValueError, match="shape is required"):
        sample(lambda x, t: x, NoiseSchedule(ScheduleConfig("linear", 3, 1e-3, 0.2)), 2, progress=False)


# ---------------------------------------------------------------------------------------------- fast paths
# Real torch.compile (Inductor writes and builds C++ kernels): about 10 s on 2 cores; needs a C++ compiler.
NEEDS_COMPILER = pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor needs a C++ compiler (g++) on the CPU")
FAST_SCHEDULE = ScheduleConfig("linear", 100, 1e-4, 0.2)


@pytest.fixture(scope="module")
def two_mode_model():
    """A small MLP trained on modes at -1 and +1 (sigma 0.05) with a 100-step schedule: ~3 s on one core."""
    s = NoiseSchedule(FAST_SCHEDULE)
    data = mixture_1d((-1.0, 1.0), 0.05).sample(4096, torch.Generator().manual_seed(0))[0]
    torch.manual_seed(0)
    return train(MLPDenoiser(MLPConfig(data_dim=1, width=32, time_dim=32)), data, s, TrainConfig(steps=300, batch_size=512, seed=0), progress=False).model


def test_bf16_samples_agree_with_float32_statistically(two_mode_model):
    """Same noise, network in bf16: each sample lands where its float32 twin does, up to bf16 rounding (measured:
    median gap 0.002, 99.7% within 0.05, 11 of 4,000 on the other mode), and the statistics agree."""
    s = NoiseSchedule(FAST_SCHEDULE)
    ref = sample(two_mode_model, s, 4000, seed=1, hal_window=(0, 9), progress=False)
    bf = sample(two_mode_model, s, 4000, seed=1, hal_window=(0, 9), progress=False, precision="bf16")
    a, b = ref.x0[:, 0], bf.x0[:, 0]
    assert bf.x0.dtype == torch.float32 and bf.hal.dtype == torch.float32
    assert not torch.equal(a, b)  # bf16 did run
    gap = (a - b).abs()
    assert gap.median() < 0.02 and (gap < 0.05).float().mean() > 0.97
    assert abs((a > 0).float().mean() - (b > 0).float().mean()) < 0.03
    near = lambda x: ((x.abs() - 1).abs() < 0.2).float().mean()  # noqa: E731
    assert near(a) > 0.85 and abs(near(a) - near(b)) < 0.03
    assert abs(ref.hal.median().log() - bf.hal.median().log()) < 0.5


def test_tf32_on_the_cpu_is_float32(two_mode_model):
    s = NoiseSchedule(FAST_SCHEDULE)
    ref = sample(two_mode_model, s, 50, seed=2, progress=False)
    assert torch.equal(sample(two_mode_model, s, 50, seed=2, progress=False, precision="tf32").x0, ref.x0)


def test_compiled_denoiser_is_used_and_matches(monkeypatch, two_mode_model):
    """The compile path with torch.compile's 'eager' backend (dynamo traces, nothing is code-generated): the
    wrapper compiles once per sample() call and reproduces the eager samples bitwise. A traced MLP multiplies
    with torch's linear, not through the oneDNN call eager sampling makes on the CPU (nets.Linear), so the
    eager reference here does the same."""
    monkeypatch.setattr(nets, "_ONEDNN_LINEAR", None)
    calls = []

    def fake_compile(model, mode):
        calls.append(mode)
        return torch.compile(model, backend="eager")

    monkeypatch.setattr(fast, "_compile", fake_compile)
    s = NoiseSchedule(FAST_SCHEDULE)
    ref = sample(two_mode_model, s, 20, seed=3, chunk_size=8, progress=False)
    out = sample(two_mode_model, s, 20, seed=3, chunk_size=8, progress=False, compile=True)
    assert calls == ["default"]
    assert torch.equal(out.x0, ref.x0)


def test_compile_that_cannot_work_here_is_one_clear_error(monkeypatch, two_mode_model):
    def broken(model, **kwargs):
        def run(x, t):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\n(many lines)")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    s = NoiseSchedule(FAST_SCHEDULE)
    with pytest.raises(RuntimeError, match=r"compile='default': torch\.compile cannot compile this denoiser on cpu .*CppCompileError.*pass compile=False"):
        sample(two_mode_model, s, 4, progress=False, compile=True)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: (_ for _ in ()).throw(RuntimeError("Dynamo is not supported on Python 3.99+")))
    with pytest.raises(RuntimeError, match="torch.compile is unavailable here .*Python 3.99"):
        sample(two_mode_model, s, 4, progress=False, compile=True)


def test_the_models_own_error_is_not_blamed_on_compile(monkeypatch):
    monkeypatch.setattr(fast, "_compile", lambda model, mode: torch.compile(model, backend="eager"))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        sample(MLPDenoiser(MLPConfig(data_dim=2)), NoiseSchedule(FAST_SCHEDULE), 4, shape=(3,), progress=False, compile=True)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(precision="fp8"), ValueError, "unknown precision 'fp8'"),
        (dict(precision="bfloat16"), ValueError, "unknown precision"),
        (dict(compile="fastest"), ValueError, "compile must be True, False or one of"),
        (dict(compile=1), ValueError, "compile must be"),
        (dict(compile="reduce-overhead"), RuntimeError, r"compile='reduce-overhead' \(CUDA graphs\) on cpu needs a CUDA GPU"),
        (dict(compile="max-autotune"), RuntimeError, "needs a CUDA GPU"),
    ],
)
def test_bad_fast_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample(_wrap(nn.Linear(2, 2)), NoiseSchedule(ScheduleConfig("linear", 30, 1e-3, 0.2)), 4, progress=False, **kwargs)


@NEEDS_COMPILER
def test_real_torch_compile_matches_eager(two_mode_model):
    """Inductor's generated kernels round differently from eager ones: close, not bitwise."""
    s = NoiseSchedule(FAST_SCHEDULE)
    ref = sample(two_mode_model, s, 64, seed=4, chunk_size=40, progress=False)
    out = sample(two_mode_model, s, 64, seed=4, chunk_size=40, progress=False, compile=True)
    torch.testing.assert_close(out.x0, ref.x0, rtol=1e-3, atol=1e-3)


def test_eta_steps_makes_only_the_last_steps_stochastic():
    """eta_steps=k: the trajectory is DDIM's deterministic one up to the last k noisy steps, then leaves it;
    k = 0 is eta = 0 and k >= the number of noisy steps is eta at every step, bit for bit."""
    s = NoiseSchedule(ScheduleConfig("linear", 40, 1e-3, 0.2))
    model = _wrap(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)))
    x_T = initial_noise((16, 2), s, seed=5)
    run = lambda **kw: [step.x_prev for step in reverse_process(model, s, x_T, sampler="ddim", steps=10, seed=5, **kw)]  # noqa: E731
    deterministic, everywhere = run(eta=0.0), run(eta=1.0)
    assert all(torch.equal(a, b) for a, b in zip(run(eta=1.0, eta_steps=0), deterministic))
    assert all(torch.equal(a, b) for a, b in zip(run(eta=1.0, eta_steps=9), everywhere))
    assert all(torch.equal(a, b) for a, b in zip(run(eta=1.0, eta_steps=50), everywhere))
    last3 = run(eta=1.0, eta_steps=3)  # 10 visited steps, 9 can add noise: steps 6, 7, 8 do
    assert all(torch.equal(a, b) for a, b in zip(last3[:6], deterministic[:6]))
    assert not torch.equal(last3[6], deterministic[6])


def test_ddim_start_begins_the_reverse_process_there():
    """start=s: DDIM visits steps evenly spaced timesteps from s to 0 (all s + 1 by default), from the same x_T."""
    assert timesteps(30, "ddim", 4, start=9) == [9, 6, 3, 0]
    assert timesteps(30, "ddim", start=9) == list(range(9, -1, -1))
    assert timesteps(30, "ddim", 5) == timesteps(30, "ddim", 5, start=29)
    s = NoiseSchedule(ScheduleConfig("linear", 30, 1e-3, 0.2))
    model = _wrap(nn.Linear(2, 2))
    x_T = initial_noise((16, 2), s, seed=2)
    first = next(reverse_process(model, s, x_T, sampler="ddim", steps=4, start=9, seed=2))
    assert first.t == 9 and torch.equal(first.xt, x_T)
    out = sample(model, s, 16, sampler="ddim", steps=4, start=9, seed=2, progress=False, record_steps=[9, 0])
    assert sorted(out.records) == [0, 9]
