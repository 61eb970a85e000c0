"""Each detector under its authors' protocol: their finder and crop, their video rule, fp32, a fixed video set.

The reference crops here are written from the authors' code as the audit read it (FaceForensics++
``classification/detect_from_video.py``: ``get_boundingbox`` on dlib's first face; MesoNet ``pipeline.py``:
``find_coordinates`` and ``get_aligned_face``), with dlib called directly, not through dfbench.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from math import floor
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfbench import results as results_module
from dfbench.config import RunConfig, load_suite
from dfbench.detectors import get_detector
from dfbench.errors import ConfigError
from dfbench.faces import crop_box, crop_face, select_faces
from dfbench.faces.finder import FINDERS, choose_finder, face_recognition_model, make_finder
from dfbench.faces.mapping import map_faces
from dfbench.perturbations.geometry import HorizontalFlip


def _demo_frames(demo: Path, per_video: int) -> list[np.ndarray]:
    """`per_video` evenly spaced RGB frames of every video of the demo set."""
    frames = []
    for video in sorted(demo.glob("*/*.mp4")):
        with av.open(str(video)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        frames += [decoded[i] for i in np.linspace(0, len(decoded) - 1, per_video).astype(int)]
    return frames


@pytest.fixture(scope="module")
def frames24(small_demo: Path) -> list[np.ndarray]:
    frames = _demo_frames(small_demo, 3)
    assert len(frames) == 24
    return frames


def _ffpp_bounding_box(face, width: int, height: int, scale: float = 1.3) -> tuple[int, int, int, int]:
    """FF++'s get_boundingbox, from the dlib rectangle."""
    x1, y1, x2, y2 = face.left(), face.top(), face.right(), face.bottom()
    size_bb = int(max(x2 - x1, y2 - y1) * scale)
    center_x, center_y = (x1 + x2) // 2, (y1 + y2) // 2
    x1, y1 = max(int(center_x - size_bb // 2), 0), max(int(center_y - size_bb // 2), 0)
    size_bb = min(width - x1, size_bb)
    size_bb = min(height - y1, size_bb)
    return x1, y1, x1 + size_bb, y1 + size_bb


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_xception_card_crop_is_ffpp_get_boundingbox_of_dlibs_first_face(frames24: list[np.ndarray]):
    import dlib

    card = get_detector("xception").card
    finder, notice = choose_finder("card", card.finder, "xception")
    assert finder.name == "dlib" and notice is None
    detector = dlib.get_frontal_face_detector()
    ious, pixels_equal = [], 0
    for rgb in frames24:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)                 # FF++ reads frames with OpenCV (BGR)
        faces = detector(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 1)
        ours = select_faces(finder.find(rgb), card.crop)
        assert len(ours) == min(1, len(faces))
        if not len(faces):
            continue
        height, width = rgb.shape[:2]
        theirs = _ffpp_bounding_box(faces[0], width, height)
        box = crop_box(ours[0], width, height, card.crop)
        ious.append(_iou(box, theirs))
        x1, y1, x2, y2 = theirs
        reference = np.asarray(Image.fromarray(rgb[y1:y2, x1:x2]).resize((299, 299), Image.Resampling.BILINEAR))
        pixels_equal += np.array_equal(crop_face(rgb, ours[0], card.crop), reference)
    assert len(ious) >= 20, f"dlib found a face in only {len(ious)} of 24 demo frames"
    assert min(ious) == 1.0 and pixels_equal == len(ious)


def test_xception_crop_test_fails_on_the_mtcnn_box(frames24: list[np.ndarray]):
    """The IoU check above can fail: MTCNN's box with the same crop rule is not FF++'s crop."""
    import dlib

    card = get_detector("xception").card
    detector, mtcnn = dlib.get_frontal_face_detector(), make_finder("mtcnn")
    ious = []
    for rgb in frames24[:6]:
        faces = detector(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1)
        found = select_faces(mtcnn.find(rgb), card.crop)
        if len(faces) and found:
            height, width = rgb.shape[:2]
            ious.append(_iou(crop_box(found[0], width, height, card.crop), _ffpp_bounding_box(faces[0], width, height)))
    assert ious and max(ious) < 1.0


# --- MesoNet ------------------------------------------------------------------------------------------------

def _mesonet_reference(frame: np.ndarray, points: list[tuple[float, float]], l_factor: float = 1.3) -> np.ndarray:
    """MesoNet's find_coordinates + get_aligned_face, from face_recognition's landmark groups."""
    from scipy.ndimage import rotate

    groups = {"nose_bridge": points[27:31], "nose_tip": points[31:36], "left_eye": points[36:42],
              "right_eye": points[42:48],
              "top_lip": points[48:55] + [points[64], points[63], points[62], points[61], points[60]],
              "bottom_lip": points[54:60] + [points[48], points[60], points[67], points[66], points[65], points[64]]}
    mean = {k: np.mean(v, axis=0) for k, v in groups.items()}
    e1, e2 = mean["left_eye"], mean["right_eye"]
    e = (e1 + e2) / 2
    n = mean["nose_tip"] / 2 + mean["nose_bridge"] / 2
    b = (mean["top_lip"] + mean["bottom_lip"]) / 2
    length = max(np.sqrt(np.sum(np.square(e1 - e2))), np.sqrt(np.sum(np.square(b - e)))) * 2.2
    rot = (90 if b[0] > e[0] else -90) if b[1] == e[1] else np.arctan((b[0] - e[0]) / (b[1] - e[1])) / np.pi * 180
    c, l_ = (floor(n[1]), floor(n[0])), floor(length)

    def get_image_slice(img, y0, y1, x0, x1):
        m, k = img.shape[:2]
        padding = max(-y0, y1 - m, -x0, x1 - k, 0)
        padded = np.pad(img, ((padding, padding), (padding, padding), (0, 0)), "reflect")
        return padded[(padding + y0):(padding + y1), (padding + x0):(padding + x1)]

    l_ = int(l_) * l_factor
    dl_ = floor(np.sqrt(2) * l_ / 2)
    patch = get_image_slice(frame, floor(c[0] - dl_), floor(c[0] + dl_), floor(c[1] - dl_), floor(c[1] + dl_))
    rotated = rotate(patch, -rot, reshape=False)
    return get_image_slice(rotated, floor(dl_ - l_ // 2), floor(dl_ + l_ // 2), floor(dl_ - l_ // 2),
                           floor(dl_ + l_ // 2))


def _landmarked_faces(frames: list[np.ndarray]) -> list[tuple[np.ndarray, object, list[tuple[float, float]]]]:
    """(frame, dfbench face, the same face's 68 landmarks from dlib called directly) for frames with a face."""
    import dlib

    finder = make_finder("face_recognition_hog")
    predictor = dlib.shape_predictor(str(face_recognition_model("shape_predictor_68_face_landmarks.dat")))
    out = []
    for rgb in frames:
        faces = finder.find(rgb)
        if not faces:
            continue
        face = faces[0]
        shape = predictor(rgb, dlib.rectangle(int(face.x1), int(face.y1), int(face.x2), int(face.y2)))
        out.append((rgb, face, [(float(p.x), float(p.y)) for p in shape.parts()]))
    return out


def test_mesonet_crop_is_the_landmark_aligned_square_computed_independently(frames24: list[np.ndarray]):
    card = get_detector("meso4").card
    assert card.finder == "face_recognition" and card.crop.aligned and card.aggregation == "vote"
    found = _landmarked_faces(frames24[::3])
    assert len(found) >= 6
    for rgb, face, points in found:
        assert face.landmarks == tuple(points)
        reference = _mesonet_reference(rgb, points)
        resized = np.asarray(Image.fromarray(reference).resize((256, 256), Image.Resampling.NEAREST))
        ours = crop_face(rgb, face, card.crop)
        assert ours.shape == (256, 256, 3) and np.array_equal(ours, resized)
        # ... and it is not the box crop: the test can tell the two apart
        box_spec = dataclasses.replace(card.crop, aligned=False)
        assert not np.array_equal(crop_face(rgb, face, box_spec), resized)


def test_mesonet_alignment_turns_a_tilted_face_upright(frames24: list[np.ndarray]):
    """An independent check of the rotation: the crop of a frame turned by 10 degrees is close to the crop of the
    frame itself, much closer than the unaligned box crops are to each other."""
    card = get_detector("meso4").card
    box_spec = dataclasses.replace(card.crop, aligned=False)
    finder = make_finder("face_recognition_hog")
    aligned_gaps, box_gaps = [], []
    for rgb in frames24[::4]:
        h, w = rgb.shape[:2]
        tilted = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 10, 1.0), (w, h),
                                flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        upright, turned = finder.find(rgb), finder.find(tilted)
        if not upright or not turned:
            continue
        gap = np.abs(crop_face(rgb, upright[0], card.crop).astype(float)
                     - crop_face(tilted, turned[0], card.crop).astype(float)).mean()
        aligned_gaps.append(gap)
        box_gaps.append(np.abs(crop_face(rgb, upright[0], box_spec).astype(float)
                               - crop_face(tilted, turned[0], box_spec).astype(float)).mean())
    assert len(aligned_gaps) >= 3
    assert np.median(aligned_gaps) < 0.6 * np.median(box_gaps)


def test_landmarks_follow_their_face_through_a_flip_and_the_face_cache(tmp_path: Path):
    from dfbench.faces import Face, SampleCrops
    from dfbench.faces.cache import FaceCache
    from dfbench.faces.crop import CropSpec, no_crops

    points = tuple((float(x), float(y)) for x, y in zip(range(68), range(100, 168), strict=True))
    face = Face(10.0, 20.0, 30.0, 60.0, 0.9, points)
    flipped = map_faces([face], [HorizontalFlip()], (100, 200), (100, 200))[0]
    assert flipped.landmarks[0] == (100 - 0.0, 100.0) and flipped.landmarks[67] == (100 - 67.0, 167.0)
    sample = tmp_path / "v.mp4"
    sample.write_bytes(b"x")
    cache = FaceCache(tmp_path / "cache", "suite", {"finder": "face_recognition"})
    spec = CropSpec(size=16)
    gathered = SampleCrops("s", ("none-0",), [0], no_crops(spec), [], {("none-0", 0): 1}, {},
                           {("none-0", 0): [face, Face(1, 2, 3, 4, 0.5)]})
    cache.save(sample, gathered, spec)
    back = cache.faces("s", sample, ["none-0"])[("none-0", 0)]
    assert back[0].landmarks == points and back[1].landmarks is None and back == [face, Face(1, 2, 3, 4, 0.5)]


@pytest.mark.slow
def test_the_face_recognition_cnn_finder_gives_boxes_and_68_landmarks(frames24: list[np.ndarray]):
    faces = make_finder("face_recognition").find(frames24[0])
    hog = make_finder("face_recognition_hog").find(frames24[0])
    assert len(faces) == 1 and len(faces[0].landmarks) == 68 and hog
    f, g = faces[0], hog[0]
    assert _iou((f.x1, f.y1, f.x2, f.y2), (g.x1, g.y1, g.x2, g.y2)) > 0.5


# --- choosing the finder -------------------------------------------------------------------------------------

def test_card_finder_falls_back_to_mtcnn_with_a_notice_when_it_cannot_run(monkeypatch):
    finder, notice = choose_finder("card", "retinaface", "sbi")
    assert finder.name == "mtcnn" and "retinaface" in notice and "mtcnn" in notice and "\n" not in notice
    monkeypatch.setitem(sys.modules, "dlib", None)              # dlib not installed
    finder, notice = choose_finder("card", "dlib", "xception")
    assert finder.name == "mtcnn" and "pip install dlib-bin" in notice
    with pytest.raises(ConfigError, match="pip install dlib-bin"):
        make_finder("dlib").find(np.zeros((64, 64, 3), np.uint8))
    assert choose_finder("mtcnn", "dlib", "xception")[1] is None          # asked for by name: no notice
    assert choose_finder("card", "dlib", "xception", whole_frame=True)[0].name == "none"


def test_finders_are_a_registry_and_suites_name_one():
    assert {"mtcnn", "dlib", "face_recognition", "face_recognition_hog", "none"} <= set(FINDERS.names())
    assert load_suite("video-ops").finder == "card" and load_suite("video-ops").aggregation == "card"
    with pytest.raises(Exception, match="Did you mean 'dlib'"):
        dataclasses.replace(load_suite("clean"), finder="dlbi")


@pytest.fixture(scope="module")
def prepared(small_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    """Prepare (no work) for several detectors and settings; returns a function of the RunConfig options."""
    from dfbench.pipeline import prepare

    def make(**options):
        base = {"detector": "effb2", "dataset": str(small_demo / "manifest.csv"), "weights": "random",
                "device": "cpu", "out": tmp_path_factory.mktemp("prep"), "face_cache": False}
        return prepare(RunConfig(**{**base, **options}))

    return make


def test_xception_runs_with_dlib_and_ffpp_crop_without_flags_and_fp32(prepared):
    prep = prepared(detector="xception")
    assert prep.gatherer.finder.name == "dlib" and prep.gatherer.spec.faces == "first"
    assert prep.adapter.precision == "fp32" and RunConfig(detector="x").precision == "fp32"
    protocol = prep.provenance["protocol"]
    assert protocol == {"aggregation": "mean", "finder": "dlib", "no_face": "fallback", "fallback_score": 0.5,
                        "decision": "threshold"}
    assert prep.provenance["identity"]["finder"] == {"finder": "dlib", "upsample": 1}


def test_finder_video_rule_and_no_face_rule_are_part_of_the_run_id(prepared):
    card = prepared(detector="xception")
    assert prepared(detector="xception", finder="mtcnn").run_id != card.run_id
    assert prepared(detector="xception", no_face="drop").run_id != card.run_id
    meso = prepared(detector="meso4", finder="face_recognition_hog")
    assert meso.provenance["protocol"]["aggregation"] == "vote"
    sbi = prepared(detector="sbi", frames=1)
    assert sbi.gatherer.finder.name == "mtcnn" and any("retinaface" in n for n in sbi.notes)


def test_a_suite_with_a_fixed_rule_overrides_the_card(prepared, tmp_path: Path):
    suite = tmp_path / "fixed.yaml"
    suite.write_text("name: fixed\nversion: 1\naggregation: mean\nfinder: mtcnn\ncells: [none]\n")
    meso = prepared(detector="meso4", suite=str(suite))
    assert meso.provenance["protocol"]["aggregation"] == "mean" and meso.gatherer.finder.name == "mtcnn"
    with pytest.raises(ConfigError, match="aggregation 'avg' is not supported"):
        suite.write_text("name: fixed\nversion: 1\naggregation: avg\ncells: [none]\n")
        load_suite(str(suite))


# --- a fixed video set, the card's rule and decision, computed from the store's rows ----------------------------

def _results(no_face: str = "fallback", decision: str = "threshold", aggregation: str = "mean"):
    """Four videos (two real, two fake) in two cells; in `blur-1` video f1 has no face in any frame."""
    cells = pd.DataFrame([{"run_id": "r", "detector": "d", "weights": "w", "dataset": "x", "cell": c, "op": c[:-2],
                           "level": "1", "category": "clean" if c == "none-0" else "blur", "position": i}
                          for i, c in enumerate(("none-0", "blur-1"))])
    labels = {"r0": 0, "r1": 0, "f0": 1, "f1": 1}
    probs = {"r0": [0.1, 0.1, 0.8], "r1": [0.3, 0.25, 0.45], "f0": [0.6, 0.2, 0.2], "f1": [0.2, 0.5, 0.3]}
    rows = []
    for cell in ("none-0", "blur-1"):
        for sample, label in labels.items():
            for frame in (0, 1):
                missing = cell == "blur-1" and sample == "f1"
                p = probs[sample]
                rows.append({"run_id": "r", "sample_id": sample, "cell": cell, "frame": frame, "label": label,
                             "method": "", "group": "", "status": "no_face" if missing else "ok",
                             "score": None if missing else 1 - p[2], "probs": None if missing else json.dumps(p)})
    frames = pd.DataFrame(rows).merge(cells, on=["run_id", "cell"])
    tasks = frames[["run_id", "sample_id", "cell", "label", "method"]].drop_duplicates().assign(status="ok")
    runs = pd.DataFrame([{"run_id": "r", "detector": "d", "weights": "w", "weights_sha256": "", "dataset": "x",
                          "suite": "s", "aggregation": aggregation, "provenance": {}, "n_tasks": 8, "finder": "mtcnn",
                          "no_face": no_face, "fallback_score": 0.5, "decision": decision}])
    return results_module.Results(frames, tasks, runs, cells)


def test_every_video_counts_in_every_cell_with_the_fallback_score():
    res = _results()
    videos = res.videos()
    assert videos.groupby("cell").size().to_dict() == {"none-0": 4, "blur-1": 4}
    hole = videos[(videos["cell"] == "blur-1") & (videos["sample_id"] == "f1")].iloc[0]
    assert hole["fallback"] and hole["score"] == 0.5 and hole["n_frames"] == 0
    table = res.metrics(("suite",))
    counts = table[table["metric"] == "auc"].set_index("cell")
    assert counts["n_videos"].to_dict() == {"none-0": 4, "blur-1": 4}
    assert counts["n_fallback"].to_dict() == {"none-0": 0, "blur-1": 1}
    # scores r0 0.2, r1 0.55, f0 0.8, fallback 0.5: AUC over all four videos is 3/4, not the 1.0 of three
    assert counts.loc["blur-1", "value"] == pytest.approx(0.75)
    dropped = _results(no_face="drop").metrics(("suite",))
    dropped = dropped[dropped["metric"] == "auc"].set_index("cell")
    assert dropped.loc["blur-1", "n_videos"] == 3 and dropped.loc["blur-1", "value"] == pytest.approx(1.0)


def test_deepfeaturex_decides_by_argmax_for_accuracy_and_keeps_1_minus_p_real_for_auc():
    """r1 has p = (0.30, 0.25, 0.45): real for the authors (argmax REAL), fake at 1 - p(REAL) = 0.55 >= 0.5."""
    def pick(table: pd.DataFrame, metric: str) -> float:
        return table[(table["metric"] == metric) & (table["cell"] == "none-0")]["value"].iloc[0]

    for agg in ("frame", "suite"):
        by_threshold = _results().metrics((agg,))
        by_argmax = _results(decision="argmax").metrics((agg,))
        assert pick(by_threshold, "acc") == pytest.approx(0.75) and pick(by_argmax, "acc") == pytest.approx(1.0)
        assert pick(by_threshold, "auc") == pick(by_argmax, "auc") == pytest.approx(1.0)
    assert get_detector("deepfeaturex").card.decision == "argmax"


def test_mesonet_video_rule_is_the_share_of_frames_judged_fake():
    from dfbench.metrics import aggregate

    p_real = np.array([0.9, 0.4, 0.2, 0.7, 0.3])             # the network's sigmoid per frame
    authors = np.mean(p_real > 0.5)                           # pipeline.py: share of frames judged real
    assert aggregate(1 - p_real, get_detector("meso4").card.aggregation) == pytest.approx(1 - authors)


# --- DeepFeatureX-SN's operations and DeeperForensics' re-encode ---------------------------------------------

def _apply(op: str, level, frame: np.ndarray) -> np.ndarray:
    from dfbench.perturbations import OPERATIONS

    (step,) = OPERATIONS.get(op).build(level, 0)
    return step.apply(frame, 0)


def test_deepfeaturex_sn_suite_has_the_published_operations_and_values():
    suite = load_suite("deepfeaturex-sn")
    assert [c.id for c in suite.cells] == [
        "none-0", "jpeg-90", "jpeg-80", "jpeg-70", "jpeg-60", "jpeg-50", "dfxsn_blur-3", "dfxsn_blur-7",
        "dfxsn_blur-15", "dfxsn_scale-200", "dfxsn_scale-50", "flip_both-1", "rotate-45", "rotate-135"]
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (61, 80, 3), dtype=np.uint8)
    assert np.array_equal(_apply("dfxsn_blur", 7, frame), cv2.GaussianBlur(frame, (7, 7), 4))   # sigmaX = 4
    assert not np.array_equal(_apply("dfxsn_blur", 7, frame), cv2.GaussianBlur(frame, (7, 7), 0))
    assert _apply("dfxsn_scale", 50, frame).shape == (30, 40, 3) and _apply("dfxsn_scale", 200, frame).shape == (
        122, 160, 3)
    assert np.array_equal(_apply("flip_both", 1, frame), frame[::-1, ::-1])


@pytest.mark.parametrize("degrees", [45, 135])
def test_rotation_turns_counter_clockwise_and_its_geometry_follows_a_marker(degrees: int):
    from dfbench.perturbations import OPERATIONS

    frame = np.zeros((120, 160, 3), np.uint8)
    frame[20:40, 100:130] = 255                       # a marker in the upper right
    turned = _apply("rotate", degrees, frame)
    ys, xs = np.nonzero(turned[..., 0] > 128)
    mapped = OPERATIONS.get("rotate").geometry(degrees).map_box((100, 20, 130, 40), 160, 120)
    # the marker's turned corners, thresholded at half grey, lie within 3 px of the mapped box (its bounding box)
    assert abs(xs.min() - mapped[0]) <= 3 and abs(ys.min() - mapped[1]) <= 3
    assert abs(xs.max() + 1 - mapped[2]) <= 3 and abs(ys.max() + 1 - mapped[3]) <= 3
    if degrees == 45:                                 # counter-clockwise: the upper-right marker rises (clockwise
        assert ys.mean() < 25                         # it would sink to about y = 64)


def test_deeperforensics_frame_ops_end_with_the_datasets_xvid_and_x264_encodes(small_demo: Path):
    import dataclasses as dc

    from dfbench.faces import CropSpec
    from dfbench.gather import Gatherer
    from dfbench.perturbations import OPERATIONS
    from dfbench.perturbations.base import EncodeStep

    steps = OPERATIONS.get("dfo_cs").build(3, 0)
    assert [type(s).__name__ for s in steps] == ["FrameStep", "EncodeStep", "EncodeStep"]
    xvid, x264 = steps[1], steps[2]
    assert "mpeg4" in xvid.args and "XVID" in xvid.args and xvid.suffix == ".avi"
    assert "libx264" in x264.args and "-crf" not in x264.args                   # x264 at its defaults
    assert "6000000" in xvid.resolved_args(400, 200, 50.0)                     # 1.5 x fps x w x h
    assert isinstance(xvid, EncodeStep) and OPERATIONS.get("dfo_cs_lossless").build(3, 0)[1:] == []
    suite = load_suite("deeperforensics").with_frames(2)
    cells = tuple(c for c in suite.cells if c.id in ("none-0", "dfo_cs-3"))
    lossless = load_suite("deeperforensics-lossless").with_frames(2)
    both = dc.replace(suite, cells=cells + tuple(c for c in lossless.cells if c.id == "dfo_cs_lossless-3"))
    gathered = Gatherer(both, make_finder("none"), CropSpec(size=128, whole_frame=True)).gather_all(
        "v", sorted(small_demo.glob("real/*.mp4"))[0])
    assert not gathered.failures
    crops = {owner: crop.astype(float) for owner, crop in zip(gathered.owners, gathered.crops, strict=True)}
    index = gathered.indices[0]
    gap = np.abs(crops[("dfo_cs-3", index)] - crops[("dfo_cs_lossless-3", index)]).mean()
    assert 0.05 < gap < 8, gap                         # one more lossy generation: close, not equal


# --- RetinaFace (SBI's finder) from a weights file ---------------------------------------------------------------

def test_retinaface_network_has_the_released_key_layout_and_decodes_priors(tmp_path: Path, monkeypatch):
    import torch

    from dfbench.faces.retinaface import WEIGHTS_ENV, RetinaFaceFinder, build_network

    network = build_network()
    shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    assert shapes["body.conv1.weight"] == (64, 3, 7, 7) and "body.fc.weight" not in shapes
    assert shapes["fpn.output1.0.weight"] == (256, 512, 1, 1) and shapes["fpn.merge2.0.weight"] == (256, 256, 3, 3)
    assert shapes["ssh3.conv3X3.0.weight"] == (128, 256, 3, 3) and shapes["ssh1.conv7x7_3.1.running_var"] == (64,)
    assert shapes["ClassHead.2.conv1x1.weight"] == (4, 256, 1, 1)
    assert shapes["BboxHead.0.conv1x1.weight"] == (8, 256, 1, 1) and shapes["LandmarkHead.1.conv1x1.bias"] == (20,)
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, tmp_path / "Resnet50_Final.pth")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match=WEIGHTS_ENV):
        make_finder("retinaface")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "Resnet50_Final.pth"))
    finder = RetinaFaceFinder(max_size=400)
    assert finder.describe()["weights_sha256"] and finder._network() is not None     # the module. prefix goes

    # one confident prior, no regression: the face is that prior's box, scaled back to the frame
    level0 = 25 * 50 * 2                            # a 200 x 400 resized frame: stride 8, two anchors each
    total = level0 + 13 * 25 * 2 + 7 * 13 * 2
    index = (3 * 50 + 5) * 2 + 1                    # row 3, column 5, the 32 px anchor

    class Fixed(torch.nn.Module):
        def forward(self, x):
            assert tuple(x.shape) == (1, 3, 200, 400)
            conf = torch.zeros(1, total, 2)
            conf[0, :, 0] = 5.0
            conf[0, index, 1] = 10.0
            return torch.zeros(1, total, 4), conf, torch.zeros(1, total, 10)

    finder._model = Fixed()
    faces = finder.find(np.zeros((100, 200, 3), np.uint8))
    assert [(f.x1, f.y1, f.x2, f.y2) for f in faces] == [(14.0, 6.0, 30.0, 22.0)] and faces[0].confidence > 0.99
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a RetinaFace"):
        RetinaFaceFinder(tmp_path / "other.pth")._network()
