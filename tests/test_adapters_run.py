"""Every registered adapter runs the whole video-ops suite on the demo set, and plug-ins register by entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from dfbench.detectors import DETECTORS, get_detector
from dfbench.gather import choose_finder

# One adapter in `make test`; every other one (and effb2's demo weights on the demo set) in `make test-slow`.
FAST = ("meso4",)


@pytest.mark.parametrize("key", [pytest.param(k, marks=() if k in FAST else pytest.mark.slow)
                                 for k in [*DETECTORS.names(), "timm:resnet18"]])
def test_every_adapter_runs_video_ops_on_the_demo_set(key: str, small_demo: Path, tmp_path: Path):
    # the fast one runs on the small demo set (`make test` never builds the full one); the others on the full set
    data = ["--dataset", str(small_demo / "manifest.csv"), "--weights", "random"] if key in FAST else []
    # MesoNet's own finder (dlib's CNN) takes about 3.4 s a frame on a 2-core CPU: the same models' HOG detector
    # gives the same landmarks and crop rule at about a sixth of the cost (0.57 s a frame)
    finder = ["--finder", "face_recognition_hog"] if get_detector(key).card.finder == "face_recognition" else []
    cmd = [sys.executable, "-m", "dfbench", "run", "--detector", key, "--suite", "video-ops", "--frames", "1",
           "--limit", "2", "--batch-size", "8", "--out", str(tmp_path / "run"), *data, *finder]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    flat = " ".join(out.stdout.split())
    if get_detector(key).card.demo_weights:
        assert "Using the shipped demo weights" in flat
    else:
        assert "runs with random weights" in flat
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(results["op"].unique()) == 11 and (results["n_videos"] + results["n_no_face"] > 0).all()
    video = results[results["aggregation"] != "frame"]
    assert video["n_videos"].nunique() == 1                    # every cell scores the same videos
    card = get_detector(key).card
    ran = finder[1] if finder else choose_finder("card", card.finder, key, card.crop.whole_frame)[0].name
    assert set(results["finder"]) == {ran} and set(video["aggregation"]) == {card.aggregation}


PLUGIN = '''
from torch import nn

from dfbench.detectors import DetectorAdapter, DetectorCard
from dfbench.faces import CropSpec


class TinyCNN(DetectorAdapter):
    card = DetectorCard(key="tinycnn", title="a tiny CNN", reference="tests", input_size=64,
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop=CropSpec(size=64),
                        output="softmax over 2 logits, index 1 = fake", formats=("state dict",))

    def build(self):
        return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 2))
'''


def test_third_party_adapter_registers_through_its_entry_point(tmp_path: Path, monkeypatch):
    (tmp_path / "tiny_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "tiny_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dfbench.detectors]\ntinycnn = tiny_plugin:TinyCNN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "tinycnn" in DETECTORS.names()
    adapter = get_detector("tinycnn")
    adapter.load("random", device="cpu", precision="fp32")
    import torch

    assert adapter.predict(torch.rand(2, 3, 64, 64)).shape == (2,)
