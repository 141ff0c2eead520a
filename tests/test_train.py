import shutil

import pytest
import torch

import mi_lib as mi
from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, ScheduleConfig, TrainConfig, diffusion_loss, mixture_1d, train
from mi_lib.diffusion import fast

SMALL = MLPConfig(data_dim=1, width=32, time_dim=32)


def _data():
    m = mixture_1d((-1.0, 1.0), 0.05)
    return m.sample(4096, torch.Generator().manual_seed(0))[0]


def test_training_lowers_the_loss_on_two_modes():
    torch.manual_seed(0)
    result = train(MLPDenoiser(SMALL), _data(), NoiseSchedule("official"), TrainConfig(steps=400, batch_size=512, seed=0), progress=False)
    first, last = result.losses[:20].mean().item(), result.losses[-50:].mean().item()
    assert result.losses.shape == (400,)
    assert last < 0.5 * first
    assert not result.model.training


def test_training_is_deterministic_and_ema_lags():
    s = NoiseSchedule("official")
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # same init
        runs.append(train(MLPDenoiser(SMALL), _data(), s, TrainConfig(steps=30, batch_size=256, seed=7, ema_decay=0.9), progress=False))
    assert torch.equal(runs[0].losses, runs[1].losses)
    ema, model = runs[0].ema_model, runs[0].model
    diffs = [(pe - p).abs().max().item() for pe, p in zip(ema.parameters(), model.parameters())]
    assert max(diffs) > 0  # EMA is not the live model
    assert all(torch.isfinite(p).all() for p in ema.parameters())


def test_ema_update_rule():
    """After one step the EMA is decay * init + (1 - decay) * model."""
    torch.manual_seed(0)
    net = MLPDenoiser(SMALL)
    init = [p.detach().clone() for p in net.parameters()]
    r = train(net, _data(), NoiseSchedule("official"), TrainConfig(steps=1, batch_size=256, ema_decay=0.9), progress=False)
    for p0, p, pe in zip(init, r.model.parameters(), r.ema_model.parameters()):
        assert torch.allclose(pe, 0.9 * p0 + 0.1 * p, atol=1e-6)


def test_loss_is_per_sample():
    s = NoiseSchedule("official")
    net = MLPDenoiser(SMALL)
    x0 = torch.randn(8, 1)
    t, eps = torch.arange(8), torch.randn(8, 1)
    loss = diffusion_loss(net, s, x0, t, eps)
    assert loss.shape == (8,)
    x2, eps2 = torch.randn(8, 2), torch.randn(8, 2)  # two dimensions: the mean over them, per sample
    net2 = MLPDenoiser(MLPConfig(data_dim=2, width=16, time_dim=16))
    with torch.no_grad():
        expected = ((net2(s.q_sample(x2, t, eps2), t) - eps2) ** 2).mean(1)
    torch.testing.assert_close(diffusion_loss(net2, s, x2, t, eps2).detach(), expected)


@pytest.mark.parametrize(
    "data, error, match",
    [(torch.zeros(10), ValueError, "data must be a tensor of shape"),
     (torch.zeros(10, 1, dtype=torch.long), TypeError, "data must be floating point"),
     ([[0.0]], ValueError, "data must be a tensor of shape")],
)
def test_bad_data(data, error, match):
    with pytest.raises(error, match=match):
        train(MLPDenoiser(SMALL), data, NoiseSchedule(ScheduleConfig("linear", 10, 1e-3, 0.2)), TrainConfig(steps=1), progress=False)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(batch_size=-1), dict(lr=0.0), dict(ema_decay=1.0)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match=f"TrainConfig.{next(iter(kwargs))} must"):
        TrainConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- fast paths
# Real torch.compile (Inductor writes and builds C++ kernels): about 10 s on 2 cores; needs a C++ compiler.
NEEDS_COMPILER = pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor needs a C++ compiler (g++) on the CPU")


def _run(steps=30, **options):
    torch.manual_seed(123)  # same init
    return train(MLPDenoiser(SMALL), _data(), NoiseSchedule("official"), TrainConfig(steps=steps, batch_size=256, seed=7), progress=False, **options)


def test_cpu_fallbacks_are_the_reference_bitwise():
    """fused=True and precision='tf32' are GPU fast paths; on the CPU they are the default Adam and float32."""
    ref = _run()
    for options in (dict(precision="float32", compile=False, fused=False), dict(fused=True), dict(precision="tf32")):
        other = _run(**options)
        assert torch.equal(other.losses, ref.losses), options
        assert all(torch.equal(p, q) for p, q in zip(other.model.parameters(), ref.model.parameters())), options


def test_bf16_training_tracks_float32():
    """bf16 autocast in the forward pass: same data, same draws, losses within bf16 rounding of float32's
    (measured: first 20 steps within 0.4%, mean of the last 100 within 0.2%), weights stay float32."""
    ref, bf = _run(steps=200), _run(steps=200, precision="bf16")
    assert not torch.equal(bf.losses, ref.losses)  # autocast did run
    assert all(p.dtype == torch.float32 for p in bf.model.parameters())
    torch.testing.assert_close(bf.losses[:20], ref.losses[:20], rtol=0.02, atol=0.0)
    assert abs(bf.losses[-100:].mean() / ref.losses[-100:].mean() - 1) < 0.03


def test_compile_path_reproduces_eager_training(monkeypatch):
    """torch.compile's 'eager' backend (dynamo traces, nothing is code-generated) gives the eager losses bitwise."""
    monkeypatch.setattr(fast, "_compile", lambda model, mode: torch.compile(model, backend="eager"))
    ref, compiled = _run(steps=10), _run(steps=10, compile=True)
    assert torch.equal(compiled.losses, ref.losses)


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(precision="half"), ValueError, "unknown precision 'half'"),
        (dict(compile="turbo"), ValueError, "compile must be True, False or one of"),
        (dict(compile="reduce-overhead"), RuntimeError, "needs a CUDA GPU"),
        (dict(graph=True), RuntimeError, "needs a CUDA GPU"),
        (dict(graph=True, compile=True), ValueError, "does not combine with compile"),
        (dict(graph=1), TypeError, "graph must be a bool"),
    ],
)
def test_bad_fast_options(options, error, match):
    with pytest.raises(error, match=match):
        _run(steps=1, **options)


@NEEDS_COMPILER
def test_real_torch_compile_trains_like_eager():
    ref, compiled = _run(steps=20), _run(steps=20, compile=True)
    torch.testing.assert_close(compiled.losses, ref.losses, rtol=1e-3, atol=1e-5)


def _fresh_model():
    torch.manual_seed(123)
    return MLPDenoiser(SMALL)


def test_an_interrupted_training_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Cut a training off mid-way (an error in optimizer step 23, as a time limit would), start it again with
    the same resume file: weights, EMA and every loss equal an uninterrupted run's, and the file is gone.
    Steps 16 and 32 start new epochs (batch 256 of 4,096), so the saved data order is exercised too."""
    s, config = NoiseSchedule("official"), TrainConfig(steps=40, batch_size=256, seed=7, ema_decay=0.9)
    whole = train(_fresh_model(), _data(), s, config, progress=False)
    state = tmp_path / "state.partial.pt"
    real_step, calls = torch.optim.Adam.step, []

    def failing_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 24:
            raise KeyboardInterrupt("time limit")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        train(_fresh_model(), _data(), s, config, progress=False, resume=state, save_every_s=0)
    assert state.exists() and torch.load(state, weights_only=True)["step"] == 23
    calls.clear()
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (calls.append(1), real_step(self, *a, **k))[1])
    resumed = train(_fresh_model(), _data(), s, config, progress=False, resume=state, save_every_s=0)
    assert len(calls) == 40 - 23  # it went on from step 23, not from the start
    assert torch.equal(resumed.losses, whole.losses)
    for a, b in [(resumed.model, whole.model), (resumed.ema_model, whole.ema_model)]:
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # the final state stays until the caller has stored the result: resuming it returns the model at once
    assert torch.load(state, weights_only=True)["step"] == 40
    again = train(_fresh_model(), _data(), s, config, progress=False, resume=state)
    assert len(calls) == 40 - 23 and torch.equal(again.losses, whole.losses)
    assert all(torch.equal(p, q) for p, q in zip(again.model.state_dict().values(), whole.model.state_dict().values()))


def test_a_short_training_writes_no_state(tmp_path):
    state = tmp_path / "state.partial.pt"
    train(_fresh_model(), _data(), NoiseSchedule("official"), TrainConfig(steps=5, batch_size=256), progress=False, resume=state)
    assert not state.exists()  # never saved (under save_every_s), so nothing to remove afterwards


def test_a_resume_file_of_another_training_is_refused(tmp_path, monkeypatch):
    s, state = NoiseSchedule("official"), tmp_path / "state.partial.pt"
    real_step, calls = torch.optim.Adam.step, []

    def failing_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        train(_fresh_model(), _data(), s, TrainConfig(steps=10, batch_size=256), progress=False, resume=state, save_every_s=0)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    others = [dict(config=TrainConfig(steps=10, batch_size=256, lr=2e-3)), dict(data=_data().flip(0)),  # same sums, other order
              dict(schedule=NoiseSchedule("standard")), dict(model=MLPDenoiser(SMALL))]  # other initial weights
    for other in others:
        with pytest.raises(ValueError, match="another training"):
            train(other.get("model", _fresh_model()), other.get("data", _data()), other.get("schedule", s),
                  other.get("config", TrainConfig(steps=10, batch_size=256)), progress=False, resume=state)
    with pytest.raises(ValueError, match="save_every_s"):
        train(_fresh_model(), _data(), s, TrainConfig(steps=2), progress=False, save_every_s=-1)


# ------------------------------------------------------------------------------------------ train_many
def _many_setup(steps: int):
    mix = mixture_1d((-1.0, 1.0), 0.05)
    datas = [mix.sample(n, torch.Generator().manual_seed(i))[0] for i, n in enumerate((1500, 2000, 2600))]  # epochs of 3, 4, 5 steps
    configs = [TrainConfig(steps=steps, batch_size=500, seed=s, ema_decay=0.99) for s in (3, 4, 5)]
    return datas, configs


def _fresh(i: int) -> MLPDenoiser:
    torch.manual_seed(10 + i)
    return MLPDenoiser(SMALL)


def _close(a, b, rtol):
    return max(float(((p - q).abs().max() / p.abs().max())) for p, q in zip(a.state_dict().values(), b.state_dict().values())) <= rtol


def test_train_many_gives_each_model_its_solo_training():
    """Three models of different N (epochs of 3, 4 and 5 steps), seeds and initial weights, trained as one
    stacked network: each gets its own draws (its first 20 losses equal its solo run's to 1e-6: a mixed-up
    data set, order, t, noise or initial weight would show at step 0), and after 25 steps its weights and EMA
    equal its solo run's to 1e-5. Later the batched matrix product's last-bit rounding is amplified by
    training itself (measured: within 5.2e-4 of the solo losses after 200 steps, bar 2e-3)."""
    s = NoiseSchedule("official")
    for steps, loss_tol in ((25, 1e-6), (200, 2e-3)):
        datas, configs = _many_setup(steps)
        solo = [train(_fresh(i), datas[i], s, configs[i], progress=False) for i in range(3)]
        many = mi.train_many([_fresh(i) for i in range(3)], datas, s, configs, progress=False)
        for a, b in zip(solo, many):
            torch.testing.assert_close(b.losses[:20], a.losses[:20], rtol=1e-6, atol=0)
            assert float(((a.losses - b.losses).abs() / a.losses).max()) <= loss_tol
            if steps == 25:
                assert _close(a.model, b.model, 1e-5) and _close(a.ema_model, b.ema_model, 1e-5)
            assert not b.model.training and b.losses.shape == (steps,)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(configs=[TrainConfig(steps=5, batch_size=500), TrainConfig(steps=6, batch_size=500)]), ValueError, "share steps"),
    (dict(configs=[TrainConfig(steps=5, batch_size=500, lr=1e-3), TrainConfig(steps=5, batch_size=500, lr=2e-3)]), ValueError, "share lr"),
    (dict(datas=[torch.zeros(600, 1), torch.zeros(400, 1)]), ValueError, "batches of one size"),
    (dict(models=[MLPDenoiser(SMALL), MLPDenoiser(MLPConfig(data_dim=1, width=16, time_dim=16))]), ValueError, "one architecture"),
    (dict(datas=[torch.zeros(600, 1)]), ValueError, "as many data sets as models"),
    (dict(graph=True), RuntimeError, "needs a CUDA GPU"),
])
def test_train_many_refuses_what_it_cannot_stack(kwargs, error, match):
    args = dict(models=[MLPDenoiser(SMALL), MLPDenoiser(SMALL)], datas=[torch.zeros(600, 1), torch.zeros(700, 1)],
                configs=TrainConfig(steps=5, batch_size=500))
    args.update(kwargs)
    options = {k: args.pop(k) for k in ("graph",) if k in args}
    with pytest.raises(error, match=match):
        mi.train_many(args["models"], args["datas"], NoiseSchedule("official"), args["configs"], progress=False, **options)


# ------------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data_is_refused_before_training(bad):
    data = _data().clone()
    data[[3, 70, 71]] = bad
    for call in (lambda: train(MLPDenoiser(SMALL), data, NoiseSchedule("official"), TrainConfig(steps=5, batch_size=256), progress=False),
                 lambda: mi.train_many([MLPDenoiser(SMALL)] * 2, [_data(), data], NoiseSchedule("official"), TrainConfig(steps=5, batch_size=256),
                                       progress=False)):
        with pytest.raises(ValueError, match="3 non-finite values"):
            call()


class _Diverging(torch.nn.Module):
    """A denoiser that returns NaN from its ``at``-th call on."""

    def __init__(self, at: int):
        super().__init__()
        self.net, self.calls, self.at = MLPDenoiser(SMALL), 0, at

    def forward(self, x, t):
        self.calls += 1
        eps = self.net(x, t)
        return eps * float("nan") if self.calls > self.at else eps


def test_a_diverging_training_stops_naming_the_step():
    with pytest.raises(mi.NonFiniteLoss, match=r"loss is nan at step 150 \(the last finite loss, [0-9.]+, at step 149\)"):
        train(_Diverging(150), _data(), NoiseSchedule("official"), TrainConfig(steps=300, batch_size=256), progress=False)
    with pytest.raises(mi.NonFiniteLoss, match="at step 0 .no finite loss before it."):
        train(MLPDenoiser(SMALL), _data() * 1e30, NoiseSchedule("official"), TrainConfig(steps=3, batch_size=256), progress=False)


def test_a_diverged_model_is_not_cached(tmp_path, monkeypatch):
    spec = mi.MixtureModelSpec("1d", n_train=64, sigma=1e30, model=MLPConfig(width=16, time_dim=16),
                               train=TrainConfig(steps=3, batch_size=32), schedule=ScheduleConfig("linear", 20, 1e-3, 0.2))
    with pytest.raises(mi.NonFiniteLoss):
        mi.mixture_model(spec, mi.Settings(progress=False, cache_dir=tmp_path), checkpoints=None)
    assert not list(tmp_path.glob("*.pt"))


def test_an_unreadable_training_state_is_reported_and_training_starts_over(tmp_path):
    state = tmp_path / "state.partial.pt"
    state.write_bytes(b"PK\x03\x04 a copy cut short")
    s, config = NoiseSchedule("official"), TrainConfig(steps=20, batch_size=256)
    with pytest.warns(UserWarning, match=f"{state.name}: this training state cannot be read"):
        out = train(_fresh_model(), _data(), s, config, progress=False, resume=state)
    assert torch.equal(out.losses, train(_fresh_model(), _data(), s, config, progress=False).losses)
