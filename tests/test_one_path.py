"""`run`, `predict` and training share one gather and one scoring path, one default-weights rule, and one metric
table; a run computes each metric table once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfbench import metrics, results
from dfbench.api import run
from dfbench.config import default_weights
from dfbench.data import load_dataset
from dfbench.detectors import get_detector
from dfbench.errors import ConfigError, UnknownNameError
from dfbench.faces.cache import FaceCache
from dfbench.predict import predict_paths

FRAMES = 4


@pytest.fixture(scope="module")
def two_videos(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of one real and one fake demo video (a face in every frame) and a JPEG photo (4:2:0, whose
    chroma ffmpeg and Pillow upsample differently: a reader that decodes it another way scores other pixels)."""
    import cv2
    from PIL import Image

    folder = tmp_path_factory.mktemp("two")
    table = pd.read_csv(small_demo / "manifest.csv", dtype=str, keep_default_na=False)
    table = table[table["sample_id"].isin(["real/clip_003", "fake/clip_002"])].assign(split="")
    table["path"] = [str(small_demo / p) for p in table["path"]]
    capture = cv2.VideoCapture(str(small_demo / "fake" / "clip_003.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    Image.fromarray(frame[:, :, ::-1]).save(folder / "photo.jpg", quality=80, subsampling=2)
    photo = {"sample_id": "fake/photo", "path": str(folder / "photo.jpg"), "label": "1", "split": "",
             "method": "", "group": ""}
    pd.concat([table, pd.DataFrame([photo])]).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def clean_run(two_videos: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clean-run")
    return run(detector="effb2", weights="demo", suite="clean", dataset=str(two_videos), frames=FRAMES,
               device="cpu", precision="fp32", out=out / "r", keep_crops=True)


def test_predict_gives_the_video_score_of_run_suite_clean(two_videos: Path, clean_run):
    videos = clean_run.results.videos().set_index("sample_id")["score"]
    table = pd.read_csv(two_videos, dtype=str)
    adapter = get_detector("effb2")
    adapter.load("demo", device="cpu", precision="fp32")
    predictions = predict_paths(adapter, [Path(p) for p in table["path"]], frames=FRAMES)
    assert [p.status for p in predictions] == ["ok", "ok", "ok"]
    for sample_id, prediction in zip(table["sample_id"], predictions, strict=True):
        assert prediction.n_frames == (1 if prediction.kind == "image" else FRAMES)
        assert prediction.score == pytest.approx(videos[sample_id], abs=1e-12)
    assert videos.round(6).nunique() == 3                   # three different scores, each reproduced


def test_training_crops_are_the_crops_run_scores(two_videos: Path, clean_run, isolated_cache: Path):
    from dfbench.training.data import extract_crops

    adapter = get_detector("effb2")
    dataset = load_dataset(str(two_videos))
    crops = extract_crops(dataset, adapter.card.crop, FRAMES)
    suite = clean_run.results.runs.iloc[0]["provenance"]["suite_hash"]
    cache = FaceCache(isolated_cache / "faces", suite, {"finder": "mtcnn", "max_side": 640, "min_face_px": 40,
                                                        "min_confidence": 0.9}, keep_crops=True)
    kept = [cache.crops(row.sample_id, Path(row.path), adapter.card.crop, ["none-0"])
            for row in dataset.table.itertuples()]
    assert all(k is not None for k in kept)
    np.testing.assert_array_equal(crops.images, np.concatenate([k.crops for k in kept]))


def test_one_default_weights_rule_for_run_and_predict():
    assert default_weights(None, "demo", True) == "demo"
    assert default_weights(None, "demo", False) == "random"
    assert default_weights("w.pt", "dataset 'x'", True) == "w.pt"
    with pytest.raises(ConfigError, match="--weights is required for dataset 'x'"):
        default_weights(None, "dataset 'x'", True)


def test_predict_without_weights_is_the_same_error_as_run(small_demo: Path):
    import subprocess
    import sys

    video = small_demo / "real" / "clip_000.mp4"
    result = subprocess.run([sys.executable, "-m", "dfbench", "predict", "--detector", "effb2", str(video)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "--weights is required" in result.stderr and "Traceback" not in result.stderr


def test_a_run_computes_each_metric_table_once(two_videos: Path, tmp_path: Path, monkeypatch):
    calls: list[str] = []
    original = results._metric_table
    monkeypatch.setattr(results, "_metric_table", lambda rows, cells, agg, *a: calls.append(agg) or original(
        rows, cells, agg, *a))
    summary = run(detector="effb2", weights="random", suite="clean", dataset=str(two_videos), frames=1,
                  device="cpu", precision="fp32", out=tmp_path / "r")
    summary.matrix("auc")
    assert sorted(calls) == ["frame", "suite"]


def test_the_metric_table_is_what_every_table_computes(clean_run):
    table = clean_run.results.metrics()
    assert set(table["metric"]) <= set(metrics.METRICS)
    two_class = {m.name for m in metrics.METRICS.values() if not m.classes}
    assert set(table["metric"]) == two_class                  # effb2 has no class outputs
    assert not metrics.METRICS["eer"].higher_is_better and not metrics.METRICS["fpr"].higher_is_better
    assert metrics.METRICS["auc"].higher_is_better
    from dfbench.reports import RESULT_METRICS

    assert tuple(metrics.METRICS) == RESULT_METRICS
    with pytest.raises(UnknownNameError, match="Did you mean 'auc'"):
        metrics.metric("acu")


def test_mce_of_a_lower_is_better_metric_is_the_metric_itself():
    """Two detectors on two operations: mCE from EER is sum(EER) / sum(reference EER), not of 1 - EER."""
    names = ("none-0", "blur-1", "noise-1")
    cells = pd.DataFrame([{"run_id": r, "detector": d, "weights": "w", "dataset": "x", "cell": c, "op": c[:-2],
                           "level": "1", "category": "clean" if c == "none-0" else c[:-2], "position": i}
                          for r, d in (("r1", "a"), ("r2", "b")) for i, c in enumerate(names)])
    rows = []
    rng = np.random.default_rng(0)
    for run_id, detector in (("r1", "a"), ("r2", "b")):
        for cell in ("none-0", "blur-1", "noise-1"):
            for k in range(40):
                label = k % 2
                noise = 0.3 if detector == "a" else 0.6
                rows.append({"run_id": run_id, "detector": detector, "weights": "w", "dataset": "x", "suite": "s",
                             "cell": cell, "sample_id": f"v{k}", "label": label, "method": "", "group": "",
                             "frame": 0, "status": "ok", "probs": None,
                             "score": float(np.clip(label * 0.5 + 0.25 + rng.normal(0, noise), 0, 1))})
    frames = pd.DataFrame(rows).merge(cells[["run_id", "cell", "op", "level", "category", "position"]],
                                      on=["run_id", "cell"])
    runs = pd.DataFrame([{"run_id": r, "detector": d, "weights": "w", "weights_sha256": "", "dataset": "x",
                          "suite": "s", "aggregation": "mean", "provenance": {}, "n_tasks": 120}
                         for r, d in (("r1", "a"), ("r2", "b"))])
    tasks = frames[["run_id", "sample_id", "cell"]].drop_duplicates().assign(status="ok")
    res = results.Results(frames, tasks, runs, cells)
    table = res.metrics(("suite",))
    eer = table[(table["metric"] == "eer") & (table["category"] != "clean")].set_index(["run_id", "op"])["value"]
    expected = np.mean([eer[("r2", op)] / eer[("r1", op)] for op in ("blur", "noise")])
    got = res.mce("a", metric="eer").set_index("detector")["mce"]
    assert got["b"] == pytest.approx(expected) and got["a"] == pytest.approx(1.0)
    assert got["b"] > 1                                        # the noisier detector has the larger error
    auc = table[(table["metric"] == "auc") & (table["category"] != "clean")].set_index(["run_id", "op"])["value"]
    from_auc = res.mce("a", metric="auc").set_index("detector")["mce"]
    assert from_auc["b"] == pytest.approx(np.mean([(1 - auc[("r2", op)]) / (1 - auc[("r1", op)])
                                                   for op in ("blur", "noise")]))


@pytest.mark.parametrize(("lookup", "wrong", "near"), [
    ("operation", "hflp", "hflip"), ("detector", "efb2", "effb2"), ("finder", "mtccn", "mtcnn"),
    ("layout", "fpp", "ffpp"), ("recipe", "sbii", "sbi"), ("suite", "video-opps", "video-ops"),
])
def test_every_registry_says_did_you_mean(lookup: str, wrong: str, near: str, tmp_path: Path, monkeypatch):
    from dfbench.config import load_suite
    from dfbench.faces import make_finder
    from dfbench.perturbations import OPERATIONS
    from dfbench.training.recipes import settings_for

    monkeypatch.chdir(tmp_path)
    calls = {"operation": lambda: OPERATIONS.get(wrong), "detector": lambda: get_detector(wrong),
             "finder": lambda: make_finder(wrong), "layout": lambda: load_dataset(f"{wrong}:/no/such/root"),
             "recipe": lambda: settings_for(wrong, "effb2", None), "suite": lambda: load_suite(wrong)}
    with pytest.raises(UnknownNameError) as caught:
        calls[lookup]()
    message = caught.value.args[0]
    assert message.startswith("Unknown ") and f"Did you mean '{near}'" in message and "See '" in message
