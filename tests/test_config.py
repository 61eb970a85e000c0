"""Suites load strictly: unknown and duplicate keys name themselves, and every shipped suite loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfbench.config import list_suites, load_suite
from dfbench.errors import ConfigError, UnknownNameError


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("name: mine\nversion: 1\n" + body)
    return path


def test_video_ops_has_the_clean_cell_and_the_twelve_operations_of_table_one():
    suite = load_suite("video-ops")
    assert [c.id for c in suite.cells] == [
        "none-0", "h264_crf-23", "h264_crf-40", "lighten-1", "darken-1", "contrast_up-1", "noise_t-20", "hflip-1",
        "vflip-1", "downscale-2", "downscale-4", "gray-1", "vintage-1"]
    assert suite.frames.per_video == 32
    assert {c.category for c in suite.cells[1:]} == {"compression", "brightness", "contrast", "noise", "flip",
                                                     "resolution", "filter"}


def test_every_shipped_suite_loads():
    assert "video-ops" in list_suites()
    for name in list_suites():
        assert load_suite(name).cells[0].op == "none"


def test_suite_hash_changes_with_the_protocol():
    suite = load_suite("video-ops")
    assert suite.hash == load_suite("video-ops").hash
    assert suite.with_frames(8).hash != suite.hash


def test_user_suite_from_a_path(tmp_path: Path):
    suite = load_suite(str(_suite(tmp_path, "cells: [none, {op: h264_crf, level: 30}, hflip]\n")))
    assert [c.id for c in suite.cells] == ["none-0", "h264_crf-30", "hflip-1"]


def test_unknown_key_names_the_key_and_the_allowed_ones(tmp_path: Path):
    with pytest.raises(ConfigError, match="Unknown key 'framez'.*Allowed: .*frames"):
        load_suite(str(_suite(tmp_path, "framez: {per_video: 3}\ncells: [none]\n")))


def test_duplicate_key_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="Duplicate key 'cells'"):
        load_suite(str(_suite(tmp_path, "cells: [none]\ncells: [none]\n")))


def test_unknown_operation_suggests_a_near_name(tmp_path: Path):
    with pytest.raises(ConfigError, match="Unknown operation 'hflp'. Did you mean 'hflip'"):
        load_suite(str(_suite(tmp_path, "cells: [none, hflp]\n")))


def test_duplicate_cell_and_missing_clean_cell_are_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="lists cell 'hflip-1' twice"):
        load_suite(str(_suite(tmp_path, "cells: [none, hflip, hflip]\n")))
    with pytest.raises(ConfigError, match="must start with the clean cell"):
        load_suite(str(_suite(tmp_path, "cells: [hflip]\n")))


def test_unknown_shipped_suite_lists_the_shipped_ones():
    with pytest.raises(UnknownNameError, match="Did you mean 'video-ops'"):
        load_suite("video-op")
