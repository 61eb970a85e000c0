"""Parity: each adapter, given a file in the authors' format, scores like an independent implementation.

References come from packages installed from the registry (pretrainedmodels' Cadene Xception, which
FaceForensics++ uses; efficientnet_pytorch, which SBI uses; torchvision's EfficientNet-B2, DenseNet-121
and VGG19) with random weights, saved the way the authors save them.

A randomly initialised network with made-up BatchNorm statistics gives nearly the same output for every input
(the audit measured a spread of 0.0 for the EfficientNets), and then a parity test passes whatever the adapter
does to its input. So each reference is made input-sensitive first (`_calibrate`: BatchNorm running statistics
measured by forward passes over random batches, normalised as the reference expects), every check asserts a
minimum spread of the reference's output across its inputs, and every check shows that the same adapter fed
BGR instead of RGB, or with another normalisation, fails it (`_check`).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dfbench.detectors import get_detector
from dfbench.errors import CheckpointError

TOL = 1e-5


MIN_SPREAD = 100 * TOL     # the reference output must move this much across inputs, or parity means nothing
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _calibrate(model: nn.Module, size: int, normalise: Callable[[torch.Tensor], torch.Tensor], seed: int = 0,
               batches: int = 3) -> nn.Module:
    """Random BatchNorm scales and shifts, and running statistics measured on random batches as the reference
    sees them: activations keep their scale through the network, so its output depends on its input."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    with torch.no_grad():
        for module in norms:
            module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
            module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 0.2 - 0.1)
            module.reset_running_stats()
            module.momentum = None                      # a plain average over the calibration batches
        model.train()
        for _ in range(batches):
            model(normalise(torch.rand(4, 3, size, size, generator=gen)))
    for module in norms:
        module.momentum = 0.1
    return model.eval()


def _close(got: torch.Tensor, expected: torch.Tensor, label: str) -> None:
    """Assert parity to TOL and print the largest difference (``pytest -s`` shows it)."""
    diff = float((got - expected).abs().max())
    print(f"parity {label}: max |diff| {diff:.2e}")
    assert diff < TOL, (label, diff)


def _check(adapter, faces: torch.Tensor, expected: torch.Tensor, label: str,
           predict: Callable | None = None) -> None:
    """Parity that can fail: the reference moves across `faces`, the adapter matches it, and the same adapter
    given BGR faces, or normalising with other statistics, does not."""
    predict = predict or (lambda a, x: a.predict(x))
    spread = float(expected.max() - expected.min())
    assert spread >= MIN_SPREAD, f"{label}: the reference gives nearly one output for every input ({spread:.1e})"
    _close(predict(adapter, faces), expected, label)
    bgr = float((predict(adapter, faces.flip(1)) - expected).abs().max())
    card = adapter.card
    other = ((0.5,) * 3, (0.5,) * 3) if card.mean == IMAGENET_MEAN else (IMAGENET_MEAN, IMAGENET_STD)
    adapter.card = dataclasses.replace(card, mean=other[0], std=other[1])
    try:
        renormalised = float((predict(adapter, faces) - expected).abs().max())
    finally:
        del adapter.card                                # back to the class's card
    print(f"parity {label}: spread {spread:.1e}, BGR off by {bgr:.1e}, other normalisation off by {renormalised:.1e}")
    assert bgr > 10 * TOL and renormalised > 10 * TOL, (label, bgr, renormalised)


def _imagenet(faces: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (faces - mean) / std


def _halves(faces: torch.Tensor) -> torch.Tensor:
    return (faces - 0.5) / 0.5


def _faces(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(7))


N_FACES = 4


def _adapter(key: str, weights, **kw):
    adapter = get_detector(key)
    adapter.load(weights, device="cpu", precision="fp32", **kw)
    return adapter


# -- Xception (FaceForensics++) ----------------------------------------------------------------------------------

NETWORK_XCEPTION = """
import sys
import pretrainedmodels  # noqa: F401
_cadene = sys.modules["pretrainedmodels.models.xception"]
class SeparableConv2d(_cadene.SeparableConv2d):
    pass
class Block(_cadene.Block):
    pass
class Xception(_cadene.Xception):
    pass
"""
NETWORK_MODELS = """
from torch import nn
class TransferModel(nn.Module):
    def __init__(self, model, dropout):
        super().__init__()
        self.model = model
        head = nn.Linear(2048, 2)
        self.model.last_linear = nn.Sequential(nn.Dropout(dropout), head) if dropout else head
        del self.model.fc
    def forward(self, x):
        return self.model(x)
"""


@pytest.fixture()
def ffpp_network(tmp_path: Path):
    """A package named as in the FF++ repository (``network.models``, ``network.xception``), for pickling only."""
    pkg = tmp_path / "ffpp_code" / "network"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "xception.py").write_text(textwrap.dedent(NETWORK_XCEPTION))
    (pkg / "models.py").write_text(textwrap.dedent(NETWORK_MODELS))
    sys.path.insert(0, str(pkg.parent))
    import network.models
    import network.xception

    yield network
    sys.path.remove(str(pkg.parent))
    for name in [m for m in sys.modules if m == "network" or m.startswith("network.")]:
        del sys.modules[name]


def _ffpp_model(network, dropout: float) -> nn.Module:
    cadene = sys.modules["pretrainedmodels.models.xception"]
    torch.manual_seed(1)
    xception = network.xception.Xception(num_classes=1000)
    for module in xception.modules():  # give every block the class path FF++'s pickles carry
        for ours, theirs in ((cadene.Block, network.xception.Block),
                             (cadene.SeparableConv2d, network.xception.SeparableConv2d)):
            if type(module) is ours:
                module.__class__ = theirs
    return _calibrate(network.models.TransferModel(xception, dropout), 299, _halves, seed=1)


def _xception_reference(model: nn.Module, faces: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(_halves(faces)), dim=1)[:, 1]


@pytest.mark.parametrize("dropout", [0.5, 0.0], ids=["last_linear.1", "last_linear"])
def test_xception_reads_the_ffpp_pickled_transfer_model(ffpp_network, tmp_path: Path, dropout: float):
    model = _ffpp_model(ffpp_network, dropout)
    faces = _faces(N_FACES, 299)
    expected = _xception_reference(model, faces)
    torch.save(model, tmp_path / "all_c23.p", _use_new_zipfile_serialization=False)  # the 2019-era format
    for name in [m for m in sys.modules if m == "network" or m.startswith("network.")]:
        del sys.modules[name]  # the adapter must not need the authors' code
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        _adapter("xception", tmp_path / "all_c23.p")
    first = _adapter("xception", tmp_path / "all_c23.p", trust_checkpoint=True)
    assert first.notes and "plain state dict" in first.notes[0]
    _check(first, faces, expected, "xception FF++ pickle")
    again = _adapter("xception", tmp_path / "all_c23.p")  # converted once: no trust needed any more
    _close(again.predict(faces), expected, "xception FF++ pickle, converted")


def test_xception_reads_ffpp_and_timm_state_dicts(ffpp_network, tmp_path: Path):
    model = _ffpp_model(ffpp_network, 0.5)
    faces = _faces(N_FACES, 299)
    expected = _xception_reference(model, faces)
    torch.save(model.state_dict(), tmp_path / "ffpp_keys.pth")
    _check(_adapter("xception", tmp_path / "ffpp_keys.pth"), faces, expected, "xception FF++ state dict")


# -- SBI (efficientnet_pytorch EfficientNet-B4) ------------------------------------------------------------------

def test_sbi_reads_the_released_tar(tmp_path: Path):
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(2)
    net = _calibrate(EfficientNet.from_name("efficientnet-b4", num_classes=2), 380, lambda x: x, seed=2)
    detector = nn.Module()
    detector.net = net  # SBI's Detector keeps the network as .net
    torch.save({"model": detector.state_dict(), "optimizer": {"state": {}}, "epoch": 4}, tmp_path / "FFraw.tar")
    faces = _faces(N_FACES, 380)
    with torch.no_grad():
        expected = torch.softmax(net(faces), dim=1)[:, 1]
    _check(_adapter("sbi", tmp_path / "FFraw.tar"), faces, expected, "sbi FFraw.tar")


# -- EfficientNet-B2: torchvision and efficientnet_pytorch layouts -------------------------------------------------

def test_effb2_reads_torchvision_state_dicts(tmp_path: Path):
    torch.manual_seed(3)
    model = _calibrate(torchvision.models.efficientnet_b2(num_classes=2), 224, _imagenet, seed=3)
    torch.save(model.state_dict(), tmp_path / "tv_b2.pth")
    faces = _faces(N_FACES, 224)
    with torch.no_grad():
        expected = torch.softmax(model(_imagenet(faces)), dim=1)[:, 1]
    _check(_adapter("effb2", tmp_path / "tv_b2.pth"), faces, expected, "effb2 torchvision")


def test_effb2_reads_efficientnet_pytorch_state_dicts(tmp_path: Path):
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(4)
    # Static "same" padding computed for the card's 224 px input, so both sides pad alike.
    model = _calibrate(EfficientNet.from_name("efficientnet-b2", num_classes=2, image_size=224), 224, _imagenet,
                       seed=4)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "lm_b2.pth")
    faces = _faces(N_FACES, 224)
    with torch.no_grad():
        expected = torch.softmax(model(_imagenet(faces)), dim=1)[:, 1]
    adapter = _adapter("effb2", tmp_path / "lm_b2.pth")
    assert adapter.architecture == "tf_efficientnet_b2"
    _check(adapter, faces, expected, "effb2 efficientnet_pytorch")


# -- DeepFeatureX (torchvision DenseNet-121 base models) -----------------------------------------------------------

class _DfxReference(nn.Module):
    """DeepFeatureX written from the paper: torchvision DenseNet-121 feature extractors and the Conv1d head."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("model1", "model2", "model3"):
            backbone = torchvision.models.densenet121()
            backbone.classifier = nn.Identity()
            setattr(self, name, backbone)
        layers: list[nn.Module] = []
        for cin, cout, k, stride in ((3, 16, 7, 2), (16, 64, 5, 2), (64, 256, 3, 1), (256, 512, 3, 1)):
            layers += [nn.Conv1d(cin, cout, k, stride=stride, padding=1), nn.ReLU(), nn.BatchNorm1d(cout)]
        layers += [nn.Conv1d(512, 1024, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1)]
        self.convs = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(1024, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.stack([self.model1(x), self.model2(x), self.model3(x)], dim=1)
        return self.classifier(torch.flatten(self.convs(codes), 1))


@pytest.fixture(scope="module")
def dfx_reference() -> nn.Module:
    torch.manual_seed(5)
    return _calibrate(_DfxReference(), 256, _imagenet, seed=5, batches=2)


def _dfx_expected(model: nn.Module, faces: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(_imagenet(faces)), dim=1)


def test_deepfeaturex_reads_the_complete_state_dict(dfx_reference, tmp_path: Path):
    torch.save(dfx_reference.state_dict(), tmp_path / "dense121.pt")
    faces = _faces(N_FACES, 256)
    probs = _dfx_expected(dfx_reference, faces)
    adapter = _adapter("deepfeaturex", tmp_path / "dense121.pt")
    _check(adapter, faces, 1 - probs[:, 2], "deepfeaturex complete")
    _check(adapter, faces, probs[:, 0], "deepfeaturex complete, p(DM)", lambda a, x: a.predict_classes(x)[:, 0])
    _close(adapter.predict_classes(faces), probs, "deepfeaturex complete, 3 classes")


def test_deepfeaturex_reads_base_models_and_head_files(dfx_reference, tmp_path: Path):
    files = []
    for name, folder in (("model1", "bm-dm"), ("model2", "bm-gan"), ("model3", "bm-real")):
        base = {f"{k}": v for k, v in getattr(dfx_reference, name).state_dict().items()}
        base["classifier.weight"], base["classifier.bias"] = torch.zeros(2, 1024), torch.zeros(2)  # 2-way head, dropped
        (tmp_path / folder).mkdir()
        torch.save(base, tmp_path / folder / "dense121.pt")
        files.append(tmp_path / folder / "dense121.pt")
    head = {k: v for k, v in dfx_reference.state_dict().items() if k.startswith(("convs.", "classifier."))}
    (tmp_path / "head").mkdir()
    torch.save(head, tmp_path / "head" / "dense121.pt")
    faces = _faces(N_FACES, 256)
    expected = 1 - _dfx_expected(dfx_reference, faces)[:, 2]
    for weights in (files + [tmp_path / "head" / "dense121.pt"], tmp_path):
        _check(_adapter("deepfeaturex", weights), faces, expected, "deepfeaturex base + head files")


# -- Capsule-Forensics-v2 ------------------------------------------------------------------------------------------

class _CapsuleReference(nn.Module):
    """Capsule-Forensics-v2 written from the paper's equations with explicit loops, in the authors' key layout."""

    def __init__(self) -> None:
        super().__init__()
        self.fea_ext = nn.Module()
        self.fea_ext.capsules = nn.ModuleList()
        for _ in range(10):
            seq = nn.Sequential(nn.Conv2d(256, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                nn.Conv2d(64, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Identity(),
                                nn.Conv1d(2, 8, 5, stride=2, padding=2), nn.BatchNorm1d(8),
                                nn.Conv1d(8, 1, 3, padding=1), nn.BatchNorm1d(1))
            self.fea_ext.capsules.append(seq)
        self.routing_stats = nn.Module()
        self.routing_stats.route_weights = nn.Parameter(torch.randn(2, 10, 4, 8))
        vgg = torchvision.models.vgg19()
        self.vgg = vgg.features[:19]

    @staticmethod
    def _squash(v: torch.Tensor) -> torch.Tensor:
        n2 = float((v * v).sum())
        return v * (n2 / (1 + n2)) / n2 ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.vgg(x)
        out = []
        for b in range(x.shape[0]):
            primary = torch.zeros(8, 10)
            for i, caps in enumerate(self.fea_ext.capsules):
                h = caps[:6](feats[b:b + 1])[0].reshape(16, -1)
                stats = torch.stack([h.mean(dim=1), h.std(dim=1)])[None]  # [1, 2, 16], unbiased std
                primary[:, i] = caps[7:](stats).reshape(8)
            for d in range(8):  # the squash runs across the 10 capsules
                primary[d] = self._squash(primary[d])
            priors = torch.zeros(2, 10, 4)
            for j in range(2):
                for i in range(10):
                    priors[j, i] = self.routing_stats.route_weights[j, i] @ primary[:, i]
            logits = torch.zeros(2, 10, 4)
            for step in range(2):
                c = torch.softmax(logits, dim=1)
                v = torch.stack([self._squash((c[j] * priors[j]).sum(dim=0)) for j in range(2)])  # [2, 4]
                if step == 0:
                    logits = logits + priors * v[:, None, :]
            out.append(torch.softmax(v.T, dim=1).mean(dim=0))  # mean over the 4 dims of the class softmax
        return torch.stack(out)


@pytest.mark.slow   # a full VGG19 forward pass on CPU; in make test-slow
def test_capsule_reads_the_capsule_state_dict_and_vgg19_weights(tmp_path: Path):
    torch.manual_seed(6)
    reference = _calibrate(_CapsuleReference(), 300, _imagenet, seed=6, batches=2)
    capsule_state = {k: v for k, v in reference.state_dict().items() if not k.startswith("vgg.")}
    vgg = torchvision.models.vgg19()
    vgg.features[:19].load_state_dict(reference.vgg.state_dict())
    torch.save(capsule_state, tmp_path / "capsule_21.pt")
    torch.save(vgg.state_dict(), tmp_path / "vgg19-dcbb9e9d.pth")
    faces = _faces(N_FACES, 300)
    with torch.no_grad():
        expected = reference(_imagenet(faces))[:, 1]
    adapter = _adapter("capsule", [tmp_path / "vgg19-dcbb9e9d.pth", tmp_path / "capsule_21.pt"])
    _check(adapter, faces, expected, "capsule + vgg19")
    with pytest.raises(CheckpointError, match="missing: the VGG19 ImageNet weights"):
        _adapter("capsule", tmp_path / "capsule_21.pt")
