"""Metrics as pure functions on arrays, and the per-cell summary of a run's frame scores.

Scores are P(fake) in [0, 1]; labels are 1 = fake, 0 = real. A sample is predicted fake when its score
is at least the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dfbench.errors import ConfigError


def _check(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ConfigError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 (real) or 1 (fake).")
    if not np.isfinite(s).all():
        raise ConfigError("scores must be finite.")
    return y.astype(np.int64), s


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), equal to scikit-learn's `roc_auc_score`.

    Raises:
        ConfigError: the labels hold one class only.

    Example:
        >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y, s = _check(labels, scores)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ConfigError(f"AUC needs both classes; got {n_pos} fake and {n_neg} real.")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
             threshold: float = 0.5) -> float:
    """Fraction of samples whose prediction (fake when score >= `threshold`) matches the label.

    Example:
        >>> accuracy([0, 1, 1], [0.2, 0.5, 0.4])
        0.6666666666666666
    """
    y, s = _check(labels, scores)
    if len(y) == 0:
        raise ConfigError("accuracy of an empty set is undefined.")
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def video_scores(frames: pd.DataFrame, aggregation: str = "mean") -> pd.DataFrame:
    """Aggregate frame scores to one score per (sample, cell) over frames with status ``ok``.

    Args:
        frames: columns ``sample_id``, ``cell``, ``status``, ``score``.
        aggregation: ``mean`` (the default of every seed paper that aggregates).

    Returns:
        columns ``sample_id``, ``cell``, ``score``, ``n_frames`` (scored frames); samples with no scored
        frame in a cell are absent.
    """
    if aggregation != "mean":
        raise ConfigError(f"Unknown aggregation {aggregation!r}; allowed: 'mean'.")
    ok = frames[frames["status"] == "ok"]
    grouped = ok.groupby(["sample_id", "cell"], sort=False)["score"]
    return grouped.agg(score="mean", n_frames="size").reset_index()


def cell_metrics(frames: pd.DataFrame, labels: pd.Series, cells: Sequence[str],
                 aggregation: str = "mean") -> pd.DataFrame:
    """AUC and accuracy at 0.5 per cell, at frame level and at video level.

    Args:
        frames: the store's frame rows (``sample_id``, ``cell``, ``status``, ``score``).
        labels: label per sample id (index = sample_id).
        cells: cell ids in report order.

    Returns:
        long table: ``cell``, ``metric`` (auc, acc), ``aggregation`` (frame or the video aggregation),
        ``value`` (NaN when a class is missing), ``n_videos``, ``n_frames``, ``n_no_face``.
    """
    videos = video_scores(frames, aggregation)
    rows = []
    for cell in cells:
        f = frames[frames["cell"] == cell]
        ok = f[f["status"] == "ok"]
        v = videos[videos["cell"] == cell]
        common = {"cell": cell, "n_videos": int(len(v)), "n_frames": int(len(ok)),
                  "n_no_face": int((f["status"] == "no_face").sum())}
        for agg, table in (("frame", ok), (aggregation, v)):
            y = labels.reindex(table["sample_id"]).to_numpy()
            s = table["score"].to_numpy()
            rows.append({**common, "metric": "auc", "aggregation": agg, "value": _safe(auc, y, s)})
            rows.append({**common, "metric": "acc", "aggregation": agg, "value": _safe(accuracy, y, s)})
    return pd.DataFrame(rows)


def _safe(fn, y: np.ndarray, s: np.ndarray) -> float:
    try:
        return fn(y, s)
    except ConfigError:
        return float("nan")
