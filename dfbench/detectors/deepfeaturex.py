"""DeepFeatureX Net (Pontorno, Guarnera, Battiato; seeds/deepfeaturex-net.txt): three DenseNet-121 base models
(DM, GAN, REAL) whose 1024-d features are stacked as 3 channels, a Conv1d head with kernels 7, 5, 3, 3, 3,
global average pooling and a 3-way linear layer (0 = DM, 1 = GAN, 2 = REAL; class folders sorted).

Whole images, no face crop: resize to 256 x 256 (PIL bilinear, aspect not kept), ImageNet normalisation.
P(fake) = 1 - p(REAL); the 3-class probabilities stay available to 3-class metrics. Reads the complete
state dict (``model1.*``, ``model2.*``, ``model3.*``, ``convs.*``, ``classifier.*``) or the three base-model
files (torchvision DenseNet-121 with a 2-way classifier, which is dropped) plus a head file (``convs.*``,
``classifier.*``), as the authors' code saves them; a folder laid out as their ``models_dir``
(``bm-dm/``, ``bm-gan/``, ``bm-real/``, ``complete/``) works too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfbench.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.errors import CheckpointError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

CLASSES = ("DM", "GAN", "REAL")
BASES = ("model1", "model2", "model3")  # DM, GAN, REAL base models, as the complete model names them


def build_deepfeaturex():
    """The complete DeepFeatureX network with DenseNet-121 backbones (random weights)."""
    import timm
    import torch
    from torch import nn

    class DeepFeatureX(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in BASES:
                setattr(self, name, timm.create_model("densenet121", pretrained=False, num_classes=0))
            # Conv1d -> ReLU -> BN, the last conv without BN, as the authors' head (indices match its keys).
            self.convs = nn.Sequential(
                nn.Conv1d(3, 16, 7, stride=2, padding=1), nn.ReLU(), nn.BatchNorm1d(16),
                nn.Conv1d(16, 64, 5, stride=2, padding=1), nn.ReLU(), nn.BatchNorm1d(64),
                nn.Conv1d(64, 256, 3, padding=1), nn.ReLU(), nn.BatchNorm1d(256),
                nn.Conv1d(256, 512, 3, padding=1), nn.ReLU(), nn.BatchNorm1d(512),
                nn.Conv1d(512, 1024, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
            self.classifier = nn.Sequential(nn.Linear(1024, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            codes = torch.stack([getattr(self, name)(x) for name in BASES], dim=1)  # [B, 3, 1024]
            return self.classifier(self.convs(codes).flatten(1))

    return DeepFeatureX()


def head_of(model):
    """A module of `model`'s trainable part, the Conv1d stack and the classifier, that maps stacked base features
    (B x 3 x 1024) to logits. It shares `model`'s layers, and its state keys (``convs.*``, ``classifier.*``) are
    the complete model's."""
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs, self.classifier = model.convs, model.classifier

        def forward(self, codes):
            return self.classifier(self.convs(codes).flatten(1))

    return Head()


# torchvision's DenseNet hub files name a dense layer's parts ``norm.1``, ``conv.2``; its modules say ``norm1``.
_OLD_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_(?:mean|var)))$")


def densenet_backbone_state(state: dict[str, Any]) -> dict[str, Any] | None:
    """The backbone tensors of a bare DenseNet-121 classifier's state dict (torchvision's keys, or the older
    ``norm.1``-style names of its ImageNet files), without its classifier; None for any other state dict (a
    complete DeepFeatureX model, for one)."""
    if not any(k.startswith("features.") for k in state) or any(k.startswith(BASES) for k in state):
        return None
    return {_OLD_LAYER_KEY.sub(r"\1\2", k): v for k, v in state.items() if not k.startswith("classifier.")}


def _base_state(state: dict[str, Any]) -> dict[str, Any]:
    """A base-model file's backbone tensors: torchvision DenseNet-121 keys without its classifier."""
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


@register_detector
class DeepFeatureXNet(DetectorAdapter):
    """DeepFeatureX Net, DenseNet-121 base models."""

    card = DetectorCard(
        key="deepfeaturex",
        title="DeepFeatureX Net (3 x DenseNet-121 + Conv1d head), 3 classes DM / GAN / REAL",
        reference="Pontorno, Guarnera, Battiato, DeepFeatureX Net; opontorno/block-based_deepfake-detection",
        input_size=256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=CropSpec(size=256, scale=1.0, square=False, whole_frame=True, interpolation="pil_bilinear"),
        output="P(fake) = 1 - softmax index 2 (REAL); classes DM, GAN, REAL",
        formats=("complete state dict (model1.*, model2.*, model3.*, convs.*, classifier.*)",
                 "four files: DM, GAN, REAL base models (torchvision densenet121 state dicts) and the head "
                 "(convs.*, classifier.*), in that order",
                 "a models_dir folder: bm-dm/, bm-gan/, bm-real/ base models and complete/ or head file"),
        verified="DenseNet-121 backbones checked against torchvision densenet121 (tests/test_parity.py)",
        classes=CLASSES,
        finder="none",
        decision="argmax",        # src/dfx/training_procedure.py: a prediction other than REAL (index 2) is fake
        protocol="Whole images, as the authors. Accuracy-type metrics decide by argmax (not REAL = fake), as "
                 "the authors' code; AUC uses 1 - p(REAL).",
    )

    def build(self) -> torch.nn.Module:
        return build_deepfeaturex()

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        import torch

        return 1.0 - torch.softmax(output.float(), dim=1)[:, 2]

    def fake_log_odds(self, output: torch.Tensor) -> torch.Tensor:
        """log P(not REAL) - log P(REAL) from the three logits, without a saturating softmax."""
        import torch

        out = output.float()
        return torch.logsumexp(out[:, :2], dim=1) - out[:, 2]

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        from dfbench.detectors.checkpoints import extract_state_dict, fit_state_dict, strip_prefixes

        if len(paths) == 1 and paths[0].is_dir():
            paths = _models_dir_files(paths[0])
        states = [strip_prefixes(extract_state_dict(self.read_checkpoint(p, trust)), ("module.",)) for p in paths]
        if len(states) == 1:
            state = states[0]
        elif len(states) == 4:
            state = {f"{name}.{k}": v for name, base in zip(BASES, states[:3], strict=True)
                     for k, v in _base_state(base).items()}
            state.update(states[3])
        else:
            raise CheckpointError(f"deepfeaturex reads one complete state dict or four files (DM, GAN, REAL base "
                                  f"models and the head), got {len(paths)}.")
        model = self.build()
        fit_state_dict(model, state, "deepfeaturex (3 x DenseNet-121 + Conv1d head)")
        return model


def _models_dir_files(folder: Path) -> list[Path]:
    """The files of an authors'-layout models_dir: the complete model, else base models plus head."""
    complete = sorted((folder / "complete").glob("*.pt")) if (folder / "complete").is_dir() else []
    bases = [sorted((folder / sub).glob("*.pt")) for sub in ("bm-dm", "bm-gan", "bm-real")]
    if len(complete) == 1 and not all(bases):
        return complete
    head = sorted((folder / "head").glob("*.pt")) if (folder / "head").is_dir() else []
    if all(len(b) == 1 for b in bases) and len(head) == 1:
        return [b[0] for b in bases] + head
    if len(complete) == 1:
        return complete
    raise CheckpointError(f"{str(folder)!r} is not a DeepFeatureX models_dir: expected complete/<model>.pt, or "
                          "bm-dm/, bm-gan/, bm-real/ with one .pt each plus head/<head>.pt.")
