"""A run's identity covers every number: operation parameters and platform profiles change the suite hash, and
with it the run id and the face-cache key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from dfbench.config import RunConfig, load_suite
from dfbench.perturbations import OPERATIONS, FrameStep
from dfbench.perturbations.platforms import register_profiles
from dfbench.pipeline import prepare

SUITE = "name: identity-test\nversion: 1\nframes: {per_video: 2}\ncells: [none, {op: jpeg, level: 60}]\n"


@pytest.fixture()
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "identity-test.yaml"
    path.write_text(SUITE)
    return path


def _identity(suite: Path | str, demo: Path, out: Path) -> tuple[str, str, str]:
    """(suite hash, run id, face-cache key) of a run of `suite` on the small demo set."""
    prep = prepare(RunConfig(detector="effb2", weights="random", suite=str(suite), dataset=str(demo / "manifest.csv"),
                             device="cpu", precision="fp32", out=out))
    assert prep.gatherer.cache is not None
    return prep.suite.hash, prep.run_id, prep.gatherer.cache.key


def test_a_changed_operation_parameter_gives_a_new_run_id_and_cache_key(suite_file: Path, small_demo: Path,
                                                                          tmp_path: Path, monkeypatch):
    before = _identity(suite_file, small_demo, tmp_path / "a")
    assert _identity(suite_file, small_demo, tmp_path / "b") == before      # deterministic

    # the same op name and version, but its JPEG step now uses 4:2:0 chroma instead of 4:4:4 (a parameter
    # inside the step's function, not the level)
    jpeg = OPERATIONS.get("jpeg")
    original = jpeg.build

    def build(level, seed):
        (step,) = original(level, seed)
        assert isinstance(step, FrameStep)
        from dfbench.perturbations.image_ops import _jpeg

        return [dataclasses.replace(step, fn=_jpeg(int(level), 2))]

    monkeypatch.setitem(OPERATIONS._entries, "jpeg", dataclasses.replace(jpeg, build=build))
    after = _identity(suite_file, small_demo, tmp_path / "c")
    assert after[0] != before[0] and after[1] != before[1] and after[2] != before[2]
    monkeypatch.setitem(OPERATIONS._entries, "jpeg", jpeg)
    assert _identity(suite_file, small_demo, tmp_path / "d") == before


def test_a_user_profile_replacing_a_shipped_one_gives_a_new_identity(small_demo: Path, tmp_path: Path, monkeypatch):
    shipped = _identity("social-image", small_demo, tmp_path / "a")
    folder = tmp_path / "profiles"
    folder.mkdir()
    text = (Path(__file__).resolve().parent.parent / "dfbench" / "platforms" / "facebook.yaml").read_text()
    assert "jpeg_quality: 85" in text
    (folder / "facebook.yaml").write_text(text.replace("jpeg_quality: 85", "jpeg_quality: 84"))
    monkeypatch.setenv("DFBENCH_PLATFORMS", str(folder))
    try:
        register_profiles()
        assert OPERATIONS.get("sn_facebook").settings["jpeg_quality"] == 84
        replaced = _identity("social-image", small_demo, tmp_path / "b")
        (folder / "facebook.yaml").write_text(text)       # the shipped content again, from the user's folder
        register_profiles()
        same_content = _identity("social-image", small_demo, tmp_path / "c")
    finally:
        monkeypatch.delenv("DFBENCH_PLATFORMS")
        register_profiles()
    assert replaced[0] != shipped[0] and replaced[1] != shipped[1] and replaced[2] != shipped[2]
    assert same_content == shipped
    assert _identity("social-image", small_demo, tmp_path / "d") == shipped


def test_a_suite_edit_gives_a_new_hash(tmp_path: Path):
    def hash_of(text: str) -> str:
        path = tmp_path / "s.yaml"
        path.write_text(text)
        return load_suite(str(path)).hash

    base = hash_of(SUITE)
    edits = [SUITE.replace("level: 60", "level: 61"), SUITE.replace("version: 1", "version: 2"),
             SUITE.replace("per_video: 2", "per_video: 3"), SUITE + "seed: 1\n", SUITE + "faces: clean\n",
             SUITE.replace("cells: [none,", "cells: [none, hflip,")]
    hashes = [hash_of(text) for text in edits]
    assert base not in hashes and len(set(hashes)) == len(edits)
    assert hash_of("# a comment\n" + SUITE.replace("name: identity-test", "name: identity-test  # x")) == base


def test_every_shipped_suite_hash_is_the_same_in_a_fresh_process():
    """No memory address or set order leaks into a fingerprint: another interpreter computes the same hashes."""
    from dfbench.config import list_suites

    code = "from dfbench.config import list_suites, load_suite\nprint([load_suite(s).hash for s in list_suites()])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert other == str([load_suite(s).hash for s in list_suites()])


def test_every_operation_fingerprint_names_its_numbers():
    """Each op's fingerprint differs between its levels (the level is a number it uses) and describes no object
    by its address."""
    import json

    from dfbench.perturbations.base import describe

    for name in OPERATIONS.names():
        op = OPERATIONS.get(name)
        prints = {op.fingerprint(level) for level in op.levels}
        assert len(prints) == len(op.levels), name
        text = json.dumps(describe(op.steps(op.levels[0], 0)))
        assert " at 0x" not in text and '"object"' not in text, (name, text[:200])
