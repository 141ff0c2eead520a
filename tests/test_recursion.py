"""Recursive training (mi_lib.experiments.recursion): seeds, filters, caching, inputs, and the mixture report on hand-built
points. Tiny networks and a 20-step schedule keep every test to a few seconds on one CPU core."""

import copy
import dataclasses
import math

import pytest
import torch

from mi_lib.experiments import recursion
from mi_lib.datasets.mixtures import GaussianMixture, grid_2d
from mi_lib.measure.metrics import mixture_report, out_of_support_mass, true_cell_mass
from mi_lib.diffusion.models import IMAGE_CLIP_X0, ImageModelSpec, MixtureModelSpec
from mi_lib.diffusion.nets import MLPConfig
from mi_lib.experiments.recursion import (
    RecursionConfig,
    generation_seeds,
    recursive_training,
    select,
)
from mi_lib.diffusion.schedule import ScheduleConfig
from mi_lib.settings import Settings
from mi_lib.diffusion.train import TrainConfig
from mi_lib.diffusion.unet import UNetConfig, UNetDenoiser

TINY = RecursionConfig(
    generations=2,
    n_keep=48,
    oversample=1.5,  # 72 candidates
    filter="hal",
    hal_window=(0, 4),
    model=MLPConfig(data_dim=2, width=16, depth=1, time_dim=16),
    train=TrainConfig(steps=15, batch_size=32),
    schedule=ScheduleConfig("linear", 20, 1e-3, 0.2),
)
MIX = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], 0.1, name="two")


@pytest.fixture
def data() -> torch.Tensor:
    return MIX.sample(64, torch.Generator().manual_seed(0), stratified=True)[0]


_SETTINGS = [Settings(progress=False)]  # the current test's (the autouse fixture below sets it)


@pytest.fixture(autouse=True)
def cache(tmp_path):
    """Every run of a test is cached in its own folder."""
    _SETTINGS[0] = Settings(progress=False, cache_dir=tmp_path / "cache")
    return tmp_path / "cache"


def _run(data, config=TINY, settings=None, **kw):
    return recursive_training(data, config, settings or _SETTINGS[0], mixture=MIX, **kw)


def _same(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_same_config_gives_identical_results_bit_for_bit(data, tmp_path, monkeypatch):
    first = _run(data)
    second = _run(data, settings=Settings(progress=False, cache_dir=tmp_path / "other"))  # everything from scratch
    assert [g.source for g in second.generations] == ["trained", "trained"]
    for a, b in zip(first.generations, second.generations):
        assert _same(a.candidates, b.candidates) and _same(a.hal, b.hal) and _same(a.kept, b.kept)
        assert _same(a.losses, b.losses)
        for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
            assert ka == kb and _same(va, vb)
    # a different seed changes the run
    other = _run(data, TINY.replace(seed=1))
    assert not _same(other.generations[0].candidates, first.generations[0].candidates)


def test_filters_share_seeds_and_generation_zero(data):
    runs = {f: _run(data, TINY.replace(filter=f)) for f in ("none", "random", "hal")}
    g0 = [r.generations[0] for r in runs.values()]
    assert len({g.model_key for g in g0}) == 1 and len({g.samples_key for g in g0}) == 1
    for g in g0[1:]:
        assert _same(g.candidates, g0[0].candidates)
        for va, vb in zip(g.model.state_dict().values(), g0[0].model.state_dict().values()):
            assert _same(va, vb)
    for gen in range(TINY.generations):
        assert len({r.generations[gen].seeds for r in runs.values()}) == 1
    # from generation 1 on the training sets differ, so the models do
    g1 = [r.generations[1] for r in runs.values()]
    assert len({g.model_key for g in g1}) == 3
    assert not _same(g1[0].candidates, g1[2].candidates)


def test_generation_seeds_are_fixed_and_distinct():
    s = generation_seeds(0, 0)
    assert s == generation_seeds(0, 0)
    assert len({s.train, s.sample, s.filter}) == 3
    assert generation_seeds(0, 1) != s and generation_seeds(1, 0) != s
    assert all(0 <= v < 2**62 for v in dataclasses.astuple(s))


def test_hal_filter_keeps_exactly_the_lowest_hal(data):
    g = _run(data).generations[0]
    assert g.kept.shape == (TINY.n_keep,) and g.candidates.shape == (TINY.n_candidates, 2) == (72, 2)
    dropped = torch.ones(TINY.n_candidates, dtype=torch.bool)
    dropped[g.kept] = False
    assert g.hal[g.kept].max() <= g.hal[dropped].min()
    assert set(g.kept.tolist()) == set(torch.argsort(g.hal)[: TINY.n_keep].tolist())
    assert _same(g.kept_x0, g.candidates[g.kept])


def test_select_rules_by_hand():
    hal = torch.tensor([0.5, 0.1, 0.3, 0.1, 0.9])
    assert select(hal, 3, "hal").tolist() == [1, 2, 3]
    assert select(hal, 2, "hal").tolist() == [1, 3]  # tie at 0.1: both kept
    assert select(hal, 3, "none").tolist() == [0, 1, 2]
    r = select(torch.zeros(1000), 600, "random", seed=5)
    assert r.shape == (600,) and r.unique().numel() == 600 and bool((r[1:] > r[:-1]).all())
    assert 0 <= int(r.min()) and int(r.max()) < 1000
    assert _same(r, select(torch.zeros(1000), 600, "random", seed=5))
    assert not _same(r, select(torch.zeros(1000), 600, "random", seed=6))
    # random does not look at Hal: ~40% of the 400 highest-Hal candidates are kept
    high = (select(torch.arange(1000.0), 600, "random", seed=5) >= 600).sum()
    assert 200 < int(high) < 280


def test_random_filter_keeps_n_keep_distinct_candidates(data):
    g = _run(data, TINY.replace(filter="random")).generations[0]
    assert g.kept.unique().numel() == TINY.n_keep
    assert not _same(g.kept, torch.arange(TINY.n_keep))
    none = _run(data, TINY.replace(filter="none")).generations[0]
    assert _same(none.kept, torch.arange(TINY.n_keep)) and _same(none.samples, none.kept_x0)


def test_cache_reuses_models_and_extending_generations_trains_only_the_new_ones(data, monkeypatch):
    calls = []
    real_train = recursion.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(recursion, "train", counting_train)
    first = _run(data)
    assert len(calls) == 2
    again = _run(data)
    assert len(calls) == 2 and [g.source for g in again.generations] == ["cached", "cached"]
    assert all(g.samples_cached for g in again.generations)
    assert _same(again.generations[1].candidates, first.generations[1].candidates)
    longer = _run(data, TINY.replace(generations=3))
    assert len(calls) == 3 and [g.source for g in longer.generations] == ["cached", "cached", "trained"]
    # another filter reuses generation 0 only
    _run(data, TINY.replace(filter="random"))
    assert len(calls) == 4


def _redraw_differently(cache, monkeypatch, keys=None):
    """A later session: candidate sets are gone (all, or those of ``keys``: sample sets are carried between
    sessions only when there is room) and drawing them again does not give the same bits (a last-place change,
    as another GPU or kernel choice could)."""
    for path in cache.glob("recursion-samples-*.pt") if keys is None else [cache / f"{key}.pt" for key in keys]:
        path.unlink()
    real_sample = recursion.sample

    def nudged(*args, **kwargs):
        out = real_sample(*args, **kwargs)
        out.x0 = torch.nextafter(out.x0, torch.full_like(out.x0, math.inf))
        return out

    monkeypatch.setattr(recursion, "sample", nudged)


def test_a_model_cached_from_another_draw_of_its_data_is_trained_again(data, cache, monkeypatch):
    first = _run(data)
    _redraw_differently(cache, monkeypatch)
    with pytest.warns(UserWarning, match="generation 1: the cached model was trained on another draw"):
        again = _run(data)
    assert [g.source for g in again.generations] == ["cached", "trained"]
    assert again.generations[1].model_key == first.generations[1].model_key  # same provenance, other bits
    assert not _same(again.generations[1].candidates, first.generations[1].candidates)
    assert [g.source for g in _run(data).generations] == ["cached", "cached"]  # now stored for this draw


def test_a_generation_trained_again_draws_its_own_candidates(data, cache, monkeypatch):
    """Generation 0's candidates drawn again and different, while generation 1's are still cached (a session
    that brought back some sample sets): generation 1's model is trained again, so its candidates must be drawn
    from that model, not taken from the old model's cached draw, and generation 2 must follow."""
    first = _run(data, TINY.replace(generations=3))
    _redraw_differently(cache, monkeypatch, keys=[first.generations[0].samples_key])  # only generation 0's set is gone
    with pytest.warns(UserWarning, match="generation 1: the cached model was trained on another draw"):
        again = _run(data, TINY.replace(generations=3))
    assert [g.source for g in again.generations] == ["cached", "trained", "trained"]
    assert not any(g.samples_cached for g in again.generations[1:])
    assert again.generations[1].samples_key != first.generations[1].samples_key


def test_a_training_state_saved_on_another_draw_starts_over(data, cache, monkeypatch):
    """A training cut off in one session, its data drawn again (and different) in the next: the saved state
    cannot be resumed, so that generation trains from the start instead of failing in every later session."""
    calls = []
    real_train = recursion.train

    def spy(model, *args, **kwargs):
        calls.append((copy.deepcopy(model), args, kwargs))
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(recursion, "train", spy)
    first = _run(data)
    model, args, kwargs = calls[1]  # generation 1, on the first draw of generation 0's candidates
    real_train(model, *args, **{**kwargs, "save_every_s": 0.0})  # leaves its (final) state, as a cut-off run would
    state = kwargs["resume"]
    assert state.exists()
    (cache / f"{first.generations[1].model_key}.pt").unlink()  # generation 1's model was never stored
    _redraw_differently(cache, monkeypatch)
    monkeypatch.setattr(recursion, "train", real_train)
    with pytest.warns(UserWarning, match="generation 1: its training data were drawn again"):
        again = _run(data)
    assert [g.source for g in again.generations] == ["cached", "trained"] and not state.exists()


def test_upstream_changes_invalidate_downstream(data):
    base = _run(data)
    changed_data = _run(data + 0.001)
    assert all(a.model_key != b.model_key for a, b in zip(base.generations, changed_data.generations))
    changed_window = _run(data, TINY.replace(hal_window=(0, 3)))
    g0, g1 = changed_window.generations
    assert g0.model_key == base.generations[0].model_key and g0.source == "cached"  # the model does not use it
    assert g0.samples_key != base.generations[0].samples_key and g1.model_key != base.generations[1].model_key


def test_warm_start_starts_from_the_previous_generation(data, monkeypatch):
    seen = []
    real_train = recursion.train

    def spy(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(recursion, "train", spy)
    run = _run(data, TINY.replace(warm_start=True))
    g0 = run.generations[0].model.state_dict()
    assert all(_same(seen[1][k], g0[k]) for k in g0)
    scratch = _run(data, TINY.replace(warm_start=False))
    assert scratch.generations[0].model_key == run.generations[0].model_key
    assert scratch.generations[1].model_key != run.generations[1].model_key
    assert not all(_same(seen[-1][k], g0[k]) for k in g0)


def test_train_0_trains_generation_zero_only(data):
    """A long generation 0 on real data, short later ones; a spec carries its own training, so train_0 with a
    spec is an error."""
    run = _run(data, TINY.replace(train_0=TrainConfig(steps=25, batch_size=32), warm_start=True))
    assert [g.losses.shape[0] for g in run.generations] == [25, 15]
    plain = _run(data, TINY.replace(warm_start=True))
    assert [g.losses.shape[0] for g in plain.generations] == [15, 15]
    assert run.generations[0].model_key != plain.generations[0].model_key
    spec = MixtureModelSpec("grid", n_train=64, model=TINY.model, train=TrainConfig(steps=10, batch_size=32), schedule=TINY.schedule)
    with pytest.raises(ValueError, match="train_0"):
        recursive_training(spec, TINY.replace(train_0=TrainConfig(steps=5)), _SETTINGS[0])
    with pytest.raises(TypeError, match="train_0"):
        TINY.replace(train_0={"steps": 5})


def test_with_ema_a_generation_is_its_ema_weights_and_no_resume_file_is_left(data, monkeypatch, cache):
    results = []
    real_train = recursion.train

    def spy(*args, **kwargs):
        assert kwargs["resume"].name.endswith(".partial.pt") and kwargs["resume"].parent == cache
        results.append(real_train(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(recursion, "train", spy)
    run = _run(data, TINY.replace(train=TrainConfig(steps=15, batch_size=32, ema_decay=0.8), warm_start=True))
    assert len(results) == len(run.generations) == 2
    for g, result in zip(run.generations, results):
        ema, live = result.ema_model.state_dict(), result.model.state_dict()
        kept = g.model.state_dict()
        assert all(torch.equal(kept[k], ema[k].cpu()) for k in kept) and not all(torch.equal(kept[k], live[k]) for k in kept)
    assert not list(cache.glob("*.partial.pt"))


def test_generation_zero_from_a_spec_uses_mixture_model(monkeypatch):
    spec = MixtureModelSpec("grid", n_train=64, model=TINY.model, train=TrainConfig(steps=10, batch_size=32), schedule=TINY.schedule)
    run = recursive_training(spec, TINY.replace(generations=1), _SETTINGS[0])
    g = run.generations[0]
    assert g.source == "trained" and g.losses.shape == (10,)
    assert g.report is not None and g.report["n"] == TINY.n_keep  # the spec's mixture is measured
    with pytest.raises(ValueError, match="config.model"):
        recursive_training(spec, TINY.replace(model=MLPConfig(data_dim=2, width=8)), _SETTINGS[0])


TINY_UNET = UNetConfig(base_channels=8, channel_mults=(1, 2), blocks_per_level=1, time_dim=16, patch=4)
TINY_IMAGES = TINY.replace(n_keep=8, oversample=1.5, model=TINY_UNET, train=TrainConfig(steps=3, batch_size=4), clip_x0=IMAGE_CLIP_X0)


def test_images_recurse_through_a_unet_with_the_clamp():
    spec = ImageModelSpec("shapes", n_train=16, model=TINY_UNET, train=TrainConfig(steps=3, batch_size=8), schedule=TINY.schedule)
    runs = {f: recursive_training(spec, TINY_IMAGES.replace(filter=f), _SETTINGS[0]) for f in ("none", "hal")}
    for run in runs.values():
        assert len(run.generations) == 2 and run.generations[0].source == "trained"
        for g in run.generations:
            assert isinstance(g.model, UNetDenoiser) and g.candidates.shape == (12, 1, 64, 64)
            assert g.kept_x0.shape == (8, 1, 64, 64) and g.report is None
            assert float(g.candidates.abs().max()) <= 1.0 + 1e-5  # the clamped x0_hat keeps the last step in range
    assert _same(runs["none"].generations[0].candidates, runs["hal"].generations[0].candidates)  # shared generation 0
    assert not _same(runs["none"].generations[1].candidates, runs["hal"].generations[1].candidates)
    unclamped = recursive_training(spec, TINY_IMAGES.replace(generations=1, clip_x0=None), _SETTINGS[0])
    assert unclamped.generations[0].samples_key != runs["none"].generations[0].samples_key
    # from a tensor of images, too; a tensor of the wrong shape and mixture measurements on images are clear errors
    images = spec.training_data()
    assert recursive_training(images, TINY_IMAGES.replace(generations=1), _SETTINGS[0]).generations[0].losses.shape == (3,)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 64, 64\)"):
        recursive_training(images[:, :, :32], TINY_IMAGES, _SETTINGS[0])
    with pytest.raises(ValueError, match="vector samples"):
        recursive_training(images, TINY_IMAGES, _SETTINGS[0], mixture=MIX)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"filter": "variance"}, "unknown filter"),
        ({"generations": 0}, "generations must be a positive int"),
        ({"n_keep": 0}, "n_keep must be a positive int"),
        ({"oversample": 0.9}, "oversample must be a finite number >= 1"),
        ({"oversample": math.inf}, "oversample must be a finite number >= 1"),
        ({"hal_window": (5, 2)}, "hal_window"),
        ({"hal_window": (0, 20)}, "hal_window"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"clip_x0": 0.0}, "clip_x0 must be a positive number or None"),
    ],
)
def test_bad_config_gives_one_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_bad_inputs(data):
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        recursive_training(data[:, :1], TINY, _SETTINGS[0])
    with pytest.raises(TypeError, match="RecursionConfig"):
        recursive_training(data, {"generations": 2}, _SETTINGS[0])
    with pytest.raises(TypeError, match="an MLPConfig or a UNetConfig"):
        TINY.replace(model={"width": 16})
    with pytest.raises(ValueError, match="n_keep must be in"):
        select(torch.zeros(3), 4, "hal")
    with pytest.raises(ValueError, match="unknown filter"):
        select(torch.zeros(3), 2, "lowest")
    assert TINY.n_candidates == 72 and RecursionConfig().n_candidates == 102_500


def test_mixture_report_on_hand_built_points():
    mix = GaussianMixture([[0.0], [10.0]], 1.0)
    x = torch.tensor([[0.0], [0.5], [10.0], [5.0], [3.0]])
    r = mixture_report(x, mix, k=4.0)
    assert r["n"] == 5
    assert r["hallucination"] == pytest.approx(0.2)  # only 5.0 is > 4 sigma from both modes
    assert r["mode_mass"].tolist() == pytest.approx([0.6, 0.2])
    assert r["mode_tv"] == pytest.approx(0.25)  # in-support histogram (3/4, 1/4) vs (1/2, 1/2)
    assert r["modes_covered"] == 2
    assert r["mean_distance"] == pytest.approx((0 + 0.5 + 0 + 5 + 3) / 5)
    assert r["mode_spread"] == pytest.approx(math.sqrt((0 + 0.25 + 0 + 9) / 4))  # the four in support, in sigma
    p_out = out_of_support_mass(mix, 4.0)  # ~6.3e-5
    truth = torch.tensor([(1 - p_out) / 2, (1 - p_out) / 2, p_out], dtype=torch.float64)
    expected_tv = 0.5 * float((torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64) - truth).abs().sum())
    assert r["tv"] == pytest.approx(expected_tv, abs=1e-12) and r["tv"] == pytest.approx(0.3, abs=1e-4)
    # a mode with fewer than min_share of its true mass is not covered
    lone = mixture_report(torch.tensor([[0.0]] * 19 + [[10.0]]), mix, k=4.0, min_share=0.2)
    assert lone["modes_covered"] == 1 and lone["hallucination"] == 0.0


def test_true_cell_mass_is_exact_and_matches_the_truth_on_samples():
    mix = grid_2d()
    cells = true_cell_mass(mix)
    assert cells.shape == (26,) and float(cells.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(cells[-1]) == pytest.approx(out_of_support_mass(mix), rel=1e-9)
    assert float(cells[0]) == pytest.approx((1 - math.exp(-8)) / 25, rel=1e-9)  # chi2_2 cdf at 16
    x = mix.sample(50_000, torch.Generator().manual_seed(0))[0]
    r = mixture_report(x, mix, true_cells=cells)
    assert r["modes_covered"] == 25 and r["hallucination"] < 2e-3 and r["tv"] < 0.03
    assert r["mean_distance"] == pytest.approx(math.sqrt(math.pi / 2), rel=0.01)
    assert r["mode_spread"] == pytest.approx(math.sqrt(1 - 9 * math.exp(-8)), rel=0.01)  # E[r^2 | r < 4] / 2, r^2 ~ chi2_2
    with pytest.raises(ValueError, match="overlap"):
        true_cell_mass(GaussianMixture([[0.0], [1.0]], 0.2))


def test_fast_paths_give_other_models_and_candidates_under_other_keys(data):
    """The settings' fast paths (mi_lib.diffusion.fast) reach the recursion's trainings and sampling runs, and their cache
    keys: a bf16 run never returns the float32 run's entries, nor overwrites them."""
    plain = _run(data).generations
    bf16_sampling = _SETTINGS[0].replace(fast_sample="precision=bf16")
    fast_sampling = _run(data, settings=bf16_sampling).generations
    assert fast_sampling[0].model_key == plain[0].model_key and fast_sampling[0].samples_key != plain[0].samples_key
    assert not _same(fast_sampling[0].candidates, plain[0].candidates)
    fast = _run(data, settings=bf16_sampling.replace(fast_train="precision=bf16")).generations
    assert fast[1].model_key != fast_sampling[1].model_key and fast[1].source == "trained"
    again = _run(data).generations
    assert all(g.source == "cached" and g.samples_cached for g in again[1:]) and _same(again[-1].candidates, plain[-1].candidates)


def test_the_real_control_trains_each_generation_on_fresh_real_points(data, monkeypatch):
    seen = []
    real_train = recursion.train

    def spy(model, x, *args, **kwargs):
        seen.append(x.clone())
        return real_train(model, x, *args, **kwargs)

    monkeypatch.setattr(recursion, "train", spy)
    run = _run(data, TINY.replace(filter="real", generations=3, warm_start=True))
    assert len(seen) == 3 and _same(seen[0], data)
    rows = {tuple(r.tolist()) for r in data}
    for x in seen[1:]:  # n_keep distinct real points, not samples
        assert x.shape == (TINY.n_keep, 2) and {tuple(r.tolist()) for r in x} <= rows and len({tuple(r.tolist()) for r in x}) == TINY.n_keep
    assert not _same(seen[1], seen[2])  # drawn afresh each generation
    none = _run(data, TINY.replace(filter="none", generations=3, warm_start=True))
    assert run.generations[0].model_key == none.generations[0].model_key  # generation 0 is shared
    assert run.generations[1].model_key != none.generations[1].model_key
    assert _same(_run(data, TINY.replace(filter="real", generations=3, warm_start=True)).generations[2].candidates, run.generations[2].candidates)
    assert select(torch.rand(10), 4, "real").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'real' control needs n_keep"):
        _run(data[:40], TINY.replace(filter="real"))
