"""The perturbation contract for every registered operation, chains, shipped suites and the preview grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfbench.config import Cell, list_suites, load_suite
from dfbench.perturbations import OPERATIONS, FrameStep
from dfbench.video.engine import CellPlan, SampledFrame, sample_frames, write_copies
from dfbench.video.probe import probe_video
from tests.media import decode_all, make_video

# Every operation on media (the adversarial ones leave the media as it is: tests/test_adversarial.py)
ALL_OPS = [k for k in OPERATIONS.names() if k != "none" and OPERATIONS.get(k).attack is None]
MID_TONES = ["-vf", "lutrgb=r=val*0.6+50:g=val*0.6+50:b=val*0.6+50"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320x256 clip: large enough for DeeperForensics' blocks (one per 256 px), mid-tone detail."""
    return make_video(tmp_path_factory.mktemp("cat") / "src.mp4", size="320x256", frames=8, source="mandelbrot",
                      extra=[*MID_TONES, "-crf", "12"])


@pytest.fixture(scope="module")
def face_clip(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames of a demo video at 428x240: a face for the operations that edit faces (caption 3, sticker, ...)."""
    return make_video(tmp_path_factory.mktemp("cat") / "face.mp4", frames=8, extra=[
        "-vf", "scale=428:240:flags=bicubic", "-crf", "12"], source="", input_file=small_demo / "fake" / "clip_003.mp4")


def _uses_faces(op: str) -> bool:
    return "locator" in (OPERATIONS.get(op).settings or {})


@pytest.fixture(scope="module")
def sources(source: Path, face_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each contract test's clip and still: the face clip for face edits, the detailed pattern for the rest."""
    out = {"plain": source, "face": face_clip}
    for name, clip in (("plain", source), ("face", face_clip)):
        path = tmp_path_factory.mktemp("still") / f"{name}.png"
        Image.fromarray(decode_all(clip)[0]).save(path)
        out[f"{name}_still"] = path
    return out


def _source(sources: dict[str, Path], op: str, still: bool = False) -> Path:
    return sources[("face" if _uses_faces(op) else "plain") + ("_still" if still else "")]


def _frames(src: Path, cells: list[Cell], media: str = "video", seed_sample: str = "s",
            index: int = 3) -> dict[str, np.ndarray]:
    plans = [CellPlan(c.id, c.steps(0, seed_sample)) for c in cells]
    out = {}
    for event in sample_frames(src, plans, [index], media=media, fps=10):
        assert isinstance(event, SampledFrame), event
        out[event.cell_id] = event.image
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        import cv2

        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("op", ALL_OPS)
def test_every_level_keeps_the_format_and_the_declared_geometry(op: str, sources: dict[str, Path], tmp_path: Path):
    source = _source(sources, op)
    operation = OPERATIONS.get(op)
    cells = [Cell(op, level) for level in operation.levels]
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in cells]
    dest = {p.cell_id: tmp_path / p.cell_id / "out.mp4" for p in plans}
    assert write_copies(source, plans, dest, fps=10) == {}
    info = probe_video(source)
    for cell in cells:
        out = probe_video(dest[cell.id])
        assert out.frame_count == info.frame_count
        assert (out.width, out.height) == operation.geometry(cell.level).size(info.width, info.height)
        frame = decode_all(dest[cell.id])[3]
        assert frame.dtype == np.uint8 and frame.shape == (out.height, out.width, 3)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("op", [k for k in ALL_OPS if len(OPERATIONS.get(k).levels) >= 2])
def test_distortion_grows_strictly_with_level(op: str, sources: dict[str, Path]):
    source = _source(sources, op)
    clean = decode_all(source)[3]
    cells = [Cell(op, level) for level in OPERATIONS.get(op).levels]
    frames = _frames(source, cells)
    psnr = [_psnr(clean, frames[c.id]) for c in cells]
    assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), dict(zip([c.id for c in cells], psnr,
                                                                              strict=True))


@pytest.mark.parametrize("op", [k for k in ALL_OPS if OPERATIONS.get(k).stochastic])
def test_stochastic_ops_repeat_with_a_seed_and_change_with_another(op: str, sources: dict[str, Path]):
    source = _source(sources, op)
    cell = Cell(op, OPERATIONS.get(op).levels[-1])
    a = _frames(source, [cell], seed_sample="one")[cell.id]
    b = _frames(source, [cell], seed_sample="one")[cell.id]
    c = _frames(source, [cell], seed_sample="two")[cell.id]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("op", [k for k in ALL_OPS if "image" in OPERATIONS.get(k).media])
def test_image_and_video_paths_agree_on_a_still_frame(op: str, sources: dict[str, Path]):
    source, still = _source(sources, op), _source(sources, op, still=True)
    cell = Cell(op, OPERATIONS.get(op).levels[0])
    video = _frames(source, [cell], index=0)[cell.id]  # frame 0 of the video is the still image
    image = _frames(still, [cell], media="image", index=0)[cell.id]
    assert image.shape[:2] in ((video.shape[0], video.shape[1]), (video.shape[0] + 1, video.shape[1] + 1))
    crop = image[: video.shape[0], : video.shape[1]]
    luma = lambda rgb: rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    if OPERATIONS.get(op).stochastic:
        # Noise is drawn per pixel format (YUV planes for video, RGB for images): the same strength, not the
        # same pixels. Both must distort the clean frame equally.
        clean_video, clean_image = decode_all(source)[0], np.asarray(Image.open(still).convert("RGB"))
        assert abs(_psnr(luma(clean_video), luma(video)) - _psnr(luma(clean_image), luma(crop))) < 2.0
    else:
        # They differ by the video's 4:2:0 storage only, which halves chroma resolution and leaves luma alone.
        assert _psnr(luma(video), luma(crop)) > 35


@pytest.mark.parametrize("op", [k for k in ALL_OPS if any(isinstance(s, FrameStep)
                                                          for s in OPERATIONS.get(k).steps(
                                                              OPERATIONS.get(k).levels[0], 0))])
def test_python_steps_do_not_modify_their_input(op: str, sources: dict[str, Path]):
    source = _source(sources, op)
    frame = decode_all(source)[3]
    copy = frame.copy()
    for step in OPERATIONS.get(op).steps(OPERATIONS.get(op).levels[-1], 5):
        if isinstance(step, FrameStep):
            step.apply(frame, 3)
    assert np.array_equal(frame, copy)


def test_a_chain_applies_its_ops_in_order_and_matches_its_copy(source: Path, tmp_path: Path):
    chain = Cell("jpeg", 50, (("h264_crf", 40),))
    assert chain.id == "jpeg-50+h264_crf-40" and chain.category == "chain"
    plans = [CellPlan(chain.id, chain.steps(0, "s"))]
    assert write_copies(source, plans, {chain.id: tmp_path / "c.mp4"}, fps=10) == {}
    sampled = _frames(source, [chain])[chain.id]
    assert np.array_equal(sampled, decode_all(tmp_path / "c.mp4")[3])
    jpeg_only = _frames(source, [Cell("jpeg", 50)])["jpeg-50"]
    assert _psnr(decode_all(source)[3], sampled) < _psnr(decode_all(source)[3], jpeg_only)


def test_suite_chains_parse_and_report_as_chains(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: mine\nversion: 1\ncells: [none, {chain: [lighten, {op: h264_crf, level: 23}]}]\n")
    cell = load_suite(str(path)).cells[1]
    assert cell.id == "lighten-1+h264_crf-23" and cell.op_label == "lighten+h264_crf" and cell.media == {"video"}


def test_platform_profiles_carry_sources_and_users_can_add_one(tmp_path: Path, monkeypatch):
    for name in ("sn_twitter", "sn_facebook", "sn_telegram", "sn_instagram", "sn_whatsapp", "vsn_youtube",
                 "vsn_facebook_video", "vsn_tiktok", "vsn_instagram_video"):
        op = OPERATIONS.get(name)
        assert op.category == "social" and "dated" in op.source
    assert "PROVISIONAL" in OPERATIONS.get("sn_facebook").source
    assert "PROVISIONAL" not in OPERATIONS.get("sn_twitter").source
    (tmp_path / "myplatform.yaml").write_text(
        "name: myplatform\nkind: image\ndate: '2026-11-22'\nprovisional: true\nsources: [my measurements]\n"
        "max_long_side: 64\nresample: bicubic\njpeg_quality: 40\nsubsampling: '4:2:0'\nprogressive: false\n")
    monkeypatch.setenv("DFBENCH_PLATFORMS", str(tmp_path))
    from dfbench.perturbations.platforms import register_profiles

    names = [p.name for p in register_profiles()]
    assert "myplatform" in names
    frame = np.full((128, 96, 3), 120, np.uint8)
    out = OPERATIONS.get("sn_myplatform").steps(1, 0)[0].apply(frame, 0)  # type: ignore[union-attr]
    assert out.shape == (64, 48, 3)


# The long suites run in `make test-slow`.
SLOW_SUITES = ("all", "codecs", "deeperforensics", "deeperforensics-lossless", "recapture", "reshare", "severity-sweep",
               "social-video")


@pytest.mark.parametrize("suite", [pytest.param(s, marks=pytest.mark.slow if s in SLOW_SUITES else ())
                                   for s in list_suites()])
def test_every_shipped_suite_runs_on_a_two_sample_dataset(suite: str, small_demo: Path, tmp_path: Path):
    from dfbench.api import run

    dataset = str(small_demo / "manifest.csv")
    if "video" not in load_suite(suite).media:          # an image suite: one still of a real and a fake test video
        for label in ("real", "fake"):
            (tmp_path / "stills" / label).mkdir(parents=True)
            Image.fromarray(decode_all(small_demo / label / "clip_003.mp4")[0]).save(
                tmp_path / "stills" / label / "still.png")
        dataset = str(tmp_path / "stills")
    transfer = any(c.attack is not None and c.attack.transfer for c in load_suite(suite).cells)
    summary = run(detector="effb2", weights="random", suite=suite, dataset=dataset,
                  frames=1, out=tmp_path / "run", device="cpu", precision="fp32",
                  surrogate="meso4" if transfer else None)
    table = summary.results.metrics(("suite",))
    assert table["cell"].nunique() == len(load_suite(suite).cells)
    assert (table["n_frames"] + table["n_no_face"] + table["n_errors"] == 2).all()
    assert table["n_errors"].sum() == 0


def test_preview_grid_has_one_tile_per_cell(small_demo: Path, tmp_path: Path):
    from dfbench.preview import TILE_HEIGHT, preview

    result = preview("video-ops", str(small_demo / "manifest.csv"), tmp_path / "grid.png", sample_id="fake/clip_003",
                     columns=5)
    assert result.tiles == 13 and result.failed == {}
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    rows = (13 + 4) // 5
    assert grid.shape[0] == rows * (TILE_HEIGHT + 34)
    tile_means = [grid[r * (TILE_HEIGHT + 34): r * (TILE_HEIGHT + 34) + TILE_HEIGHT].mean() for r in range(rows)]
    assert all(m < 250 for m in tile_means)  # every row holds pictures, not blank canvas
