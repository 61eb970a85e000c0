"""Metrics equal scikit-learn on seeded data with ties; video scores are means over scored frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from dfbench.errors import ConfigError
from dfbench.metrics import accuracy, auc, cell_metrics, video_scores


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_accuracy_equal_scikit_learn_with_ties(seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    scores = np.round(rng.random(200) * 0.6 + labels * 0.3, 1)  # coarse rounding makes many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert accuracy(labels, scores) == pytest.approx(accuracy_score(labels, scores >= 0.5))


def test_one_class_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="AUC needs both classes"):
        auc([1, 1, 1], [0.2, 0.3, 0.4])


def test_inputs_are_not_mutated():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.3, 0.2, 0.1, 0.9])
    auc(labels, scores)
    assert labels.tolist() == [0, 1, 0, 1] and scores.tolist() == [0.3, 0.2, 0.1, 0.9]


def test_video_scores_average_only_scored_frames():
    frames = pd.DataFrame({"sample_id": ["a", "a", "a", "b"], "cell": ["c"] * 4,
                           "status": ["ok", "ok", "no_face", "no_face"], "score": [0.2, 0.6, None, None]})
    out = video_scores(frames)
    assert out.to_dict("records") == [{"sample_id": "a", "cell": "c", "score": pytest.approx(0.4), "n_frames": 2}]


def test_cell_metrics_at_frame_and_video_level_match_scikit_learn():
    rng = np.random.default_rng(0)
    rows = []
    labels = {}
    for v in range(20):
        label = v % 2
        labels[f"v{v}"] = label
        for _ in range(4):
            rows.append({"sample_id": f"v{v}", "cell": "x", "status": "ok", "score": rng.random() * 0.7 + 0.3 * label})
    frames = pd.DataFrame(rows)
    table = cell_metrics(frames, pd.Series(labels), ["x"])
    per_video = frames.groupby("sample_id")["score"].mean()
    expected_video = roc_auc_score([labels[s] for s in per_video.index], per_video.to_numpy())
    expected_frame = roc_auc_score(frames["sample_id"].map(labels), frames["score"])
    got = table.set_index(["metric", "aggregation"])["value"]
    assert got[("auc", "mean")] == pytest.approx(expected_video)
    assert got[("auc", "frame")] == pytest.approx(expected_frame)
    assert set(table["n_videos"]) == {20}
