"""The face cache: a second detector on the same data and suite reuses the faces (and the kept crops) of the
first, scores exactly what it would have scored without them, and never trusts a stale or broken file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dfbench.gather as gather
import dfbench.pipeline as pipeline
from dfbench.api import run
from dfbench.config import RunConfig
from dfbench.faces import CropSpec, MTCNNFinder, SampleCrops
from dfbench.faces.cache import FaceCache
from dfbench.video.engine import CellFailure

SUITE = "name: cache-test\nversion: 1\ncells: [none, hflip, {op: h264_crf, level: 40}, {op: downscale, level: 2}]\n"


class ForbiddenFinder(MTCNNFinder):
    """Describes itself as the default finder, so it shares its cache key, but must never be called."""

    def find(self, frame):
        raise AssertionError("the face finder ran although the cache holds the faces")


@pytest.fixture()
def suite(tmp_path: Path) -> str:
    path = tmp_path / "cache-test.yaml"
    path.write_text(SUITE)
    return str(path)


@pytest.fixture()
def decodes(monkeypatch) -> list[list[str]]:
    """The cells of every decode-and-perturb pass the pipeline starts."""
    calls: list[list[str]] = []
    original = gather.sample_frames

    def counting(path, plans, *args, **kwargs):
        calls.append([p.cell_id for p in plans])
        return original(path, plans, *args, **kwargs)

    monkeypatch.setattr(gather, "sample_frames", counting)
    return calls


def _config(demo: Path, suite: str, out: Path, detector: str = "effb2", **extra) -> RunConfig:
    return RunConfig(detector=detector, suite=suite, dataset=str(demo / "manifest.csv"), weights="random",
                     frames=2, out=out, device="cpu", precision="fp32", limit=4, split="train", **extra)


def _scores(summary) -> pd.DataFrame:
    frames = summary.results.frames
    return frames.sort_values(["sample_id", "cell", "frame"])[["sample_id", "cell", "frame", "status", "score"]]


def _forbid_finding(monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "choose_finder", lambda *args, **kwargs: (ForbiddenFinder(), None))


def test_second_detector_with_the_same_crop_spec_only_runs_its_model(small_demo: Path, suite: str, tmp_path: Path,
                                                                       monkeypatch, decodes):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(cache))
    first = run(_config(small_demo, suite, tmp_path / "effb2", keep_crops=True))
    assert len(decodes) == 4 and first.stages["faces"]["items"] == 4 * 4 * 2
    assert len(list(cache.rglob("*.npz"))) == 4 and len(list(cache.rglob("*.json"))) == 4

    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(tmp_path / "empty"))
    fresh = run(_config(small_demo, suite, tmp_path / "lite-fresh", "efficientnet_lite0"))
    assert len(list(cache.rglob("*.npy"))) == 4
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(cache))
    decodes.clear()
    _forbid_finding(monkeypatch)
    monkeypatch.setattr(gather, "probe_video", _forbidden("probed a video"))   # the sampled frames are kept
    second = run(_config(small_demo, suite, tmp_path / "lite", "efficientnet_lite0"))
    assert decodes == []                                    # nothing decoded, nothing found
    assert set(second.stages) == {"cached_crops", "inference", "store"}
    assert second.stages["cached_crops"]["items"] == second.stages["inference"]["items"] > 0
    assert second.run_id == fresh.run_id                    # the cache is not part of what a run is
    pd.testing.assert_frame_equal(_scores(second), _scores(fresh))

    # with workers asked for, kept crops are opened by the scoring process and no worker is started
    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", _forbidden("started worker processes"))
    third = run(_config(small_demo, suite, tmp_path / "lite-workers", "efficientnet_lite0", workers=2))
    assert third.stages["wait_for_workers"]["items"] == 4
    pd.testing.assert_frame_equal(_scores(third), _scores(fresh))


def _forbidden(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"the run {what} although the face cache holds the crops")
    return fail


def test_kept_crops_are_memory_mapped_and_a_pair_of_files_is_never_mixed(tmp_path: Path, caplog):
    spec = CropSpec(size=8)
    cache = FaceCache(tmp_path / "faces", "suite-hash", {"finder": "x"}, keep_crops=True)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"stands in for a video")
    crops = np.arange(5 * 8 * 8 * 3, dtype=np.uint8).reshape(5, 8, 8, 3)
    owners = [("none-0", 0), ("none-0", 9), ("hflip-1", 0), ("hflip-1", 9), ("hflip-1", 9)]
    seen = {("none-0", 0): 1, ("none-0", 9): 1, ("hflip-1", 0): 1, ("hflip-1", 9): 2}
    cache.save(video, SampleCrops("s", ("none-0", "hflip-1"), [0, 9], crops, owners, seen, {}, {}), spec)

    every = cache.crops("s", video, spec, ["none-0", "hflip-1"])
    assert isinstance(every.crops, np.memmap) and every.indices == [0, 9] and every.owners == owners
    np.testing.assert_array_equal(every.crops, crops)
    flipped = cache.crops("s", video, spec, ["hflip-1"])            # a subset is read, not mapped
    assert not isinstance(flipped.crops, np.memmap) and flipped.owners == owners[2:]
    np.testing.assert_array_equal(flipped.crops, crops[2:])
    assert flipped.seen == {("hflip-1", 0): 1, ("hflip-1", 9): 2}
    assert cache.crops("s", video, spec, ["none-0", "grayscale-1"]) is None   # a cell that was not kept
    assert cache.crops("s", video, CropSpec(size=16), ["none-0"]) is None     # another crop spec

    cache.save(video, SampleCrops("s", ("none-0", "hflip-1"), [0, 9], crops[::-1], owners, seen, {}, {}), spec)
    (pixels,) = list(tmp_path.rglob("*.npy"))                   # the superseded crops file is gone
    np.testing.assert_array_equal(cache.crops("s", video, spec, ["none-0"]).crops, crops[::-1][:2])
    np.save(pixels, crops[:3])                                  # a crops file that does not match its index
    assert cache.crops("s", video, spec, ["none-0"]) is None
    pixels.unlink()                                             # an index whose crops file is missing
    assert cache.crops("s", video, spec, ["none-0"]) is None
    assert caplog.text.count("Ignoring unreadable crop cache file") == 2


def test_a_detector_with_another_crop_spec_reuses_the_faces_and_cuts_its_own_crops(small_demo: Path, suite: str,
                                                                                  tmp_path: Path, monkeypatch,
                                                                                  decodes):
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    run(_config(small_demo, suite, tmp_path / "effb2", keep_crops=True))
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(tmp_path / "empty"))
    # meso4's own finder (face_recognition) has its own cache key: with mtcnn it reuses effb2's faces
    fresh = run(_config(small_demo, suite, tmp_path / "meso-fresh", "meso4", finder="mtcnn"))
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    decodes.clear()
    _forbid_finding(monkeypatch)
    second = run(_config(small_demo, suite, tmp_path / "meso", "meso4", finder="mtcnn"))   # 256 px: other crops
    assert len(decodes) == 4 and "faces" not in second.stages
    assert second.stages["cached_faces"]["items"] == 4 * 4 * 2
    pd.testing.assert_frame_equal(_scores(second), _scores(fresh))


@pytest.mark.slow
def test_faces_clean_runs_reuse_their_own_mapped_faces(small_demo: Path, suite: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first = run(_config(small_demo, suite, tmp_path / "a", faces="clean"))
    _forbid_finding(monkeypatch)
    again = run(_config(small_demo, suite, tmp_path / "b", faces="clean"))
    assert "faces" not in again.stages
    pd.testing.assert_frame_equal(_scores(again), _scores(first))


@pytest.mark.slow
def test_broken_or_stale_cache_files_are_recomputed_not_trusted(small_demo: Path, suite: str, tmp_path: Path,
                                                                monkeypatch, caplog):
    cache, demo = tmp_path / "cache", tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(cache))
    first = run(_config(demo, suite, tmp_path / "a", keep_crops=True))
    broken_json, broken_npz = sorted(cache.rglob("*.json"))[0], sorted(cache.rglob("*.npz"))[0]
    broken_json.write_text('{"cells": ["none-0"], "frames": [["none-0", 3, [[1, 2]]]]')   # cut short
    broken_npz.write_bytes(broken_npz.read_bytes()[:1000])
    again = run(_config(demo, suite, tmp_path / "b"))
    assert again.stages["faces"]["items"] == 4 * 2          # one sample found again, three from the cache
    assert "Ignoring unreadable" in caplog.text
    pd.testing.assert_frame_equal(_scores(again), _scores(first))

    for video in demo.rglob("*.mp4"):                       # a file changed in place is a new file
        os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    third = run(_config(demo, suite, tmp_path / "c"))
    assert third.stages["faces"]["items"] == 4 * 4 * 2


def test_no_face_cache_reads_and_writes_nothing(small_demo: Path, suite: str, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(cache))
    run(_config(small_demo, suite, tmp_path / "a", face_cache=False))
    assert not (cache / "faces").exists()
    with pytest.raises(Exception, match="--keep-crops needs the face cache"):
        run(_config(small_demo, suite, tmp_path / "b", face_cache=False, keep_crops=True))


def test_a_sample_with_a_failed_cell_is_not_cached(small_demo: Path, suite: str, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DFBENCH_CACHE_DIR", str(cache))
    original = gather.sample_frames

    def h264_fails_for_one_sample(path, plans, *args, **kwargs):
        failing = path.parent.name == "real" and path.name == "clip_000.mp4"
        for event in original(path, plans, *args, **kwargs):
            if failing and getattr(event, "cell_id", None) == "h264_crf-40":
                continue                                    # its frames never arrive ...
            yield event
        if failing:                                         # ... and the cell reports a failure instead
            yield CellFailure(("h264_crf-40",), "ffmpeg_error", "simulated encoder failure")

    monkeypatch.setattr(gather, "sample_frames", h264_fails_for_one_sample)
    summary = run(_config(small_demo, suite, tmp_path / "a"))
    status = summary.results.tasks.set_index(["sample_id", "cell"])["status"]
    assert status.pop(("real/clip_000", "h264_crf-40")) == "ffmpeg_error"
    assert set(status) == {"ok"}                            # the other cells of that sample were scored
    assert len(list(cache.rglob("*.json"))) == 3            # ... but only the three whole samples were cached
