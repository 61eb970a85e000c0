"""Runs end to end on small data: outputs, resume after a kill, copies that score like the in-process cells."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import dfbench.pipeline as pipeline
from dfbench.api import load_results, run
from dfbench.config import RunConfig
from dfbench.copies import write_dataset_copies
from dfbench.errors import ConfigError, StoreError

CELLS = 13


def _config(demo: Path, out: Path, **kw) -> RunConfig:
    options = {"detector": "effb2", "dataset": str(demo / "manifest.csv"), "weights": "random", "frames": 2,
               "out": out, "device": "cpu", "precision": "fp32"}
    options.update(kw)
    return RunConfig(**options)


def test_run_writes_store_run_json_and_the_three_csv_files(small_demo: Path, tmp_path: Path):
    summary = run(_config(small_demo, tmp_path / "r"))
    for name in ("results.csv", "matrix_auc.csv", "matrix_acc.csv", "run.json", "scores.sqlite"):
        assert (tmp_path / "r" / name).is_file(), name
    results = pd.read_csv(tmp_path / "r" / "results.csv")
    assert list(results.columns) == ["detector", "weights", "weights_sha256", "dataset", "cell", "op", "level",
                                     "category", "metric", "aggregation", "value", "change", "n_videos", "n_frames",
                                     "n_no_face", "n_errors", "n_fallback", "finder", "no_face", "flag",
                                     "subgroup", "calibrate_on", "cal_threshold"]   # README "Outputs"
    metrics = {"auc", "acc", "acc_cal", "eer", "ap", "f1", "precision", "recall", "specificity", "fpr", "tpr_at_1fpr"}
    assert set(results["metric"]) == metrics
    assert len(results) == CELLS * 2 * len(metrics)  # every cell, at frame and video level, even when empty
    assert set(results["aggregation"]) == {"frame", "mean"}
    matrix = pd.read_csv(tmp_path / "r" / "matrix_auc.csv")
    assert len(matrix) == 1 and {"none-0", "avg_compression", "avg", "n_no_face[vflip-1]"} <= set(matrix.columns)
    clean = results[(results["op"] == "none") & (results["metric"] == "auc")]
    assert (clean["n_frames"] + clean["n_no_face"] == 2 * 2).all()  # 2 test videos x 2 frames
    video = results[(results["aggregation"] != "frame") & (results["metric"] == "auc")]
    assert (video["n_videos"] == 2).all() and len(video) == CELLS     # the same two videos in every cell
    frames = results[(results["aggregation"] == "frame") & (results["metric"] == "auc")].set_index("cell")
    no_frame = frames["n_frames"] == 0                                 # a cell where neither video has a face
    assert (video.set_index("cell").loc[no_frame[no_frame].index, "n_fallback"] == 2).all()
    assert set(results["finder"]) == {"mtcnn"} and set(results["no_face"]) == {"fallback"}
    assert summary.stages["inference"]["items"] > 0
    recomputed = load_results(tmp_path / "r").metrics()
    pd.testing.assert_frame_equal(recomputed, summary.results.metrics())
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["batch_size"] == 16 and record["config"]["batch_size"] is None  # the size used, not the option


def test_rerunning_the_same_command_recomputes_nothing(small_demo: Path, tmp_path: Path, monkeypatch):
    run(_config(small_demo, tmp_path / "r"))
    calls = []
    original = pipeline.score_sample
    monkeypatch.setattr(pipeline, "score_sample", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    summary = run(_config(small_demo, tmp_path / "r"))
    assert calls == [] and summary.n_resumed == 2


def test_other_settings_into_the_same_folder_are_refused(small_demo: Path, tmp_path: Path):
    run(_config(small_demo, tmp_path / "r"))
    with pytest.raises(StoreError, match="holds a run with other settings"):
        run(_config(small_demo, tmp_path / "r", frames=3))


def test_user_dataset_without_weights_is_a_clear_error(small_demo: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="--weights is required"):
        run(_config(small_demo, tmp_path / "r", weights=None))


def _rows(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        return pd.read_sql_query("SELECT sample_id, cell, frame, status, score FROM frames ORDER BY 1, 2, 3", con)


@pytest.mark.slow
def test_a_killed_run_resumes_without_recomputing_finished_samples(small_demo: Path, tmp_path: Path):
    args = [sys.executable, "-m", "dfbench", "run", "--detector", "effb2", "--weights", "random", "--frames", "2",
            "--dataset", str(small_demo / "manifest.csv"), "--split", "train", "--device", "cpu",
            "--precision", "fp32"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "scores.sqlite"
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db) as con:
                done = con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            if done >= CELLS:
                break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= CELLS, "the run never committed a sample"
    with sqlite3.connect(db) as con:
        before = con.execute("SELECT rowid, sample_id, cell FROM tasks").fetchall()
    assert 0 < len(before) < 6 * CELLS
    subprocess.run(args + ["--out", str(killed)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(args + ["--out", str(full)], check=True, stdout=subprocess.DEVNULL)
    with sqlite3.connect(db) as con:
        after = con.execute("SELECT rowid, sample_id, cell FROM tasks").fetchall()
    assert set(before) <= set(after), "a finished (sample, cell) was rewritten"
    assert len(after) == len({(s, c) for _, s, c in after}) == 6 * CELLS
    pd.testing.assert_frame_equal(_rows(db), _rows(full / "scores.sqlite"))


@pytest.mark.slow
def test_scoring_written_copies_gives_the_in_process_scores(small_demo: Path, tmp_path: Path):
    manifest = str(small_demo / "manifest.csv")
    inproc = run(_config(small_demo, tmp_path / "inproc", batch_size=1))
    report = write_dataset_copies("video-ops", manifest, tmp_path / "copies", split="test")
    assert report.errors == {} and report.n_files == 2 * CELLS
    expected = _rows(tmp_path / "inproc" / "scores.sqlite")
    # Every cell's frames are checked bit for bit in test_engine; here one cell per kind of chain goes through
    # the whole scoring path: clean byte copy, encoder output, temporal filter, geometry change, colour filter.
    for cell in ("none-0", "h264_crf-40", "noise_t-20", "downscale-4", "vintage-1"):
        copy_manifest = tmp_path / "copies" / cell / "manifest.csv"
        run(_config(small_demo, tmp_path / f"copy-{cell}", dataset=str(copy_manifest), suite="clean", batch_size=1))
        got = _rows(tmp_path / f"copy-{cell}" / "scores.sqlite").drop(columns="cell")
        want = expected[expected["cell"] == cell].drop(columns="cell").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=cell)
    assert inproc.n_samples == 2
