"""Metrics as pure functions on arrays; each equals scikit-learn's where scikit-learn has one.

Scores are P(fake) in [0, 1]; labels are 1 = fake (the positive class), 0 = real. A sample is predicted
fake when its score is at least the threshold. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from dfbench.errors import ConfigError
from dfbench.registry import unknown_name

ArrayLike = Sequence[float] | np.ndarray
AGGREGATIONS = ("mean", "median", "max", "vote")


def _check(labels: ArrayLike, scores: ArrayLike, both: bool = False) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ConfigError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}.")
    if len(y) == 0:
        raise ConfigError("metrics of an empty set are undefined.")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 (real) or 1 (fake).")
    if not np.isfinite(s).all():
        raise ConfigError("scores must be finite.")
    y = y.astype(np.int64)
    if both and (y.sum() == 0 or y.sum() == len(y)):
        raise ConfigError(f"this metric needs both classes; got {int(y.sum())} fake and {int(len(y) - y.sum())} real.")
    return y, s


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half), equal to scikit-learn's `roc_auc_score`.

    Example:
        >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y, s = _check(labels, scores, both=True)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds at every distinct score, highest threshold first, starting at (0, 0).

    Equal to scikit-learn's ``roc_curve(..., drop_intermediate=False)`` (whose first threshold is inf).
    """
    y, s = _check(labels, scores, both=True)
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    tpr = np.r_[0.0, tps / y.sum()]
    return fpr, tpr, np.r_[np.inf, s_sorted[last]]


def eer(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold: the ROC point where FPR and FNR are closest (their mean there).

    Example:
        >>> eer([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9])
        (0.0, 0.7)
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(thresholds[i])


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision (step-wise area under precision-recall), equal to scikit-learn's."""
    fpr, tpr, _ = roc_curve(labels, scores)
    y = np.asarray(labels)
    tps, fps = tpr * y.sum(), fpr * (len(y) - y.sum())
    precision = np.divide(tps[1:], tps[1:] + fps[1:])
    return float(np.sum(np.diff(tpr) * precision))


def threshold_at_fpr(labels: ArrayLike, scores: ArrayLike, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these samples is at most `max_fpr`."""
    fpr, _, thresholds = roc_curve(labels, scores)
    return float(thresholds[np.flatnonzero(fpr <= max_fpr)[-1]])


def tpr_at_fpr(labels: ArrayLike, scores: ArrayLike, max_fpr: float = 0.01) -> float:
    """The highest true-positive rate reachable with a false-positive rate of at most `max_fpr`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[np.flatnonzero(fpr <= max_fpr)[-1]])


def confusion(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> dict[str, int]:
    """True/false positives and negatives, fake being positive, at `threshold` (fake when score >= it).

    Example:
        >>> confusion([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6])
        {'tp': 1, 'fp': 1, 'tn': 1, 'fn': 1}
    """
    y, s = _check(labels, scores)
    pred = s >= threshold
    return {"tp": int((pred & (y == 1)).sum()), "fp": int((pred & (y == 0)).sum()),
            "tn": int((~pred & (y == 0)).sum()), "fn": int((~pred & (y == 1)).sum())}


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def threshold_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall (TPR), specificity (TNR), FPR and F1 at `threshold`, fake positive.

    Undefined ratios (no predicted fakes for precision, no reals for specificity) are NaN, where
    scikit-learn would warn and return 0.
    """
    c = confusion(labels, scores, threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"acc": (tp + tn) / (tp + fp + tn + fn), "precision": precision, "recall": recall,
            "specificity": _ratio(tn, tn + fp), "fpr": _ratio(fp, fp + tn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of samples whose prediction (fake when score >= `threshold`) matches the label.

    Example:
        >>> accuracy([0, 1, 1], [0.2, 0.5, 0.4])
        0.6666666666666666
    """
    return threshold_metrics(labels, scores, threshold)["acc"]


def multiclass_metrics(labels: Sequence[int] | np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of argmax predictions over class probabilities (N x C), as scikit-learn's."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ConfigError(f"need N labels and N x C probabilities, got {y.shape} and {p.shape}.")
    pred = p.argmax(axis=1)
    f1s = []
    for k in np.unique(np.r_[y, pred]):
        tp = int(((pred == k) & (y == k)).sum())
        f1s.append(_ratio(2 * tp, int((pred == k).sum()) + int((y == k).sum())))
    return {"acc3": float((pred == y).mean()), "f1_macro3": float(np.mean(f1s))}


# Degenerate-detector flags (our choices, not a published rule): scores whose standard deviation is below
# FLAT_SD carry no ranking worth an AUC, and a detector that puts at least ONE_SIDED of the reals and of the fakes
# on the same side of the threshold calls (nearly) everything real or everything fake.
FLAT_SD = 1e-3
ONE_SIDED = 0.95


def degenerate(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5,
               decided: np.ndarray | None = None) -> str:
    """Why one cell's scores say little about the detector, or '' when they are fine (or the cell is empty).

    Args:
        decided: the card's own decision per row (1 fake, 0 real; NaN where it decides by threshold), as
            `dfbench.results` passes it for argmax detectors.

    Example:
        >>> degenerate([0, 0, 1, 1], [0.7, 0.7, 0.7, 0.7])
        'constant scores (sd 0)'
        >>> degenerate([0, 0, 1, 1], [0.6, 0.8, 0.7, 0.9])
        'calls 100 % of reals and 100 % of fakes fake'
        >>> degenerate([0, 0, 1, 1], [0.2, 0.4, 0.7, 0.9])
        ''
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return ""
    sd = float(np.std(s))
    if sd < FLAT_SD:
        return f"constant scores (sd {sd:.2g})"
    fake = s >= threshold
    if decided is not None:
        known = np.isfinite(np.asarray(decided, dtype=np.float64))
        fake = np.where(known, np.asarray(decided) == 1, fake)
    real_fake, fake_fake = float(fake[y == 0].mean()), float(fake[y == 1].mean())
    for called, share_real, share_fake in (("fake", real_fake, fake_fake), ("real", 1 - real_fake, 1 - fake_fake)):
        if share_real >= ONE_SIDED and share_fake >= ONE_SIDED:
            return f"calls {100 * share_real:.0f} % of reals and {100 * share_fake:.0f} % of fakes {called}"
    return ""


def aggregate(scores: ArrayLike, how: str = "mean", threshold: float = 0.5) -> float:
    """One video score from its frame scores: ``mean``, ``median``, ``max`` or ``vote`` (share of frames
    at or above `threshold`, the MesoNet paper's video rule).

    Example:
        >>> aggregate([0.2, 0.9, 0.7], "vote")
        0.6666666666666666
    """
    s = np.asarray(scores, dtype=np.float64)
    if how not in AGGREGATIONS:
        raise ConfigError(f"Unknown aggregation {how!r}; allowed: {', '.join(AGGREGATIONS)}.")
    if how == "vote":
        return float((s >= threshold).mean())
    if how == "median":
        return float(np.median(s))
    return float(s.max() if how == "max" else s.mean())


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], labels: np.ndarray, scores: np.ndarray,
                 groups: np.ndarray | None = None, n: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric`, resampling groups (videos), not rows (frames).

    Args:
        metric: f(labels, scores) -> float.
        labels, scores: one row per frame or per video.
        groups: the video of each row; None resamples rows. Resamples whose metric is undefined
            (one class only) are skipped.
        n: resamples; alpha: 0.05 gives a 95 % interval; seed: the bootstrap's generator seed.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = np.concatenate([members[k] for k in rng.integers(0, len(uniq), size=len(uniq))])
        try:
            values.append(metric(y[pick], s[pick]))
        except ConfigError:
            continue
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def corruption_error(errors: dict[str, float], reference: dict[str, float]) -> float:
    """Mean corruption error (Hendrycks & Dietterich 2019): per operation, the detector's summed error over
    its levels divided by the reference detector's, averaged over operations.

    Args:
        errors, reference: error (for example 1 - AUC) per ``op`` -> summed over that op's levels.

    Example:
        >>> corruption_error({"blur": 0.3, "noise": 0.2}, {"blur": 0.6, "noise": 0.2})
        0.75
    """
    ratios = [errors[op] / reference[op] for op in errors if op in reference and reference[op] > 0]
    return float(np.mean(ratios)) if ratios else float("nan")


@dataclass(frozen=True)
class Metric:
    """One metric of the result tables: what every table, leaderboard, interval and summary reads about it.

    Attributes:
        name: the ``metric`` column's value.
        title: for reports.
        higher_is_better: False for error rates (``eer``, ``fpr``); `error` turns either kind into an error.
        threshold: ``none`` (threshold-free), ``fixed`` (at the fixed threshold, 0.5 by default) or ``calibrated``
            (at the threshold found on the clean cell, `dfbench.results.Calibration`).
        levels: the levels it is computed at: ``frame`` (every scored frame) and ``video`` (one score per video).
        score: ``f(labels, scores) -> float`` for bootstrap intervals (``fixed`` ones also take ``threshold=``);
            None where the metric needs more than one cell's labels and scores (the calibrated threshold) or
            class probabilities.
        classes: it needs the 3-class probabilities (DM, GAN, REAL) that some adapters give.
    """

    name: str
    title: str
    higher_is_better: bool
    threshold: Literal["none", "fixed", "calibrated"] = "none"
    levels: tuple[str, ...] = ("frame", "video")
    score: Callable[..., float] | None = None
    classes: bool = False

    def error(self, value: float) -> float:
        """The metric as an error, lower is better: ``1 - value`` where higher is better, else `value`.

        Example:
            >>> METRICS["auc"].error(0.75), METRICS["eer"].error(0.25)
            (0.25, 0.25)
        """
        return 1.0 - value if self.higher_is_better else value


def _fixed(name: str) -> Callable[..., float]:
    return lambda labels, scores, threshold=0.5: threshold_metrics(labels, scores, threshold)[name]


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("auc", "AUC", True, score=auc),
    Metric("acc", "accuracy", True, "fixed", score=_fixed("acc")),
    Metric("acc_cal", "accuracy at the clean cell's threshold", True, "calibrated"),
    Metric("eer", "equal error rate", False, score=lambda labels, scores: eer(labels, scores)[0]),
    Metric("ap", "average precision", True, score=average_precision),
    Metric("f1", "F1", True, "fixed", score=_fixed("f1")),
    Metric("precision", "precision", True, "fixed", score=_fixed("precision")),
    Metric("recall", "recall (TPR)", True, "fixed", score=_fixed("recall")),
    Metric("specificity", "specificity (TNR)", True, "fixed", score=_fixed("specificity")),
    Metric("fpr", "false-positive rate", False, "fixed", score=_fixed("fpr")),
    Metric("tpr_at_1fpr", "TPR at 1 % FPR", True, score=tpr_at_fpr),
    Metric("acc3", "3-class accuracy", True, classes=True),
    Metric("f1_macro3", "3-class macro F1", True, classes=True),
)}


def metric(name: str) -> Metric:
    """The `Metric` of `name`; an unknown name is an error with the near names."""
    if name not in METRICS:
        raise unknown_name("metric", name, METRICS, "README.md, Metrics, notebooks, leaderboards")
    return METRICS[name]
