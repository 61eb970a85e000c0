"""Shared fixtures. Every test builds its own media; nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.media import make_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the demo-set cache of the tests away from the user's cache (unless CI shares one on purpose)."""
    if "DFBENCH_TEST_CACHE" in os.environ:
        path = Path(os.environ["DFBENCH_TEST_CACHE"])
    else:
        path = tmp_path_factory.mktemp("cache")
    os.environ["DFBENCH_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160x120, 20-frame test-pattern clip."""
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-clip demo set (8 videos with faces) exported as a folder with a manifest."""
    from dfbench.data.demo import export_demo

    return export_demo(tmp_path_factory.mktemp("demo4"), n_clips=4)
