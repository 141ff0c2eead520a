"""Detection: scoring generated samples for hallucination, and judging the scores against labels.

A *score* is one number per sample, larger meaning "more likely hallucinated". :func:`detection_scores`
computes Hal (the paper's Eq. 4: the variance of x0_hat over a window of reverse steps) and three baselines
from the steps :func:`mi_lib.sample` recorded; :func:`auroc`, :func:`roc_curve` and :func:`filter_rates`
judge any score against labels that come from elsewhere (geometry, a counter), never from the score.

Thresholds are chosen on a *calibration* batch and applied to a separate *test* batch:
:func:`threshold_keeping` keeps a chosen share of the calibration batch's in-support samples (the paper's
"retaining 96% of in-support samples"), :func:`youden_threshold` maximises removed + kept - 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..diffusion.nets import shared_timestep
from ..diffusion.sampling import WindowVariance
from ..diffusion.schedule import NoiseSchedule

__all__ = [
    "Records",
    "FilterRates",
    "hal_from_records",
    "detection_scores",
    "auroc",
    "auroc_standard_error",
    "roc_curve",
    "threshold_keeping",
    "youden_threshold",
    "filter_rates",
    "window_auroc_grid",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
#: What :func:`mi_lib.sample` records: {t: (x_t (N, ...), x0_hat (N, ...))}.
Records = Mapping[int, tuple[Tensor, Tensor]]


def _check_window(records: Records, window: tuple[int, int]) -> list[int]:
    t_lo, t_hi = (int(v) for v in window)
    if not 0 <= t_lo <= t_hi:
        raise ValueError(f"window must satisfy 0 <= t_lo <= t_hi, got {window}")
    missing = [t for t in range(t_lo, t_hi + 1) if t not in records]
    if missing:
        raise ValueError(f"window {window} needs recorded steps {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                         f"pass record_steps=range({t_lo}, {t_hi + 1}) (or wider) when sampling")
    return list(range(t_hi, t_lo - 1, -1))  # the order the sampler visits them


def hal_from_records(records: Records, window: tuple[int, int], *, of: str = "x0_hat") -> Tensor:
    """Hal over ``window = (t_lo, t_hi)`` from recorded steps, with the sampler's own streaming statistic
    (:class:`mi_lib.WindowVariance`), so it equals ``sample(..., hal_window=window).hal``.

    ``of="x0_hat"`` is the paper's Hal; ``of="xt"`` the same variance of the noisy state x_t (a baseline).
    Every step of the window must have been recorded. Returns (N,)."""
    index = {"xt": 0, "x0_hat": 1}
    if of not in index:
        raise ValueError(f"of must be 'x0_hat' or 'xt', got {of!r}")
    stat = WindowVariance(*window)
    for t in _check_window(records, window):
        stat.update(t, records[t][index[of]])
    return stat.result()


def detection_scores(
    model: Denoiser, records: Records, schedule: NoiseSchedule, window: tuple[int, int] = (0, 9), *, seed: int = 0
) -> dict[str, Tensor]:
    """Hal and three baselines for the samples whose steps were recorded, each (N,) float64, larger = more
    suspicious:

    - ``"Hal"``: variance of x0_hat over ``window`` (the paper's Eq. 4, averaged over dimensions);
    - ``"x_t variance"``: the same variance of x_t instead of x0_hat;
    - ``"|eps_hat| at t=0"``: the norm of ``model``'s predicted noise at the last step (re-evaluated on the
      recorded x_0 input: recovering it from x0_hat would divide a float32 difference by sqrt(1 - alpha_bar_0));
    - ``"random"``: uniform noise from ``seed`` (a detector that knows nothing: AUROC 0.5 in expectation)."""
    _check_window(records, window)
    if 0 not in records:
        raise ValueError("the |eps_hat| baseline needs step t=0 recorded")
    xt = records[0][0]
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if isinstance(model, nn.Module) else xt.device
    with torch.inference_mode():
        eps_hat = torch.cat([model(part.to(device), shared_timestep(0, len(part), device)).cpu() for part in xt.split(65_536)])
    return {
        "Hal": hal_from_records(records, window).double(),
        "x_t variance": hal_from_records(records, window, of="xt").double(),
        "|eps_hat| at t=0": eps_hat.double().flatten(1).norm(dim=1),
        "random": torch.rand(xt.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
    }


def _check_scores(scores: Tensor, labels: Tensor, *, both: bool = True) -> tuple[Tensor, Tensor, int, int]:
    """Scores (N,) as float64 and bool labels (N,) on the CPU, with the numbers of hallucinated (True) and
    in-support samples; ``both`` requires one of each."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    if scores.dim() != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must both have shape (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if labels.dtype != torch.bool:
        raise TypeError(f"labels must be a bool tensor (True = hallucinated), got {labels.dtype}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if both and (n_pos == 0 or n_neg == 0):
        raise ValueError(f"need both hallucinated and in-support samples, got {n_pos} and {n_neg}")
    return scores.double().cpu(), labels.cpu(), n_pos, n_neg


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: the probability that a random hallucinated sample (label True) scores
    higher than a random in-support one, ties counting one half (Mann-Whitney U). scores, labels: (N,)."""
    scores, labels, n_pos, n_neg = _check_scores(scores, labels)
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks within each group of tied scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts + 1  # 1-based rank of each group's first member
    mean_rank = first.double() + (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc_standard_error(auroc: float, n_pos: int, n_neg: int) -> float:
    """The standard error of an AUROC measured on ``n_pos`` hallucinated and ``n_neg`` other samples (Hanley &
    McNeil 1982, exponential approximation): how far sampling alone moves it. A difference from 0.5 (chance)
    of under two standard errors is not evidence of a detector."""
    if not 0.0 <= auroc <= 1.0:
        raise ValueError(f"auroc must be in [0, 1], got {auroc}")
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"need at least one sample of each kind, got {n_pos} and {n_neg}")
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc**2) + (n_neg - 1) * (q2 - auroc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def roc_curve(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC curve of "flag the samples scoring above a threshold", one point per distinct score.

    Returns (false-positive rate, true-positive rate, thresholds), each (M + 1,) float64, from (0, 0)
    (threshold +inf: flag nothing) to (1, 1). At ``thresholds[i]`` the flagged samples are those with
    score >= thresholds[i]. scores, labels: (N,)."""
    scores, labels, n_pos, n_neg = _check_scores(scores, labels)
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last member of each group of tied scores
    zero = torch.zeros(1, dtype=torch.float64)
    fpr = torch.cat([zero, fp[last] / n_neg])
    tpr = torch.cat([zero, tp[last] / n_pos])
    thresholds = torch.cat([torch.full((1,), float("inf"), dtype=torch.float64), s[last]])
    return fpr, tpr, thresholds


@dataclass(frozen=True)
class FilterRates:
    """What removing every sample whose score exceeds ``threshold`` does: ``removed`` is the share of
    hallucinated samples removed, ``kept`` the share of in-support samples kept, out of ``n_hallucinated``
    and ``n_in_support``."""

    threshold: float
    removed: float
    kept: float
    n_hallucinated: int
    n_in_support: int


def filter_rates(scores: Tensor, labels: Tensor, threshold: float) -> FilterRates:
    """Remove the samples with score > ``threshold``; report the shares removed/kept. scores, labels: (N,)."""
    scores, labels, n_pos, n_neg = _check_scores(scores, labels)
    flagged = scores > threshold
    return FilterRates(float(threshold), float(flagged[labels].sum()) / n_pos, float((~flagged[~labels]).sum()) / n_neg, n_pos, n_neg)


def threshold_keeping(scores: Tensor, labels: Tensor, kept: float = 0.96) -> float:
    """The smallest threshold that keeps at least a share ``kept`` of the in-support samples (label False):
    the ceil(kept * n)-th smallest in-support score. Fit it on a calibration batch, apply it with
    :func:`filter_rates` to another."""
    scores, labels, _, _ = _check_scores(scores, labels, both=False)
    if not 0.0 < kept <= 1.0:
        raise ValueError(f"kept must be in (0, 1], got {kept}")
    in_support = scores[~labels]
    if len(in_support) == 0:
        raise ValueError("no in-support samples to calibrate on")
    rank = max(1, math.ceil(kept * len(in_support) - 1e-9))
    return float(torch.sort(in_support).values[rank - 1])


def youden_threshold(scores: Tensor, labels: Tensor) -> float:
    """The threshold maximising removed + kept - 1 (Youden's J) on these samples; fit it on a calibration
    batch. Ties between thresholds go to the largest (the one that removes least)."""
    fpr, tpr, thresholds = roc_curve(scores, labels)
    j = tpr - fpr
    best = int(torch.nonzero(j == j.max())[0])
    if best == 0:  # flagging nothing is best: no score exceeds the largest one
        return float(thresholds[1])
    # flagging score >= thresholds[best] is removing score > anything between it and the next lower score
    below = thresholds[best + 1] if best + 1 < len(thresholds) else thresholds[best] - 1.0
    return float((thresholds[best] + below) / 2)


def window_auroc_grid(records: Records, labels: Tensor, t_los: Sequence[int], t_his: Sequence[int]) -> Tensor:
    """AUROC of Hal for every window (t_lo, t_hi) with t_lo <= t_hi; NaN where t_lo > t_hi.
    Returns (len(t_los), len(t_his)) float64."""
    grid = torch.full((len(t_los), len(t_his)), float("nan"), dtype=torch.float64)
    for i, t_lo in enumerate(t_los):
        for j, t_hi in enumerate(t_his):
            if t_lo <= t_hi:
                grid[i, j] = auroc(hal_from_records(records, (t_lo, t_hi)), labels)
    return grid
