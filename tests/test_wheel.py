"""A normal install works: the wheel built from the repository holds every data file the package reads, and a
two-image `social-image` run works from it in a fresh virtual environment (no editable install, not the repo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the sources (an in-tree build would find the ``*.egg-info`` of the
    editable install, whose file list hides missing package data, and would leave build files in the repo)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "dfbench", source / "dfbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(out), str(source)], check=True, timeout=600,
                   env={**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("build"))})
    (found,) = out.glob("dfbench-*.whl")
    return found


def test_the_wheel_holds_every_data_file_of_the_package(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "dfbench"
    data = [p.relative_to(REPO).as_posix() for p in package.rglob("*") if p.is_file()
            and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert any(d.startswith("dfbench/platforms/") for d in data) and any(d.startswith("dfbench/suites/") for d in data)
    assert sorted(d for d in data if d not in names) == []
    modules = [p.relative_to(REPO).as_posix() for p in package.rglob("*.py")]
    assert sorted(m for m in modules if m not in names) == []


def test_a_social_image_run_works_from_the_installed_wheel(wheel: Path, small_demo: Path, tmp_path: Path):
    import cv2

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the wheel goes into the new environment; its dependencies are seen from the test's (installing them again
    # would take minutes and need the package index)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(site), str(wheel)], check=True, timeout=600)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (venv / "bin" / "dfbench").write_text(f"#!{python}\nfrom dfbench.cli import main\nmain()\n")
    (venv / "bin" / "dfbench").chmod(0o755)

    data = tmp_path / "photos"
    for label, clip in (("real", "clip_003"), ("fake", "clip_002")):
        capture = cv2.VideoCapture(str(small_demo / label / f"{clip}.mp4"))
        ok, frame = capture.read()
        capture.release()
        assert ok
        (data / label).mkdir(parents=True)
        cv2.imwrite(str(data / label / f"{clip}.png"), frame)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "DFBENCH_CACHE_DIR": str(tmp_path / "cache")}
    where = subprocess.run([str(python), "-c", "import dfbench; print(dfbench.__file__)"], capture_output=True,
                           text=True, check=True, env=env, cwd=tmp_path).stdout
    assert where.startswith(str(site))                    # the installed copy, not the repository's
    listed = subprocess.run([str(venv / "bin" / "dfbench"), "list", "suites"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert listed.returncode == 0, listed.stderr
    for suite in ("social-image", "social-video", "all", "video-ops", "clean"):
        assert suite in listed.stdout
    result = subprocess.run([str(venv / "bin" / "dfbench"), "run", "--detector", "effb2", "--weights", "demo",
                             "--suite", "social-image", "--dataset", str(data), "--frames", "1", "--device", "cpu",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    import pandas as pd

    table = pd.read_csv(tmp_path / "run" / "results.csv")
    auc = table[(table["metric"] == "auc") & (table["aggregation"] != "frame")]
    assert auc["cell"].nunique() == 8 and np.isfinite(auc["value"]).all()
