"""Detection: Hal from the steps a sampler recorded, and the AUROC that judges a score against labels.

A *score* is one number per sample, larger meaning "more likely hallucinated"; the labels come from elsewhere
(geometry, a counter), never from the score. Chapter 6's scores, baselines and thresholds are in
:mod:`mi_lib.experiments.detection`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..diffusion.sampling import WindowVariance

__all__ = ["Records", "hal_from_records", "auroc", "check_scores", "check_window"]

#: What :func:`mi_lib.sample` records: {t: (x_t (N, ...), x0_hat (N, ...))}.
Records = Mapping[int, tuple[Tensor, Tensor]]


def check_window(records: Records, window: tuple[int, int]) -> list[int]:
    """The steps of ``window = (t_lo, t_hi)`` in the order the sampler visits them, or one ValueError naming
    the steps ``records`` lacks."""
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
    for t in check_window(records, window):
        stat.update(t, records[t][index[of]])
    return stat.result()


def check_scores(scores: Tensor, labels: Tensor, *, both: bool = True) -> tuple[Tensor, Tensor, int, int]:
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
    scores, labels, n_pos, n_neg = check_scores(scores, labels)
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    # average the ranks within each group of tied scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts + 1  # 1-based rank of each group's first member
    mean_rank = first.double() + (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
