"""Chapter 8's experiment code (mi_lib.experiments.mitigations): the Laplacian estimate, sharpening, DDIM's
start, the measurements and the CI scale's models."""

import math

import pytest
import torch

import mi_lib as mi
from mi_lib.experiments import mitigations as M
from mi_lib.storage.checkpoints import load_manifest, spec_key

SCHED = mi.NoiseSchedule(mi.OFFICIAL)


def quadratic(x, t):
    """f(x) = (x0^2 + 3 x1^2, x0 x1): Laplacians 8 and 0; the second's Hessian is all off-diagonal."""
    return torch.stack([x[:, 0] ** 2 + 3 * x[:, 1] ** 2, x[:, 0] * x[:, 1]], dim=1)


def test_fd_laplacian_is_exact_on_the_diagonal_and_hutchinson_off_it():
    x = torch.randn(4000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(4000, dtype=torch.long)
    one = M.fd_laplacian(quadratic, x, t, delta=0.1, probes=1, generator=torch.Generator().manual_seed(1))
    many = M.fd_laplacian(quadratic, x, t, delta=0.1, probes=64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one[:, 0], torch.full((4000,), 8.0, dtype=torch.float64))
    # v^T H v = 2 v0 v1 = +-2 for one sign vector; the mean of 64 shrinks as 1/sqrt(64) (E|mean| = 2 sqrt(2 / (pi m)))
    assert one[:, 1].abs().mean() == pytest.approx(2.0)
    assert many[:, 1].abs().mean() == pytest.approx(2 * math.sqrt(2 / (math.pi * 64)), rel=0.1)


def test_the_finite_difference_laplacian_of_the_exact_score_matches_autograd_where_the_score_is_smooth():
    for name in ("1d", "grid"):
        rows = M.laplacian_check(mi.make_dataset(name), SCHED, (50, 200), n=500, probes=(1,))
        assert all(r["rel_error"] < 1e-3 for r in rows), rows
    diamond = M.laplacian_check(mi.make_dataset("diamond"), SCHED, (50,), n=500, probes=(1, 16))
    assert diamond[1]["rel_error"] < 0.5 * diamond[0]["rel_error"]  # off-diagonal terms: more sign vectors help


def test_sharpening_changes_eps_only_where_asked():
    exact = mi.ExactDenoiser(mi.mixture_1d(), SCHED)
    x = torch.linspace(0.5, 3.5, 64, dtype=torch.float64)[:, None]
    t = mi.shared_timestep(20, 64, "cpu")
    torch.testing.assert_close(M.SharpenedDenoiser(exact, 0.0, delta=0.02)(x, t), exact(x, t), rtol=0, atol=0)
    torch.testing.assert_close(M.SharpenedDenoiser(exact, 1e-3, delta=0.02, t_max=10)(x, t), exact(x, t), rtol=0, atol=0)
    sharpened = M.SharpenedDenoiser(exact, 1e-3, delta=0.02)(x, t)
    expected = exact(x, t) - 1e-3 * M.exact_eps_laplacian(exact.mixture, SCHED, x, 20)
    torch.testing.assert_close(sharpened, expected, rtol=0.02, atol=1e-3 * float(expected.abs().max()))
    for bad in (dict(alpha=-1.0), dict(alpha=float("nan")), dict(delta=0.0), dict(probes=0), dict(probes=True)):
        kwargs = dict(alpha=1e-3, delta=0.02) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):  # the message names the bad argument
            M.SharpenedDenoiser(exact, **kwargs)


def test_ddim_started_at_t_999_of_the_official_schedule_blows_up_and_from_ddim_start_it_does_not():
    start = M.ddim_start(SCHED)
    assert SCHED.alpha_bar_64[start] >= M.DDIM_START_ALPHA_BAR > SCHED.alpha_bar_64[start + 1]
    grid = M.SCALES["ci"].specs["grid"]
    model = mi.mixture_model(grid, mi.Settings(progress=False)).model
    from_999 = mi.sample(model, SCHED, 64, sampler="ddim", steps=25, seed=0, progress=False).x0
    from_start = mi.sample(model, SCHED, 64, sampler="ddim", steps=25, start=start, seed=0, progress=False).x0
    assert not torch.isfinite(from_999).all()
    assert torch.isfinite(from_start).all() and from_start.abs().max() < 3


def test_measure_on_true_samples():
    mixture = mi.grid_2d()
    x, _ = mixture.sample(20_000, torch.Generator().manual_seed(0))
    row = M.measure(x, torch.rand(20_000, generator=torch.Generator().manual_seed(1)), mixture)
    assert row["rate_lo"] <= mi.out_of_support_mass(mixture) <= row["rate_hi"]
    assert 0.9 < row["mode_spread"] < 1.0 and row["mode_tv"] < 0.03
    assert row["hallucinated"] == int(mi.out_of_support(x, mixture).sum()) > 0  # a few beyond 4 sigma: AUROC defined
    assert 0.2 < row["hal_auroc"] < 0.8  # a random score on true samples: chance, within a few samples' noise
    # a score that is the label's own rule ranks perfectly, its negative perfectly wrong: the AUROC's orientation
    distance = torch.cdist(x.double(), mixture.means.double()).min(1).values
    assert M.measure(x, distance, mixture)["hal_auroc"] == 1.0
    assert M.measure(x, -distance, mixture)["hal_auroc"] == 0.0


def test_the_ci_scale_samples_shipped_models_only():
    """CI never trains: every model the CI scale samples is in data/checkpoints."""
    shipped = {e["spec_key"] for e in load_manifest()}
    specs = {m.spec for ds in ("grid", "1d") for m in M.methods(M.SCALES["ci"], ds)}
    assert len(specs) == 10  # grid, 1D, four training baselines, three VSM weights and a second VSM seed
    assert all(spec_key(s) in shipped for s in specs)


def test_methods_and_their_cost():
    ci = M.SCALES["ci"]
    grid = M.methods(ci, "grid")
    assert grid[0].name == "DDPM, 1000 steps" and grid[0].nfe() == 1000 and grid[0].hal_window() == (0, 9)
    ddim = next(m for m in grid if m.name == "DDIM eta=0, 25 steps")
    assert ddim.nfe() == 25 and ddim.visited()[0] == M.ddim_start(SCHED) and ddim.hal_window()[1] == ddim.visited()[-10]
    sharp = next(m for m in grid if m.family == "sharpening")
    assert sharp.nfe() == 1000 + 2 * sharp.probes * (M.ddim_start(SCHED) + 1)
    assert {m.family for m in M.methods(ci, "1d")} == {"sampler", "training"}
    with pytest.raises(ValueError, match="dataset"):
        M.methods(ci, "diamond")
    with pytest.raises(ValueError, match="family"):
        M.Method("x", "magic", ci.specs["grid"])


def test_run_method_is_cached(tmp_path, monkeypatch):
    method, run = M.Method("DDIM", "sampler", M.SCALES["ci"].specs["1d"], "ddim", 10), mi.Settings(progress=False, cache_dir=tmp_path)
    first = M.run_method(method, 64, settings=run)
    monkeypatch.setattr(M, "sample", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("sampled again")))
    again = M.run_method(method, 64, settings=run)
    assert torch.equal(first["x0"], again["x0"]) and first["rate"] == again["rate"]


def test_a_run_is_keyed_by_the_code_that_computes_it_not_by_the_chapters_tables(monkeypatch):
    key = M._run_source()
    monkeypatch.setattr(M, "print_board", lambda board, s: None)  # a table or a figure: reruns nothing
    monkeypatch.setattr(M, "plot_board", lambda axes, board: None)
    assert M._run_source() == key
    monkeypatch.setattr(M, "measure", lambda x0, hal, mixture, k=4.0: {})  # the measurement: reruns
    assert M._run_source() != key
    monkeypatch.undo()
    monkeypatch.setattr(M, "DDIM_START_ALPHA_BAR", 1e-4)  # where DDIM starts: reruns
    assert M._run_source() != key

