"""The results API, leaderboards, predictions and the HTML/Markdown report, on two real runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfbench.api import run
from dfbench.config import RunConfig
from dfbench.predictions import FRAME_PREDICTION_COLUMNS, PREDICTION_COLUMNS
from dfbench.reports import LEADERBOARD_COLUMNS
from dfbench.results import load_results


@pytest.fixture(scope="module")
def two_runs(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for detector in ("effb2", "meso4"):
        config = RunConfig(detector=detector, weights="random", frames=2, dataset=str(small_demo / "manifest.csv"),
                           split="train", limit=4, out=root / detector, device="cpu", precision="fp32",
                           finder="mtcnn")   # meso4's own finder (dlib's CNN) costs seconds a frame here
        run(config)
        dirs.append(root / detector)
    return dirs


def test_results_recompute_video_auc_from_the_store(two_runs: list[Path]):
    res = load_results(two_runs)
    assert sorted(res.runs["detector"]) == ["effb2", "meso4"]
    videos = res.videos()
    clean = videos[(videos["detector"] == "effb2") & (videos["cell"] == "none-0")]
    expected = roc_auc_score(clean["label"], clean["score"])
    table = res.metrics(("suite",))
    got = table[(table["detector"] == "effb2") & (table["cell"] == "none-0") & (table["metric"] == "auc")]["value"]
    assert got.item() == pytest.approx(expected)
    frames = res.frames[(res.frames["detector"] == "effb2") & (res.frames["status"] == "ok")]
    per_video = frames.groupby(["sample_id", "cell"])["score"].mean()
    scored = videos[(videos["detector"] == "effb2") & ~videos["fallback"]]
    merged = scored.set_index(["sample_id", "cell"])["score"]
    np.testing.assert_allclose(merged.sort_index().to_numpy(), per_video.sort_index().to_numpy())


def test_matrix_categories_ci_and_mce(two_runs: list[Path]):
    res = load_results(two_runs)
    matrix = res.matrix("auc")
    assert len(matrix) == 2 and {"none-0", "avg_compression", "avg_filter", "avg"} <= set(matrix.columns)
    cats = res.by_category("auc")
    assert set(cats["detector"]) == {"effb2", "meso4"}
    ci = res.with_ci("auc", n=200)
    finite = ci.dropna(subset=["ci_low", "value"])
    assert ((finite["ci_low"] <= finite["value"] + 1e-9) & (finite["value"] <= finite["ci_high"] + 1e-9)).all()
    mce = res.mce("effb2").set_index("detector")["mce"]
    assert mce["effb2"] == pytest.approx(1.0)


@pytest.mark.parametrize("how", ["median", "max", "vote"])
def test_video_aggregations_follow_their_rule(two_runs: list[Path], how: str):
    res = load_results(two_runs[0])
    ok = res.frames[res.frames["status"] == "ok"]
    rule = {"median": np.median, "max": np.max, "vote": lambda s: np.mean(np.asarray(s) >= 0.5)}[how]
    expected = ok.groupby(["sample_id", "cell"])["score"].agg(rule).sort_index()
    videos = res.videos(how)
    got = videos[~videos["fallback"]].set_index(["sample_id", "cell"])["score"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())
    # every other task is a video without a scored frame, at the fallback score
    fallback = videos[videos["fallback"]]
    assert len(videos) == len(res.tasks) and (fallback["score"] == 0.5).all() and (fallback["n_frames"] == 0).all()


def test_clean_calibrated_threshold_is_frozen_for_perturbed_cells(two_runs: list[Path]):
    res = load_results(two_runs[0])
    strict = res.metrics(("suite",), calibration="fpr:0.0")
    loose = res.metrics(("suite",), calibration="eer")
    pick = lambda t: t[t["metric"] == "acc_cal"].set_index("cell")["value"]  # noqa: E731
    assert pick(strict).notna().any() and pick(loose).notna().any()


def test_leaderboard_cli_writes_the_documented_schema(two_runs: list[Path], tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "dfbench", "leaderboard", *map(str, two_runs), "-o",
                          str(tmp_path / "lb.csv"), "--wide", str(tmp_path / "wide.csv"), "--predictions",
                          str(tmp_path / "pred.csv"), "--ci", "50"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    long = pd.read_csv(tmp_path / "lb.csv")
    assert list(long.columns) == LEADERBOARD_COLUMNS
    assert set(long["detector"]) == {"effb2", "meso4"}
    rules = long.groupby("detector")["aggregation"].agg(set).to_dict()
    assert rules == {"effb2": {"frame", "mean"}, "meso4": {"frame", "vote"}}     # each card's video rule
    assert long.loc[long["metric"] == "auc", "ci_low"].notna().any()
    assert len(pd.read_csv(tmp_path / "wide.csv")) == 2
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == PREDICTION_COLUMNS and set(pred["label"]) == {0, 1}


def _dfbench(*args: str | Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "dfbench", *map(str, args)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return out


def test_exported_predictions_are_the_stored_scores_exactly(two_runs: list[Path], tmp_path: Path):
    _dfbench("leaderboard", *two_runs, "-o", tmp_path / "lb.csv", "--predictions", tmp_path / "pred.csv",
             "--frame-predictions", tmp_path / "frames.csv")
    res = load_results(two_runs)
    pred = pd.read_csv(tmp_path / "pred.csv")
    videos = res.videos().set_index(["run_id", "sample_id", "cell"])["score"]
    got = pred.set_index(["run_id", "sample_id", "cell"])["score"].reindex(videos.index)
    assert (got.to_numpy() == videos.to_numpy()).all()                      # bit for bit, not to 6 decimals
    frames = pd.read_csv(tmp_path / "frames.csv")
    assert list(frames.columns) == FRAME_PREDICTION_COLUMNS and len(frames) == len(res.frames)
    stored = res.frames.set_index(["run_id", "sample_id", "cell", "frame"])["score"]
    back = frames.set_index(["run_id", "sample_id", "cell", "frame"])["score"].reindex(stored.index)
    np.testing.assert_array_equal(back.to_numpy(), stored.to_numpy())       # NaN where a frame had no score
    # a user's AUC from the file is the leaderboard's (the demo run gave 0.493 against 0.576 at 6 decimals)
    long = pd.read_csv(tmp_path / "lb.csv")
    video_auc = long[(long["metric"] == "auc") & (long["aggregation"] != "frame")].set_index(["run_id", "cell"])
    for (run_id, cell), g in pred.groupby(["run_id", "cell"]):
        assert roc_auc_score(g["label"], g["score"]) == pytest.approx(video_auc.loc[(run_id, cell), "value"],
                                                                      abs=5e-7)


def test_score_reproduces_the_runs_leaderboard_from_their_predictions(two_runs: list[Path], tmp_path: Path,
                                                                      small_demo: Path):
    import hashlib

    _dfbench("leaderboard", *two_runs, "-o", tmp_path / "lb.csv", "--predictions", tmp_path / "pred.csv",
             "--frame-predictions", tmp_path / "frames.csv", "--ci", "20")
    out = _dfbench("score", tmp_path / "pred.csv", tmp_path / "frames.csv", "--dataset",
                   small_demo / "manifest.csv", "--split", "train", "--limit", "4", "--frames", "2", "--suite",
                   "video-ops", "-o", tmp_path / "scored.csv", "--ci", "20")
    assert "every one of 4 samples x 13 cells present" in " ".join(out.stdout.split())
    original, scored = pd.read_csv(tmp_path / "lb.csv"), pd.read_csv(tmp_path / "scored.csv")
    sha = hashlib.sha256((tmp_path / "pred.csv").read_bytes() + (tmp_path / "frames.csv").read_bytes()).hexdigest()
    assert (scored["weights_sha256"] == sha).all()
    same = [c for c in LEADERBOARD_COLUMNS if c != "weights_sha256"]
    pd.testing.assert_frame_equal(scored[same], original[same])
    assert len(scored) == len(original) > 0


def test_score_takes_video_rows_alone_and_names_what_is_missing_or_extra(two_runs: list[Path], tmp_path: Path,
                                                                         small_demo: Path):
    from dfbench import score
    from dfbench.errors import DatasetError

    _dfbench("leaderboard", *two_runs[:1], "-o", tmp_path / "lb.csv", "--predictions", tmp_path / "pred.csv")
    pred = pd.read_csv(tmp_path / "pred.csv", dtype=str, keep_default_na=False)
    select = {"dataset": str(small_demo / "manifest.csv"), "split": "train", "limit": 4, "frames": 2}
    # someone else's file: three columns only, no frame rows
    pred[["sample_id", "cell", "score"]].to_csv(tmp_path / "theirs.csv", index=False)
    res = score(tmp_path / "theirs.csv", **select)
    original = load_results(two_runs[0]).metrics(("suite",))
    mine = res.metrics(("suite",))
    pick = lambda t: t[t["metric"] == "auc"].set_index("cell")["value"]   # noqa: E731
    pd.testing.assert_series_equal(pick(mine), pick(original))
    assert (res.runs["detector"] == "predictions").all() and (res.runs["weights"] == "theirs.csv").all()
    cases = {
        "missing": pred.iloc[1:],
        "repeated": pd.concat([pred, pred.iloc[:1]]),
        "not in the dataset and suite": pd.concat([pred, pred.iloc[:1].assign(cell="blur-99")]),
    }
    for what, table in cases.items():
        table.to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(DatasetError, match=f"1 {what} \\(e.g. \\("):
            score(tmp_path / "bad.csv", **select)
    flipped = pred.assign(label=(1 - pred["label"].astype(int)).astype(str))
    flipped.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DatasetError, match="labels come from the dataset"):
        score(tmp_path / "bad.csv", **select)


def test_report_is_one_self_contained_html_file(two_runs: list[Path], tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "dfbench", "report", *map(str, two_runs), "-o",
                          str(tmp_path / "report.html")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report.html").read_text()
    for title in ("AUC per operation", "Accuracy at 0.5", "Degradation curves", "ROC curves", "Failures per cell",
                  "Provenance"):
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") >= 3
    from dfbench.report_html import _by_cell

    by_cell = _by_cell(load_results(two_runs), "auc")   # one row per cell, per category mean, and the overall mean
    categories = {c for c in by_cell["category"] if c not in ("clean", "all perturbed")}
    assert len(by_cell) == 13 + len(categories) + 1 and by_cell["cell"].is_unique is False
    assert by_cell.iloc[:13]["cell"].tolist()[0] == "none-0" and by_cell.iloc[:13]["cell"].is_unique
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_markdown_report_writes_its_figures_beside_it(two_runs: list[Path], tmp_path: Path):
    from dfbench.report_html import write_report

    write_report(load_results(two_runs), two_runs, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "## AUC per operation" in text and "| category | cell |" in text
    assert len(list((tmp_path / "report_files").glob("*.png"))) >= 3


@pytest.mark.slow
def test_report_renders_in_headless_chromium(two_runs: list[Path], tmp_path: Path):
    from PIL import Image

    from dfbench.report_html import write_report

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the slow tests need Debian's chromium package (apt-get install chromium)"
    page = write_report(load_results(two_runs), two_runs, tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "AUC per operation" in dom.stdout and "ROC curves" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "the screenshot is blank"


def test_wide_tables_have_one_row_per_run_even_when_weights_differ():
    from dfbench.results import spread

    table = pd.DataFrame({"detector": ["effb2", "effb2", "xception", "xception"],
                          "weights": ["demo", "demo", "all_c23.p", "all_c23.p"],
                          "cell": ["none-0", "hflip-1", "none-0", "hflip-1"], "value": [0.9, np.nan, 0.5, 0.6]})
    wide = spread(table, ["detector", "weights"], "cell")
    assert wide.index.tolist() == [("effb2", "demo"), ("xception", "all_c23.p")]   # not 2 x 2 combinations
    assert np.isnan(wide.loc[("effb2", "demo"), "hflip-1"]) and wide.loc[("xception", "all_c23.p"), "none-0"] == 0.5
