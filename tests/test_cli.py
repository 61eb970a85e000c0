"""The command line as a user meets it: exit codes, key lines, files written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DFBENCH = [sys.executable, "-m", "dfbench"]


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*DFBENCH, *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys\nfrom dfbench import cli\ntry:\n    cli.app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert time.perf_counter() - started < 5
    assert "TORCH_NOT_LOADED" in out.stdout and "run" in out.stdout and "perturb" in out.stdout


def test_unknown_detector_is_one_line_with_a_suggestion_and_exit_code_1():
    out = _cli("run", "--detector", "effb3", "--weights", "random", "--dataset", "nowhere")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0]
    out = _cli("list", "detectorz")
    assert out.returncode == 1 and "choose one of: detectors, ops, suites" in out.stderr


def test_unknown_detector_names_the_near_key(small_demo: Path):
    out = _cli("run", "--detector", "effb3", "--weights", "random", "--dataset", str(small_demo / "manifest.csv"))
    assert out.returncode == 1 and "Unknown detector 'effb3'. Did you mean 'effb2'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_list_commands_show_the_registered_names():
    assert "effb2" in _cli("list", "detectors").stdout
    ops = _cli("list", "ops").stdout
    assert all(k in ops for k in ("h264_crf", "noise_t", "downscale", "vintage"))
    assert "video-ops" in _cli("list", "suites").stdout


def test_perturb_writes_one_copy_per_cell_and_sample(small_demo: Path, tmp_path: Path):
    out = _cli("perturb", "--suite", "video-ops", "--dataset", str(small_demo / "manifest.csv"), "--split", "test",
               "--out", str(tmp_path / "p"))
    assert out.returncode == 0, out.stderr
    assert "Wrote 26 files" in out.stdout
    assert (tmp_path / "p" / "h264_crf-40" / "fake" / "clip_003.mp4").is_file()
    assert len(pd.read_csv(tmp_path / "p" / "vflip-1" / "manifest.csv")) == 2


def test_data_demo_writes_real_fake_and_a_manifest(tmp_path: Path):
    out = _cli("data", "demo", "--out", str(tmp_path / "d"), "--clips", "2")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "d" / "real").iterdir()) == ["clip_000.mp4", "clip_001.mp4"]
    manifest = pd.read_csv(tmp_path / "d" / "manifest.csv")
    assert sorted(manifest["split"].unique()) == ["test", "train"]
