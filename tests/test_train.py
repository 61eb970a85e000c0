"""`dfbench train` runs the recipe end to end on tiny data and writes a checkpoint `run` can load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from dfbench.detectors import get_detector


def test_train_writes_a_loadable_checkpoint_with_its_recipe(small_demo: Path, tmp_path: Path):
    out = tmp_path / "w.pt"
    cmd = [sys.executable, "-m", "dfbench", "train", "--detector", "effb2", "--dataset",
           str(small_demo / "manifest.csv"), "--out", str(out), "--epochs", "1", "--frames", "2",
           "--batch-size", "4", "--device", "cpu", "--save-dtype", "fp16"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "epoch   1" in result.stdout and "Best epoch 1" in result.stdout
    checkpoint = torch.load(out, weights_only=True)
    meta = checkpoint["meta"]
    assert meta["recipe"] == "trueface-effb2" and meta["train_samples"] == 4 and meta["val_samples"] == 2
    assert checkpoint["state_dict"]["classifier.weight"].dtype == torch.float16
    adapter = get_detector("effb2")
    adapter.load(out, device="cpu", precision="fp32")
    assert adapter.predict(torch.rand(2, 3, 224, 224)).shape == (2,)
