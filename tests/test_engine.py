"""The fan-out engine: one decode feeds every cell, and written copies hold exactly the in-process frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfbench.config import load_suite
from dfbench.perturbations import derive_seed
from dfbench.video.engine import CellFailure, CellPlan, SampledFrame, sample_frames, write_copies
from dfbench.video.probe import probe_video, sample_indices
from tests.media import decode_all, make_video

SUITE = load_suite("video-ops")


def _plans(sample_id: str = "s") -> list[CellPlan]:
    return [CellPlan(c.id, c.operation.steps(c.level, derive_seed(0, sample_id, c.op, c.level))) for c in SUITE.cells]


def test_sample_indices_spread_uniformly_without_repeats():
    assert sample_indices(300, 32)[:3] == [0, 9, 19]
    assert sample_indices(300, 32)[-1] == 299
    assert sample_indices(5, 32) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 32) == []


def test_every_cell_yields_exactly_the_sampled_frames(clip: Path):
    indices = [0, 7, 13, 19]
    got: dict[str, list[int]] = {}
    for event in sample_frames(clip, _plans(), indices):
        assert isinstance(event, SampledFrame)
        assert event.image.dtype == np.uint8 and event.image.ndim == 3 and event.image.shape[2] == 3
        got.setdefault(event.cell_id, []).append(event.index)
    assert set(got) == {c.id for c in SUITE.cells}
    assert all(v == indices for v in got.values())


def test_in_process_frames_equal_the_written_copies_bit_for_bit(clip: Path, tmp_path: Path):
    plans = _plans()
    destinations = {p.cell_id: tmp_path / p.cell_id / "clip.mp4" for p in plans}
    assert write_copies(clip, plans, destinations) == {}
    indices = sample_indices(probe_video(clip).frame_count, 6)
    for event in sample_frames(clip, plans, indices):
        assert isinstance(event, SampledFrame)
        copy_frames = decode_all(destinations[event.cell_id])
        assert np.array_equal(event.image, copy_frames[event.index]), event.cell_id


def test_the_clean_copy_is_the_source_file_itself(clip: Path, tmp_path: Path):
    plans = [p for p in _plans() if p.cell_id == "none-0"]
    write_copies(clip, plans, {"none-0": tmp_path / "clean.mp4"})
    assert (tmp_path / "clean.mp4").read_bytes() == clip.read_bytes()


def test_ffmpeg_failure_becomes_a_cell_failure_not_an_exception(tmp_path: Path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    events = list(sample_frames(broken, _plans(), [0, 1]))
    failures = [e for e in events if isinstance(e, CellFailure)]
    assert failures and set(failures[0].cell_ids) >= {"none-0", "h264_crf-23"}
    assert failures[0].message


def test_shell_metacharacters_in_file_names_pass_through(tmp_path: Path):
    src = make_video(tmp_path / "a b;$(touch pwned)'\"&.mp4", frames=4)
    events = list(sample_frames(src, _plans(), [0, 3]))
    assert not any(isinstance(e, CellFailure) for e in events)
    assert not (tmp_path / "pwned").exists()
