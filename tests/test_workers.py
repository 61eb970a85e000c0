"""Gathering in worker processes (`RunConfig.workers`): the same rows as one process, failures still recorded
per sample, and the default (none on a CPU) chosen by device."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from dfbench.api import run
from dfbench.config import RunConfig
from dfbench.errors import ConfigError
from dfbench.pipeline import resolve_workers
from dfbench.scoring import padded_rows, resolve_batch_size

SUITE = "name: workers-test\nversion: 1\ncells: [none, {op: h264_crf, level: 40}, {op: downscale, level: 2}]\n"


def _config(manifest: Path, suite: Path, out: Path, workers: int) -> RunConfig:
    return RunConfig(detector="effb2", suite=str(suite), dataset=str(manifest), weights="random", frames=2, out=out,
                     device="cpu", precision="fp32", split="train", face_cache=False, workers=workers)


def _rows(summary) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = summary.results.frames.sort_values(["sample_id", "cell", "frame"]).reset_index(drop=True)
    tasks = summary.results.tasks.sort_values(["sample_id", "cell"]).reset_index(drop=True)
    return (frames[["sample_id", "cell", "frame", "status", "n_faces", "score"]],
            tasks[["sample_id", "cell", "status", "n_frames"]])


def test_workers_score_exactly_what_one_process_scores(small_demo: Path, tmp_path: Path):
    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    (demo / "real" / "clip_001.mp4").write_bytes(b"not a video at all")     # one unreadable sample
    suite = tmp_path / "workers-test.yaml"
    suite.write_text(SUITE)
    one = run(_config(demo / "manifest.csv", suite, tmp_path / "one", workers=0))
    two = run(_config(demo / "manifest.csv", suite, tmp_path / "two", workers=2))
    assert one.run_id == two.run_id
    frames_one, tasks_one = _rows(one)
    frames_two, tasks_two = _rows(two)
    pd.testing.assert_frame_equal(frames_one, frames_two)
    pd.testing.assert_frame_equal(tasks_one, tasks_two)
    status = tasks_two.set_index(["sample_id", "cell"])["status"]
    assert set(status.loc["real/clip_001"]) == {"decode_error"}
    assert set(status.drop(index="real/clip_001", level=0)) == {"ok"} and len(status) == 6 * 3
    assert (frames_two["status"] == "ok").sum() > 0
    # the workers' stage times reach the report: every sampled frame of the 5 readable samples was searched
    assert two.stages["faces"]["items"] == one.stages["faces"]["items"] == 5 * 3 * 2
    # the scoring process's waits on the workers: one per sample, none without workers
    assert two.stages["wait_for_workers"]["items"] == 6 and two.stages["wait_for_workers"]["seconds"] > 0
    assert "wait_for_workers" not in one.stages


def test_default_workers_follow_the_device():
    assert resolve_workers(None, "cpu", 100) == 0
    assert 1 <= resolve_workers(None, "cuda:0", 100) <= 8
    assert resolve_workers(6, "cpu", 3) == 3           # never more processes than samples
    assert resolve_workers(None, "cuda:0", 0) == 0
    with pytest.raises(ConfigError, match="--workers"):
        RunConfig(detector="effb2", workers=-1)


def test_default_batch_size_follows_the_device():
    assert resolve_batch_size(None, "cpu") == 16
    assert resolve_batch_size(None, "cuda:1") == 256
    assert resolve_batch_size(None, "mps") == 32
    assert resolve_batch_size(7, "cuda") == 7
    with pytest.raises(ConfigError, match="--batch-size"):
        RunConfig(detector="effb2", batch_size=0)


def test_cuda_batches_come_in_at_most_four_shapes():
    shapes = {padded_rows(n, 256, "cuda:0") for n in range(1, 257)}
    assert shapes == {64, 128, 192, 256}
    assert padded_rows(65, 256, "cuda") == 128 and padded_rows(256, 256, "cuda") == 256
    assert padded_rows(3, 2, "cuda") == 3                    # a full batch is never padded
    assert {padded_rows(n, 256, "cpu") for n in (1, 65, 200)} == {1, 65, 200}


@pytest.mark.slow   # two runs of the demo clips; in make test-slow
def test_padding_rows_change_no_score(small_demo: Path, tmp_path: Path, monkeypatch):
    """The padded path (CUDA's) run on the CPU with batches of 8 (shapes 2, 4, 6, 8): the model sees only those
    sizes, padding did happen, and every frame's score is the one the unpadded run gives."""
    from dfbench import scoring
    from dfbench.detectors.base import DetectorAdapter

    suite = tmp_path / "workers-test.yaml"
    suite.write_text(SUITE)
    seen: list[int] = []
    predict_all = DetectorAdapter.predict_all

    def recording(self, faces, copy_back=True):
        seen.append(len(faces))
        return predict_all(self, faces, copy_back)

    monkeypatch.setattr(DetectorAdapter, "predict_all", recording)
    config = replace(_config(small_demo / "manifest.csv", suite, tmp_path / "plain", workers=0), frames=3,
                     batch_size=8)
    plain = run(config)
    plain_sizes, seen[:] = list(seen), []
    monkeypatch.setattr(scoring, "padded_rows", lambda n, size, device: padded_rows(n, size, "cuda"))
    padded = run(replace(config, out=tmp_path / "padded"))
    assert set(seen) <= {2, 4, 6, 8} and sum(seen) > sum(plain_sizes)
    assert len(seen) == len(plain_sizes)
    frames_plain, _ = _rows(plain)
    frames_padded, _ = _rows(padded)
    assert frames_plain["score"].notna().sum() > 0
    pd.testing.assert_frame_equal(frames_plain, frames_padded, check_exact=False, atol=1e-5)
