"""The demo set is deterministic, at least 480p, and its fakes differ from their twins in the face only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfbench.data.demo import HEIGHT, N_FRAMES, WIDTH, build_demo
from dfbench.faces import MTCNNFinder
from dfbench.video.probe import probe_video
from tests.media import decode_all


def test_demo_build_is_deterministic_and_480p(tmp_path: Path):
    a = build_demo(tmp_path / "a", n_clips=2, workers=1)
    b = build_demo(tmp_path / "b", n_clips=2, workers=1)
    for rel in ("real/clip_000.mp4", "fake/clip_001.mp4", "manifest.csv"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    info = probe_video(a / "real" / "clip_000.mp4")
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, N_FRAMES) and HEIGHT >= 480


def test_fake_differs_from_its_real_twin_inside_the_face_box(small_demo: Path):
    real = decode_all(small_demo / "real" / "clip_000.mp4")[20].astype(float)
    fake = decode_all(small_demo / "fake" / "clip_000.mp4")[20].astype(float)
    face = max(MTCNNFinder().find(real.astype(np.uint8)), key=lambda f: f.area)
    inside = np.zeros(real.shape[:2], bool)
    inside[int(face.y1):int(face.y2), int(face.x1):int(face.x2)] = True
    diff = np.abs(real - fake).mean(axis=2)
    assert diff[inside].mean() > 5 * diff[~inside].mean()
