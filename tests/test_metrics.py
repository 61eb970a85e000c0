"""Metrics equal scikit-learn on seeded data with ties; one-class input is a clear error; inputs stay untouched."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from dfbench import metrics as M
from dfbench.errors import ConfigError


def _data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    scores = np.round(rng.random(n) * 0.6 + labels * 0.3, 1)  # coarse rounding makes many ties
    return labels, scores


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_equal_scikit_learn_with_ties(seed: int):
    y, s = _data(seed)
    assert M.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_threshold_metrics_equal_scikit_learn(seed: int, threshold: float):
    y, s = _data(seed)
    pred = (s >= threshold).astype(int)
    got = M.threshold_metrics(y, s, threshold)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert M.confusion(y, s, threshold) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert got["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=np.nan))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert got["fpr"] == pytest.approx(1 - got["specificity"])


def test_eer_and_tpr_at_fpr_follow_the_roc_curve():
    y, s = _data(7, 500)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    rate, threshold = M.eer(y, s)
    assert rate == pytest.approx((fpr[i] + 1 - tpr[i]) / 2) and threshold == pytest.approx(thr[i])
    assert M.tpr_at_fpr(y, s, 0.01) == pytest.approx(tpr[fpr <= 0.01].max())
    t = M.threshold_at_fpr(y, s, 0.05)
    assert M.threshold_metrics(y, s, t)["fpr"] <= 0.05


def test_one_class_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs both classes"):
        M.auc([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(ConfigError, match="needs both classes"):
        M.eer([0, 0], [0.2, 0.3])


def test_inputs_are_not_mutated():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.3, 0.2, 0.1, 0.9])
    for fn in (M.auc, M.average_precision, M.eer, M.threshold_metrics, M.roc_curve):
        fn(labels, scores)
    assert labels.tolist() == [0, 1, 0, 1] and scores.tolist() == [0.3, 0.2, 0.1, 0.9]


def test_multiclass_accuracy_and_macro_f1_equal_scikit_learn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=200)
    probs = rng.dirichlet(np.ones(3), size=200)
    probs[np.arange(200), labels] += rng.random(200) * 0.5
    got = M.multiclass_metrics(labels, probs)
    pred = probs.argmax(axis=1)
    assert got["acc3"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert got["f1_macro3"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))


@pytest.mark.parametrize("how,expected", [("mean", 0.5), ("median", 0.5), ("max", 0.9), ("vote", 2 / 3)])
def test_frame_to_video_aggregations(how: str, expected: float):
    assert M.aggregate([0.1, 0.5, 0.9], how) == pytest.approx(expected)


def test_bootstrap_resamples_videos_not_frames():
    rng = np.random.default_rng(0)
    # 40 videos x 25 frames; frames of one video are identical, so the interval must reflect 40 samples.
    video_labels = np.repeat([0, 1], 20)
    video_scores = rng.random(40) * 0.7 + video_labels * 0.2
    labels, scores = np.repeat(video_labels, 25), np.repeat(video_scores, 25)
    groups = np.repeat(np.arange(40), 25)
    by_video = M.bootstrap_ci(M.auc, labels, scores, groups=groups, n=300, seed=1)
    by_frame = M.bootstrap_ci(M.auc, labels, scores, groups=None, n=300, seed=1)
    reference = M.bootstrap_ci(M.auc, video_labels, video_scores, n=300, seed=1)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_video) == pytest.approx(width(reference), rel=0.35)
    assert width(by_frame) < 0.5 * width(by_video)
    assert by_video[0] <= M.auc(labels, scores) <= by_video[1]


def test_mean_corruption_error_is_relative_to_the_reference():
    assert M.corruption_error({"a": 0.2, "b": 0.3}, {"a": 0.2, "b": 0.3}) == pytest.approx(1.0)
    assert M.corruption_error({"a": 0.1}, {"a": 0.4}) == pytest.approx(0.25)
