"""The chapter modules' own checks (their experiments run in the chapters, under nbval)."""

from __future__ import annotations

import math

import pytest
import torch

import mi_lib as mi
from mi_lib.experiments import detection as ch6
from mi_lib.experiments import recursive_training as ch7


def test_chapter6_setup_fills_sizes_from_the_scale_and_refuses_bad_input_by_name():
    s = ch6.setup("ci", 0, 4.0, "0,9", 0.96, None, 1_000, None)
    assert (s.n_samples, s.n_calibration, s.n_images) == (10_000, 1_000, 128) and s.window == (0, 9)
    assert s.keep_rule == "keep 96% (calibration)"
    with pytest.raises(ValueError, match="window"):
        ch6.setup("ci", 0, 4.0, (9, 9), 0.96, None, None, None)
    for bad in (1, -1, 2.0):
        with pytest.raises(ValueError, match="n_images"):
            ch6.setup("ci", 0, 4.0, (0, 9), 0.96, None, None, bad)
    left_out = ch6.setup("paper", 0, 4.0, (0, 9), 0.96, None, None, 0)  # GPU window 2: the mixtures alone
    assert left_out.n_images == 0 and ch6.measure_images(left_out, mi.Settings(progress=False)) == {}
    with pytest.raises(ValueError, match="kept_target"):
        ch6.setup("paper", 0, 4.0, (0, 9), 1.0, None, None, None)


def test_chapter6_matched_window_ends_where_alpha_bar_passes_the_official_schedules():
    official = mi.NoiseSchedule(mi.OFFICIAL)
    assert ch6.matched_window_end(official, (0, 9)) == 9  # the official schedule matches itself
    standard = mi.NoiseSchedule(mi.STANDARD)
    t2 = ch6.matched_window_end(standard, (0, 9))
    assert standard.alpha_bar_64[t2] >= official.alpha_bar_64[9] > standard.alpha_bar_64[t2 + 1]


def test_chapter7_setup_needs_the_three_filters_and_reads_a_sweeps_keep_ratio():
    s = ch7.setup("ci", 0, "none,random,hal", 4.0, None, None, 1.025)
    assert s.filters == ("none", "random", "hal") and s.config.oversample == 1.025 and s.last == s.config.generations - 1
    with pytest.raises(ValueError, match="filters"):
        ch7.setup("ci", 0, ("none", "hal"), 4.0, None, None, None)
    sweep = mi.storage.results.seed_sweep("07_recursive_training_keep976")
    assert sweep is not None and ch7._oversample(sweep) == 1.025
    with pytest.raises(ValueError, match="oversample"):
        ch7._oversample({"config": "RecursionConfig(generations=3)"})


def test_chapter7b_setup_picks_the_digits_by_scale_and_needs_the_control():
    from mi_lib.experiments import recursive_digits as ch7b

    ci = ch7b.setup("ci", 5, ("none", "random", "hal", "real"), None, None, None)
    assert (ci.kind, ci.seeds, ci.generations, ci.smoke) == ("8x8", (5,), 3, False)
    paper_8x8 = ch7b.setup("paper", 5, "none,real", "8x8", None, None)
    assert paper_8x8.seeds == (5, 6, 7) and paper_8x8.generations == 5
    smoke = ch7b.setup("ci", 0, ("hal",), "mnist", None, (3, 4))
    assert smoke.smoke and smoke.seeds == (3, 4) and smoke.config.n_keep == 32  # a smoke run needs no control
    with pytest.raises(ValueError, match="filters must include 'none' and 'real'"):
        ch7b.setup("ci", 0, ("none", "hal"), None, None, None)
    with pytest.raises(ValueError, match="digits_generations"):
        ch7b.setup("ci", 0, ("none", "real"), None, 1, None)


def test_chapter2_setup_reads_papermill_lists_and_refuses_a_gapless_mixture():
    from mi_lib.experiments import mode_interpolation_1d as ch2

    s = ch2.setup("ci", 0, "1,2,3", [1, 2, 4], 0.05, 4.0, "20000, 2000", None)
    assert s.means == [1.0, 2.0, 3.0] and s.n_train_list == [2_000, 20_000] and s.n_samples == 10_000
    assert list(s.specs) == [2_000, 20_000] and s.moved_spec.n_train == 20_000
    assert ch2.gap_names([3, 1, 2]) == ["1-2", "2-3"]
    with pytest.raises(ValueError, match="moved_means must hold at least two different modes"):
        ch2.setup("ci", 0, [1, 2, 3], [2, 2], 0.05, 4.0, None, None)
    with pytest.raises(ValueError, match="k must be at least 3"):
        ch2.setup("ci", 0, [1, 2, 3], [1, 2, 4], 0.05, 2.0, None, None)


def test_chapter4_score_fit_recovers_the_width_of_a_smoothed_exact_score():
    """A 'learned' score that is the exact score smoothed by h = 0.1 is best fitted by h = 0.1 where the true
    score still jumps (small t), and the fit is far closer there than the exact score itself."""
    from mi_lib.experiments import score_smoothness as ch4

    s = ch4.setup("ci", 0, [1.0, 2.0, 3.0], 0.05, 4.0, [0.0, 0.1], [0], None)
    mixture = s.spec.mixture()
    schedule = mi.NoiseSchedule(s.spec.schedule)
    stand_in = mi.ExactDenoiser(mixture, schedule, smoothing=0.1)
    scores = ch4.Scores(stand_in, mixture, schedule, torch.device("cpu"))
    fit = ch4.score_fit(scores, s, times=(0, 2, 5), widths=(0.0, 0.05, 0.08, 0.1, 0.12, 0.2))
    assert fit.best() == [0.1, 0.1, 0.1]
    assert (fit.rms[:, 3] < 0.01 * fit.rms[:, 0]).all()


@pytest.mark.parametrize("mean", [[1.2], [1.2, 0.0], [0.3, -0.4]])
def test_tv_to_noise_is_the_closed_form_of_two_unit_gaussians(mean):
    """A unit-variance mode stays unit-variance under noising, so q_t = N(sqrt(ab) mu, I) and its total variation to
    N(0, I) is 2 Phi(|sqrt(ab) mu| / 2) - 1, in 1D and 2D (chapter 1's pure-noise steps rest on this quadrature)."""
    from mi_lib.experiments.forward_process import tv_to_noise

    mixture = mi.GaussianMixture(torch.tensor([mean], dtype=torch.float64), 1.0)
    for ab in (0.9, 0.25, 0.01):
        shift = (ab ** 0.5) * float(torch.tensor(mean).norm())
        exact = math.erf(shift / 2 / math.sqrt(2))  # 2 Phi(d / 2) - 1
        assert tv_to_noise(mixture, ab) == pytest.approx(exact, abs=2e-4)


def test_first_pure_noise_step_is_the_first_step_within_the_tolerance():
    from mi_lib.experiments.forward_process import first_pure_noise_step, tv_to_noise

    schedule = mi.NoiseSchedule(mi.ScheduleConfig("linear", 200, 1e-3, 0.2))
    mixture = mi.mixture_1d()
    first = first_pure_noise_step(mixture, schedule, tol=0.01)
    tv = [tv_to_noise(mixture, float(ab)) for ab in schedule.alpha_bar_64]
    assert first == next(t for t, v in enumerate(tv) if v < 0.01) and 0 < first < 200


def test_threshold_rates_fit_their_thresholds_on_the_calibration_batch_alone():
    """Chapter 6's 'remove / keep' figures: both rules fit on the calibration scores and labels; the test labels only
    score the result. Relabelling the test batch moves the rates, never the thresholds."""
    s = ch6.setup("ci", 0, 4.0, (0, 9), 0.96, None, None, None)
    g = torch.Generator().manual_seed(0)
    cal_labels, test_labels = torch.rand(4_000, generator=g) < 0.1, torch.rand(4_000, generator=g) < 0.1
    cal = torch.randn(4_000, generator=g) + 2.0 * cal_labels  # hallucinations score higher
    test = torch.randn(4_000, generator=g) + 2.0 * test_labels
    rates = ch6.threshold_rates(s, test, test_labels, cal, cal_labels)
    flipped = ch6.threshold_rates(s, test, ~test_labels, cal, cal_labels)
    assert {r: v.threshold for r, v in rates.items()} == {r: v.threshold for r, v in flipped.items()}
    keep = rates[s.keep_rule]
    assert keep.threshold == pytest.approx(float(torch.quantile(cal[~cal_labels].double(), 0.96)), abs=0.02)
    assert keep.kept == pytest.approx(0.96, abs=0.015) and keep.removed > 0.5  # it transfers to the test batch
    assert rates[s.keep_rule].removed != flipped[s.keep_rule].removed  # the test labels do score it


def test_moved_reading_compares_the_gaps_in_all_and_per_unit_length():
    """Chapter 2's two ratios on counts placed by hand: 27 samples in gap 1-2 (0.6 long at k = 4), 22 in gap 2-4
    (1.6 long); the mass ratio's interval is the density ratio's scaled by the lengths (one binomial split)."""
    from mi_lib.experiments import mode_interpolation_1d as ch2

    s = ch2.setup("ci", 0, [1.0, 2.0, 3.0], [1.0, 2.0, 4.0], 0.05, 4.0, None, None)
    x = torch.cat([torch.full((27, 1), 1.5), torch.full((22, 1), 3.0), torch.full((s.n_samples - 49, 1), 2.0)])
    reading = ch2.moved_reading(s, x.double(), {})
    assert reading.comparable and reading.mass.ratio == pytest.approx(22 / 27)
    assert reading.density.ratio == pytest.approx((22 / 1.6) / (27 / 0.6))
    lengths = 1.6 / 0.6
    assert reading.mass.low == pytest.approx(reading.density.low * lengths)
    assert reading.mass.high == pytest.approx(reading.density.high * lengths)
    assert reading.mass.low < 1 < reading.mass.high and reading.density.high < 1  # CI's situation: only one is decisive
