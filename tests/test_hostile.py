"""Hostile inputs, made here: each becomes a per-sample status while the run completes, with no traceback.

Run with ``-s`` to print the table of what dfbench did with each input.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.media import ffmpeg, make_video

WEIRD_NAMES = ("with space", "ünïcödé名前", "a;b$(touch pwned)'\"&|x")


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg(), "-v", "error", "-y", *args], check=True)


def _face_frame(demo: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(demo / "real" / "clip_000.mp4"))
    ok, frame = cap.read()
    assert ok
    return frame  # BGR


def _write_video(path: Path, frame: np.ndarray, frames: int, size: tuple[int, int], pix_fmt: str = "yuv420p",
                 extra: tuple[str, ...] = ()) -> None:
    still = path.with_suffix(".still.png")
    cv2.imwrite(str(still), cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    _ff("-framerate", "10", "-loop", "1", "-i", str(still), "-frames:v", str(frames), "-c:v", "libx264", "-preset",
        "ultrafast", "-pix_fmt", pix_fmt, *extra, str(path))
    still.unlink()


@pytest.fixture(scope="module")
def hostile(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    videos, images = root / "videos", root / "images"
    for folder in (videos, images):
        (folder / "real").mkdir(parents=True)
        (folder / "fake").mkdir(parents=True)
    frame = _face_frame(small_demo)
    real, fake = videos / "real", videos / "fake"
    # Good anchors, so each set holds both classes.
    (real / "good.mp4").write_bytes((small_demo / "real" / "clip_001.mp4").read_bytes())
    (fake / "good.mp4").write_bytes((small_demo / "fake" / "clip_001.mp4").read_bytes())
    (real / "zero_byte.mp4").write_bytes(b"")
    (real / "text.mp4").write_text("this is not a video\n")
    whole = (small_demo / "real" / "clip_002.mp4").read_bytes()
    (real / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    _ff("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(real / "audio_only.mp4"))
    _write_video(real / "one_frame.mp4", frame, 1, (640, 360))
    _write_video(fake / "odd_641x361.mp4", frame, 6, (641, 361), pix_fmt="yuv444p")
    _write_video(fake / "variable_rate.mp4", frame, 8, (640, 360),
                 extra=("-vf", "setpts=N*(0.05+0.08*mod(N\\,2))/TB", "-fps_mode", "vfr"))
    _write_video(fake / "gray.mp4", frame, 6, (640, 360), pix_fmt="gray")
    _write_video(real / "uhd_3840x2160.mp4", frame, 4, (3840, 2160))
    _ff("-display_rotation", "90", "-i", str(small_demo / "fake" / "clip_002.mp4"), "-c", "copy",
        str(fake / "rotated.mp4"))
    make_video(real / "no_face.mp4", size="320x240", frames=6)
    for name in WEIRD_NAMES:
        _write_video(fake / f"{name}.mp4", frame, 4, (640, 360))
    rgb = cv2.cvtColor(cv2.resize(frame, (480, 270)), cv2.COLOR_BGR2RGB)
    Image.fromarray(rgb).save(images / "real" / "good.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 180, np.uint8)])
    Image.fromarray(rgba).save(images / "real" / "alpha.png")
    cv2.imwrite(str(images / "fake" / "sixteen_bit.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(images / "fake" / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(images / "fake" / "cmyk.jpg", quality=90)
    Image.fromarray(rgb).save(images / "real" / "corrupt.jpg", quality=90)
    data = bytearray((images / "real" / "corrupt.jpg").read_bytes())
    data[len(data) // 3:len(data) // 3 + 2000] = b"\xff\x00" * 1000
    (images / "real" / "corrupt.jpg").write_bytes(bytes(data[: len(data) * 3 // 4]))
    return {"videos": videos, "images": images}


def _run(dataset: Path, suite: str, out: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI; also return the peak resident memory (bytes) of the run and its children."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(r.returncode)")
    args = [sys.executable, "-m", "dfbench", "run", "--detector", "effb2", "--weights", "random", "--suite", suite,
            "--frames", "2", "--dataset", str(dataset), "--out", str(out), "--device", "cpu"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1800)
    peak_kb = int(result.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    return result, peak_kb * 1024


def _outcome(out: Path) -> pd.DataFrame:
    import sqlite3

    with sqlite3.connect(out / "scores.sqlite") as con:
        tasks = pd.read_sql_query("SELECT sample_id, status, message FROM tasks", con)
        frames = pd.read_sql_query("SELECT sample_id, status FROM frames", con)
    rows = []
    for sample_id, group in tasks.groupby("sample_id"):
        frame_status = frames[frames["sample_id"] == sample_id]["status"].value_counts().to_dict()
        rows.append({"sample": sample_id, "cells": "/".join(sorted(set(group["status"]))),
                     "frames": ", ".join(f"{k} {v}" for k, v in sorted(frame_status.items())),
                     "message": group["message"].iloc[0][:70]})
    return pd.DataFrame(rows).set_index("sample")


@pytest.mark.slow   # a UHD video through every cell of video-ops
def test_hostile_videos_become_statuses_and_the_run_completes(hostile: dict[str, Path], tmp_path: Path):
    result, peak = _run(hostile["videos"], "video-ops", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    table = _outcome(tmp_path / "run")
    print("\n" + table.to_string())
    for name in ("zero_byte", "text", "audio_only", "truncated"):
        assert table.loc[f"real/{name}", "cells"] == "decode_error", name
    for name in ("one_frame", "uhd_3840x2160", "good", "no_face"):
        assert table.loc[f"real/{name}", "cells"] == "ok", name
    for name in ("odd_641x361", "variable_rate", "gray", "rotated", "good", *WEIRD_NAMES):
        assert table.loc[f"fake/{name}", "cells"] == "ok", name
    assert "ok" not in table.loc["real/no_face", "frames"] and "no_face" in table.loc["real/no_face", "frames"]
    assert "ok" in table.loc["real/uhd_3840x2160", "frames"]
    assert peak < 4 * 1024**3, f"peak memory {peak / 1e9:.1f} GB with a 4K video"
    assert not (Path.cwd() / "pwned").exists() and not (hostile["videos"] / "pwned").exists()


def test_hostile_images_become_statuses_and_the_run_completes(hostile: dict[str, Path], tmp_path: Path):
    result, _ = _run(hostile["images"], "clean", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    table = _outcome(tmp_path / "run")
    print("\n" + table.to_string())
    for sample in ("real/good", "real/alpha", "fake/sixteen_bit", "fake/palette", "fake/cmyk"):
        assert table.loc[sample, "cells"] == "ok", sample
    assert table.loc["real/corrupt", "cells"] in ("ok", "decode_error", "ffmpeg_error")


def test_no_subprocess_goes_through_a_shell():
    import re

    source = Path(__file__).resolve().parents[1] / "dfbench"
    offenders = [f"{p.name}:{n}" for p in source.rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", line)]
    assert offenders == []
