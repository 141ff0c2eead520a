"""Detection scores and their evaluation: hand-checkable AUROC/ROC/threshold values, and Hal from records
equal to the sampler's streaming Hal."""

import itertools
import math

import pytest
import torch

from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, sample
from mi_lib.experiments.detection import (
    auroc_standard_error,
    detection_scores,
    filter_rates,
    roc_curve,
    threshold_keeping,
    window_auroc_grid,
    youden_threshold,
)
from mi_lib.measure.detection import auroc, hal_from_records


def _pairwise_auroc(scores, labels):
    pos = [s for s, y in zip(scores.tolist(), labels.tolist()) if y]
    neg = [s for s, y in zip(scores.tolist(), labels.tolist()) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_hand_values():
    y = torch.tensor([False, False, True, True])
    assert auroc(torch.tensor([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert auroc(torch.tensor([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert auroc(torch.tensor([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    # one of the four (pos, neg) pairs inverted
    assert auroc(torch.tensor([0.1, 0.35, 0.3, 0.4]), y) == 0.75


def test_auroc_matches_pair_count_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (60,), generator=g).double()  # many ties
    labels = torch.rand(60, generator=g) < 0.3
    assert auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels), abs=1e-12)


def test_roc_curve_endpoints_and_area():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 10, (200,), generator=g).double()
    labels = torch.rand(200, generator=g) < scores / 12
    fpr, tpr, thr = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert torch.isinf(thr[0]) and (thr[1:].diff() < 0).all()
    assert (fpr.diff() >= 0).all() and (tpr.diff() >= 0).all()
    # the trapezoid area under the curve is the AUROC (ties on the diagonal count one half)
    assert torch.trapezoid(tpr, fpr).item() == pytest.approx(auroc(scores, labels), abs=1e-12)
    # each point: flagging score >= threshold
    for i in range(1, len(thr)):
        flagged = scores >= thr[i]
        assert tpr[i] == pytest.approx(float(flagged[labels].float().mean()))
        assert fpr[i] == pytest.approx(float(flagged[~labels].float().mean()))


def test_thresholds_and_filter_rates():
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0])
    labels = torch.tensor([False] * 5 + [True] * 3)
    # keep 80% of the five in-support samples: their 0.8 quantile ('higher') is 3
    thr = threshold_keeping(scores, labels, kept=0.8)
    assert thr == 3.0
    r = filter_rates(scores, labels, thr)
    assert (r.removed, r.kept, r.n_hallucinated, r.n_in_support) == (1.0, 0.8, 3, 5)
    # Youden: a perfect split exists between 4 and 10
    thr = youden_threshold(scores, labels)
    assert 4.0 <= thr < 10.0
    assert filter_rates(scores, labels, thr).removed == 1.0 and filter_rates(scores, labels, thr).kept == 1.0


def test_youden_when_nothing_separates():
    scores = torch.tensor([1.0, 1.0, 1.0, 1.0])
    labels = torch.tensor([False, True, False, True])
    r = filter_rates(scores, labels, youden_threshold(scores, labels))
    # every threshold gives J = 0 here; the documented tie rule picks the one that removes least: nothing
    assert (r.removed, r.kept) == (0.0, 1.0)


def test_bad_inputs_give_one_clear_error():
    with pytest.raises(ValueError, match="both hallucinated and in-support"):
        auroc(torch.rand(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        auroc(torch.rand(5), torch.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        auroc(torch.rand(5), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="kept"):
        threshold_keeping(torch.rand(4), torch.tensor([True, False, False, True]), kept=1.5)


@pytest.fixture(scope="module")
def recorded():
    torch.manual_seed(0)
    model = MLPDenoiser(MLPConfig(data_dim=2, width=16, time_dim=16))
    schedule = NoiseSchedule("standard")  # an untrained net under the official schedule overflows x0_hat
    result = sample(model, schedule, 64, seed=3, hal_window=(0, 9), record_steps=range(0, 12), progress=False)
    return result, schedule, model


def test_hal_from_records_equals_streaming_hal(recorded):
    result, _, _ = recorded
    torch.testing.assert_close(hal_from_records(result.records, (0, 9)), result.hal)
    # and the definition: population variance over the window's steps, averaged over dimensions
    x0_hat = torch.stack([result.records[t][1] for t in range(10)])  # (10, N, 2)
    torch.testing.assert_close(hal_from_records(result.records, (0, 9)), x0_hat.var(0, unbiased=False).mean(-1))
    with pytest.raises(ValueError, match="record_steps"):
        hal_from_records(result.records, (0, 20))
    with pytest.raises(ValueError, match="of must be"):
        hal_from_records(result.records, (0, 9), of="eps")


def test_detection_scores_and_window_grid(recorded):
    result, schedule, model = recorded
    scores = detection_scores(model, result.records, schedule, (0, 9), seed=1)
    assert set(scores) == {"Hal", "x_t variance", "|eps_hat| at t=0", "random"}
    assert all(s.shape == (64,) and s.dtype == torch.float64 for s in scores.values())
    # |eps_hat| is the network's own prediction at t=0 on the recorded input
    with torch.no_grad():
        model_eps = model(result.records[0][0], torch.zeros(64, dtype=torch.long))
    torch.testing.assert_close(scores["|eps_hat| at t=0"].float(), model_eps.norm(dim=1))
    # Hal is the sampler's streamed statistic; the x_t variance the same variance of the recorded x_t
    torch.testing.assert_close(scores["Hal"], result.hal.double())
    x_t = torch.stack([result.records[t][0] for t in range(10)]).double()  # (10, N, 2)
    # (float32 accumulation there, float64 here: loose, yet far tighter than x_t vs x0_hat would give)
    torch.testing.assert_close(scores["x_t variance"], x_t.var(0, unbiased=False).mean(-1), rtol=1e-2, atol=1e-6)
    assert not torch.allclose(scores["x_t variance"], scores["Hal"], rtol=0.1)
    labels = torch.arange(64) % 3 == 0
    grid = window_auroc_grid(result.records, labels, [0, 4, 5], [4, 9])
    assert torch.isnan(grid[2, 0]) and torch.isnan(grid[1, 0]) and not torch.isnan(grid[0, 0])  # [4, 4]: one step
    assert grid[0, 1] == auroc(result.hal, labels)  # the full window is the sampler's own Hal


def test_auroc_standard_error_by_hand_and_by_simulation():
    # chance, 100 against 100: the Mann-Whitney variance (n1 + n2 + 1) / (12 n1 n2) exactly
    assert auroc_standard_error(0.5, 100, 100) == pytest.approx(math.sqrt(201 / 120_000))
    assert auroc_standard_error(1.0, 50, 70) == 0.0  # a perfect separation has nothing to vary
    # a detector with a real but partial signal: the formula matches the spread over repeated samples
    gen = torch.Generator().manual_seed(0)
    values = []
    for _ in range(400):
        y = torch.arange(160) < 60
        s = torch.randn(160, generator=gen) + 0.8 * y
        values.append(auroc(s, y))
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    assert auroc_standard_error(mean, 60, 100) == pytest.approx(spread, rel=0.15)
    with pytest.raises(ValueError, match="at least one sample of each kind"):
        auroc_standard_error(0.7, 0, 10)
    with pytest.raises(ValueError, match=r"auroc must be in \[0, 1\]"):
        auroc_standard_error(1.2, 10, 10)
