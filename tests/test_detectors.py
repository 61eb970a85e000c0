"""The adapter contract over every registered detector, and effb2's checkpoint formats."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from dfbench.detectors import DETECTORS, get_detector
from dfbench.errors import CheckpointError

KEYS = [*DETECTORS.names(), "timm:resnet18"]


def _faces(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def loaded() -> dict:
    cache = {}
    for key in KEYS:
        adapter = get_detector(key)
        adapter.load("random", device="cpu", precision="fp32")
        cache[key] = adapter
    return cache


@pytest.mark.parametrize("key", KEYS)
def test_construction_is_cheap_and_the_card_is_consistent(key: str):
    started = time.perf_counter()
    adapter = get_detector(key)
    assert time.perf_counter() - started < 1.0
    assert adapter.model is None
    card = adapter.card
    assert card.key == key and card.crop.size == card.input_size and len(card.mean) == len(card.std) == 3
    assert card.formats and card.reference


@pytest.mark.parametrize("key", KEYS)
def test_predict_returns_one_finite_probability_per_face(key: str, loaded: dict):
    adapter = loaded[key]
    scores = adapter.predict(_faces(3, adapter.card.input_size))
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("key", KEYS)
def test_batch_invariance_and_determinism(key: str, loaded: dict):
    adapter = loaded[key]
    faces = _faces(2, adapter.card.input_size, seed=1)
    together = adapter.predict(faces)
    apart = torch.cat([adapter.predict(faces[:1]), adapter.predict(faces[1:])])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=0)
    torch.testing.assert_close(adapter.predict(faces), together, atol=0, rtol=0)


@pytest.mark.parametrize("key", [k for k in KEYS if get_detector(k).card.demo_weights])
def test_shipped_demo_weights_load_and_are_small(key: str):
    adapter = get_detector(key)
    path = adapter.demo_weights_path()
    assert path.stat().st_size <= 20 * 1024 * 1024
    adapter.load("demo", device="cpu", precision="fp32")
    assert adapter.weights_sha256 and adapter.weights_label == "demo"


@pytest.mark.slow
def test_the_demo_weights_separate_the_demo_test_split(tmp_path: Path):
    """The shipped effb2 demo weights were trained on the train split only; on the unseen test split's clean
    videos their video-level AUC is at least 0.90 (32 frames, fp32: 0.951 when they were made; 8 here)."""
    from dfbench.api import run

    summary = run(detector="effb2", suite="clean", frames=8, device="cpu", precision="fp32", out=tmp_path / "r")
    matrix = summary.matrix("auc")
    assert matrix["weights"].iloc[0] == "demo" and summary.n_samples == 24
    assert matrix["none-0"].iloc[0] >= 0.90, matrix["none-0"].iloc[0]


def _reference_effb2(seed: int = 3) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_detector("effb2").build().eval()
    for module in model.modules():  # non-trivial BN statistics, so a wrong mapping shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "net_prefix"])
def test_effb2_reads_state_dicts_in_their_usual_wrappings(wrap: str, tmp_path: Path):
    model = _reference_effb2()
    state = model.state_dict()
    obj = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {}},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "net_prefix": {"model": {f"net.{k}": v for k, v in state.items()}},
    }[wrap]
    torch.save(obj, tmp_path / "w.pt")
    adapter = get_detector("effb2")
    adapter.load(tmp_path / "w.pt", device="cpu", precision="fp32")
    faces = _faces(2, 224)
    with torch.inference_mode():
        expected = torch.softmax(model(adapter.normalize(faces)), dim=1)[:, 1]
    torch.testing.assert_close(adapter.predict(faces), expected, atol=1e-5, rtol=0)


def test_a_file_for_another_architecture_lists_missing_and_unexpected_keys(tmp_path: Path):
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3), "fc.weight": torch.zeros(2, 8)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \(conv_stem.weight.*unexpected keys \(conv.weight"):
        get_detector("effb2").load(tmp_path / "other.pt")


def test_a_classifier_of_the_wrong_size_is_a_shape_mismatch(tmp_path: Path):
    state = _reference_effb2().state_dict()
    state["classifier.weight"] = torch.zeros(1000, 1408)
    state["classifier.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "imagenet_head.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatches \(classifier.weight: file \(1000, 1408\)"):
        get_detector("effb2").load(tmp_path / "imagenet_head.pt")


def test_a_pickled_whole_model_needs_trust(tmp_path: Path):
    torch.save(_reference_effb2(), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        get_detector("effb2").load(tmp_path / "whole.pt")
    adapter = get_detector("effb2")
    adapter.load(tmp_path / "whole.pt", trust_checkpoint=True)
    assert len(adapter.weights_sha256) == 64


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path: Path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        get_detector("effb2").load(tmp_path / "junk.pt")
