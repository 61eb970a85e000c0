"""Loaders for the public layouts, on tiny trees built here, and `dfbench data check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfbench.data import load_dataset
from dfbench.errors import DatasetError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded by the loaders")


def test_faceforensics_keeps_sample_ids_unique_across_methods_and_reads_the_official_split(tmp_path: Path):
    _touch(tmp_path, "original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c23/videos/003.mp4",
           "original_sequences/youtube/c23/videos/100.mp4", "original_sequences/youtube/c40/videos/000.mp4")
    for method in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
        _touch(tmp_path, f"manipulated_sequences/{method}/c23/videos/000_003.mp4",
               f"manipulated_sequences/{method}/c23/videos/003_000.mp4")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test.json").write_text(json.dumps([["000", "003"]]))
    (tmp_path / "splits" / "train.json").write_text(json.dumps([["100", "101"]]))
    ds = load_dataset(f"ffpp:{tmp_path}?compression=c23")
    table = ds.table.set_index("sample_id")
    assert len(table) == 3 + 8 and table.index.is_unique
    assert {"Deepfakes/000_003", "Face2Face/000_003", "original/000"} <= set(table.index)
    assert table.loc["original/100", "split"] == "train" and table.loc["NeuralTextures/003_000", "split"] == "test"
    assert table.loc["Deepfakes/000_003", "label"] == 1 and table.loc["original/003", "label"] == 0
    assert table.loc["FaceSwap/003_000", "group"] == "003"
    only = load_dataset(f"ffpp:{tmp_path}?compression=c23&methods=Deepfakes")
    assert set(only.table["method"]) == {"original", "Deepfakes"}
    with pytest.raises(DatasetError, match="Unknown option 'compresion' for ffpp"):
        load_dataset(f"ffpp:{tmp_path}?compresion=c23")


def test_celebdf_reads_the_testing_list_where_1_means_real(tmp_path: Path):
    _touch(tmp_path, "Celeb-real/id0_0000.mp4", "YouTube-real/00170.mp4", "Celeb-synthesis/id0_id1_0000.mp4",
           "Celeb-synthesis/id2_id3_0001.mp4")
    listing = "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n"
    (tmp_path / "List_of_testing_videos.txt").write_text(listing)
    table = load_dataset(f"celebdf:{tmp_path}").table.set_index("sample_id")
    assert table.loc["YouTube-real/00170", "split"] == "test" and table.loc["YouTube-real/00170", "label"] == 0
    assert table.loc["Celeb-synthesis/id0_id1_0000", "split"] == "test"
    assert table.loc["Celeb-synthesis/id2_id3_0001", "split"] == "train"
    assert table.loc["Celeb-synthesis/id2_id3_0001", "label"] == 1


def test_dfdc_reads_metadata_json_parts_and_the_test_labels(tmp_path: Path):
    part = tmp_path / "dfdc_train_part_0"
    _touch(part, "aaa.mp4", "bbb.mp4")
    (part / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "FAKE", "split": "train", "original": "bbb.mp4"},
        "bbb.mp4": {"label": "REAL", "split": "train"}}))
    _touch(tmp_path / "test", "ccc.mp4", "ddd.mp4")
    pd.DataFrame({"filename": ["ccc.mp4", "ddd.mp4"], "label": [1, 0]}).to_csv(tmp_path / "test" / "labels.csv",
                                                                              index=False)
    table = load_dataset(f"dfdc:{tmp_path}").table.set_index("sample_id")
    assert table.loc["dfdc_train_part_0/aaa", "label"] == 1 and table.loc["dfdc_train_part_0/aaa", "group"] == "bbb"
    assert table.loc["test/ccc", ["label", "split"]].tolist() == [1, "test"]


def test_trueface_pre_and_post_social_folders(tmp_path: Path):
    base = tmp_path / "TrueFace"
    for i in range(20):
        _touch(base, f"TrueFace_PreSocial/Real/FFHQ/{i:05d}.png", f"TrueFace_PreSocial/Fake/StyleGAN2/psi1/{i:05d}.png",
               f"TrueFace_PostSocial/Telegram/Real/FFHQ/{i:05d}.jpg",
               f"TrueFace_PostSocial/Telegram/Fake/StyleGAN/psi05/{i:05d}.jpg")
    pre = load_dataset(f"trueface:{tmp_path}").table
    assert len(pre) == 40 and set(pre["method"]) == {"FFHQ", "StyleGAN2"}
    assert 0.4 < (pre["split"] == "train").mean() < 0.95
    tele = load_dataset(f"trueface:{tmp_path}?social=telegram").table
    assert tele["sample_id"].str.startswith("telegram/").all() and set(tele["label"]) == {0, 1}
    both = load_dataset(f"trueface:{tmp_path}?social=all").table
    pre_split = dict(zip(pre["group"], pre["split"], strict=True))
    post = both[both["sample_id"].str.startswith("telegram/Real/")]
    assert all(pre_split.get(g, s) == s for g, s in zip(post["group"], post["split"], strict=True))
    carved = load_dataset(f"trueface:{tmp_path}?val=0.3").table                 # a val split out of train
    assert (carved["split"] == "val").any() and set(carved["split"]) == {"train", "val", "test"}
    assert ((carved["split"] == "test") == (pre["split"] == "test")).all()      # the test split stays
    with pytest.raises(DatasetError, match="val=0.8"):
        load_dataset(f"trueface:{tmp_path}?val=0.8")


def test_deepfakebench_index_makes_one_sample_per_frame_folder(tmp_path: Path):
    frames = []
    for video in ("000", "001_002"):
        folder = tmp_path / "frames" / video
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
        frames.append([str(folder / f"{i:03d}.png") for i in range(3)])
    index = {"FaceForensics++": {
        "FF-real": {"test": {"c23": {"000": {"label": "FF-real", "frames": frames[0]}}}},
        "FF-DF": {"test": {"c23": {"001_002": {"label": "FF-DF", "frames": frames[1]}}}}}}
    (tmp_path / "FaceForensics++.json").write_text(json.dumps(index))
    table = load_dataset(f"deepfakebench:{tmp_path / 'FaceForensics++.json'}?compression=c23").table
    assert sorted(table["sample_id"]) == ["FF-DF/001_002", "FF-real/000"]
    assert dict(zip(table["method"], table["label"], strict=True)) == {"FF-real": 0, "FF-DF": 1}
    from dfbench.video.probe import probe_video

    assert probe_video(Path(table["path"][0])).frame_count == 3


def test_data_check_reports_every_problem_and_exits_1(tmp_path: Path, clip: Path):
    (tmp_path / "good.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "broken.mp4").write_bytes(b"garbage")
    pd.DataFrame([
        {"sample_id": "a", "path": "good.mp4", "label": 0, "split": "test"},
        {"sample_id": "b", "path": "broken.mp4", "label": 1, "split": "test"},
        {"sample_id": "c", "path": "good.mp4", "label": 3, "split": "test"},
        {"sample_id": "d", "path": "gone.mp4", "label": 1, "split": "test"},
        {"sample_id": "d", "path": "good.mp4", "label": 1, "split": "train"},
    ]).to_csv(tmp_path / "m.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "dfbench", "data", "check", str(tmp_path / "m.csv")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    err = " ".join(out.stderr.split())
    assert "Duplicate sample_id 'd'" in err and "Label '3' of sample 'c'" in err and "broken.mp4" in err
    assert "2 invalid rows, 1 unreadable files" in err and "Traceback" not in out.stderr
    clean = subprocess.run([sys.executable, "-m", "dfbench", "data", "check", str(tmp_path / "m.csv"),
                            "--no-probe"], capture_output=True, text=True, timeout=300)
    assert clean.returncode == 1 and "broken.mp4" not in clean.stderr


def test_a_deepfakebench_index_runs_through_the_whole_suite(small_demo: Path, tmp_path: Path):
    import cv2

    from dfbench.api import run

    frames = {}
    for kind in ("real", "fake"):
        cap = cv2.VideoCapture(str(small_demo / kind / "clip_003.mp4"))
        folder = tmp_path / "frames" / kind
        folder.mkdir(parents=True)
        for i in range(6):
            ok, frame = cap.read()
            assert ok
            cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
        frames[kind] = sorted(str(p) for p in folder.iterdir())
    index = {"demo": {"demo-real": {"test": {"r": {"frames": frames["real"]}}},
                      "demo-fake": {"test": {"f": {"frames": frames["fake"]}}}}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    summary = run(detector="effb2", weights="random", dataset=f"deepfakebench:{tmp_path / 'index.json'}", frames=3,
                  out=tmp_path / "run", device="cpu", precision="fp32")
    table = summary.results.metrics(("suite",))
    assert table["cell"].nunique() == 13 and (table["n_frames"] + table["n_no_face"] == 6).all()
    assert len(summary.results.matrix("auc").columns) >= 13 + 3
