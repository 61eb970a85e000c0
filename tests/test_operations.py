"""The perturbation contract for every video operation, through the real ffmpeg engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from dfbench.config import Cell, load_suite
from dfbench.perturbations import OPERATIONS, derive_seed
from dfbench.video.engine import CellPlan, write_copies
from dfbench.video.probe import probe_video
from tests.media import decode_all, make_video

VIDEO_OPS = load_suite("video-ops").cells


def _write(src: Path, cell: Cell, dst: Path, seed: int = 0) -> Path:
    plan = CellPlan(cell.id, cell.operation.steps(cell.level, seed))
    errors = write_copies(src, [plan], {cell.id: dst})
    assert errors == {}
    return dst


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("cell", VIDEO_OPS, ids=lambda c: c.id)
def test_operation_yields_decodable_video_with_declared_frames_and_size(cell: Cell, clip: Path, tmp_path: Path):
    out = _write(clip, cell, tmp_path / "out.mp4")
    src, dst = probe_video(clip), probe_video(out)
    assert dst.frame_count == src.frame_count
    assert (dst.width, dst.height) == cell.operation.geometry(cell.level).size(src.width, src.height)
    assert len(decode_all(out)) == src.frame_count


@pytest.mark.parametrize("cell", VIDEO_OPS, ids=lambda c: c.id)
def test_operation_leaves_its_input_untouched(cell: Cell, clip: Path, tmp_path: Path):
    before = hashlib.sha256(clip.read_bytes()).hexdigest()
    _write(clip, cell, tmp_path / "out.mp4")
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("cell", [c for c in VIDEO_OPS if c.op != "none"], ids=lambda c: c.id)
def test_operation_changes_the_frames(cell: Cell, clip: Path, tmp_path: Path):
    out = decode_all(_write(clip, cell, tmp_path / "out.mp4"))
    ref = decode_all(clip)
    if out[0].shape == ref[0].shape:
        assert _psnr(ref[5], out[5]) < 45


@pytest.mark.parametrize("op", ["hflip", "vflip"])
def test_flip_geometry_mirrors_pixels_as_declared(op: str, tmp_path: Path):
    src = make_video(tmp_path / "src.mp4", size="64x48", frames=3, extra=["-crf", "0"])
    out = decode_all(_write(src, Cell(op, 1), tmp_path / "out.mp4"))[1].astype(int)
    ref = decode_all(src)[1].astype(int)
    expected = ref[:, ::-1] if op == "hflip" else ref[::-1]
    assert np.abs(out - expected).mean() < 2.0
    box = OPERATIONS.get(op).geometry(1).map_box((10, 5, 20, 15), 64, 48)
    assert box == ((44, 5, 54, 15) if op == "hflip" else (10, 33, 20, 43))


def test_downscale_divides_each_side_and_rounds_to_even(tmp_path: Path):
    src = make_video(tmp_path / "src.mp4", size="642x362", frames=2)
    for factor, size in ((2, (320, 180)), (4, (160, 90))):
        out = _write(src, Cell("downscale", factor), tmp_path / f"x{factor}.mp4")
        info = probe_video(out)
        assert (info.width, info.height) == size


def test_noise_is_seeded_and_redrawn_every_frame(clip: Path, tmp_path: Path):
    cell = Cell("noise_t", 20)
    a = decode_all(_write(clip, cell, tmp_path / "a.mp4", seed=derive_seed(0, "s", "noise_t", 20)))
    b = decode_all(_write(clip, cell, tmp_path / "b.mp4", seed=derive_seed(0, "s", "noise_t", 20)))
    c = decode_all(_write(clip, cell, tmp_path / "c.mp4", seed=derive_seed(1, "s", "noise_t", 20)))
    ref = decode_all(clip)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[3], c[3])
    noise3 = a[3].astype(int) - ref[3].astype(int)
    noise4 = a[4].astype(int) - ref[4].astype(int)
    assert noise3.std() > 3
    assert abs(np.corrcoef(noise3.ravel(), noise4.ravel())[0, 1]) < 0.3


def test_noise_strength_raises_distortion(clip: Path, tmp_path: Path):
    ref = decode_all(clip)
    psnrs = []
    for strength in (10, 20, 30):
        out = decode_all(_write(clip, Cell("noise_t", strength), tmp_path / f"n{strength}.mp4", seed=7))
        psnrs.append(_psnr(ref[3], out[3]))
    assert psnrs[0] > psnrs[1] > psnrs[2]


def test_h264_crf_40_gives_a_smaller_file_than_crf_23(tmp_path: Path):
    src = make_video(tmp_path / "src.mp4", size="320x240", frames=30, source="mandelbrot", extra=["-crf", "10"])
    small = _write(src, Cell("h264_crf", 40), tmp_path / "c40.mp4").stat().st_size
    large = _write(src, Cell("h264_crf", 23), tmp_path / "c23.mp4").stat().st_size
    assert small < large


def test_h264_crf_level_raises_compression_distortion(tmp_path: Path):
    src = make_video(tmp_path / "src.mp4", size="320x240", frames=10, source="mandelbrot", extra=["-crf", "10"])
    ref = decode_all(src)
    psnr = [_psnr(ref[5], decode_all(_write(src, Cell("h264_crf", c), tmp_path / f"{c}.mp4"))[5]) for c in (23, 40)]
    assert psnr[0] > psnr[1]


@pytest.mark.parametrize("op,check", [
    ("gray", lambda f: np.abs(f[..., 0].astype(int) - f[..., 1]).max() <= 2),
    ("lighten", None), ("darken", None),
])
def test_colour_operations_move_the_frames_the_declared_way(op, check, tmp_path: Path):
    mid_tones = ["-vf", "lutrgb=r=val*0.5+64:g=val*0.5+64:b=val*0.5+64"]
    src = make_video(tmp_path / "mid.mp4", frames=6, extra=mid_tones)
    ref = decode_all(src)[4].astype(float)
    out = decode_all(_write(src, Cell(op, 1), tmp_path / "o.mp4"))[4]
    if check is not None:
        assert check(out)
    elif op == "lighten":
        assert out.mean() > ref.mean() + 5
    else:
        assert out.mean() < ref.mean() - 5


def test_contrast_up_widens_the_spread_of_mid_tones(tmp_path: Path):
    mid_tones = ["-vf", "lutrgb=r=val*0.5+64:g=val*0.5+64:b=val*0.5+64"]
    src = make_video(tmp_path / "g.mp4", size="64x48", frames=2, extra=mid_tones)
    ref = decode_all(src)[1].astype(float)
    out = decode_all(_write(src, Cell("contrast_up", 1), tmp_path / "o.mp4"))[1].astype(float)
    assert out.std() > ref.std() * 1.1


def test_unknown_level_is_a_clear_error():
    from dfbench.errors import ConfigError

    with pytest.raises(ConfigError, match="out of range for operation 'h264_crf'"):
        Cell("h264_crf", 99)


def test_every_operation_declares_its_contract():
    for key in OPERATIONS.names():
        op = OPERATIONS.get(key)
        assert op.name == key and isinstance(op.version, int) and op.source and op.category
        for level in op.levels:
            assert op.check_level(level) == level
