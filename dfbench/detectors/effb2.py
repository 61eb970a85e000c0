"""EfficientNet-B2 with a two-class head: Dey, Jadhav, Rana, "An Effective CNN-based Approach for Synthetic
Face Image Detection in Pre-Social and Post-Social Media Context" (seeds/effnet-b2-trueface-social.txt).

The paper trains at 224 x 224 RGB with a binary head; its code and weights are not public, so the
normalisation (ImageNet mean/std), face crop (FF++ square 1.3x box) and fake index (softmax 1) are ours
and are what `dfbench train --detector effb2` trains with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfbench.detectors._efficientnet import is_lukemelas, is_torchvision, lukemelas_to_timm, torchvision_to_timm
from dfbench.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    from pathlib import Path

    import torch


@register_detector
class EfficientNetB2(DetectorAdapter):
    """timm ``efficientnet_b2`` (torchvision layout), 2 classes, P(fake) = softmax index 1."""

    card = DetectorCard(
        key="effb2",
        title="EfficientNet-B2, binary head (timm efficientnet_b2)",
        reference="Dey, Jadhav, Rana 2024 (TrueFace pre/post-social); 224 px input as in the paper",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=CropSpec(size=224, scale=1.3, square=True),
        output="softmax over 2 logits, index 1 = fake",
        formats=("state dict: plain, or under 'state_dict' / 'model', with or without 'module.' / 'net.' prefix",
                 "timm efficientnet_b2 keys; torchvision efficientnet_b2 keys (features.*, mapped by order)",
                 "efficientnet_pytorch efficientnet-b2 keys (_blocks.*; runs as timm tf_efficientnet_b2)"),
        demo_weights="effb2_demo.pt",
        verified="unverified: the authors released no code or weights; demo weights trained by dfbench",
    )

    #: timm architecture: ``efficientnet_b2`` (timm/torchvision layout) or, for efficientnet_pytorch
    #: checkpoints, ``tf_efficientnet_b2`` (TF "same" padding and BatchNorm eps 1e-3, as that code has).
    architecture = "efficientnet_b2"

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model(self.architecture, pretrained=False, num_classes=2)

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        from dfbench.detectors.checkpoints import fit_state_dict

        if len(paths) != 1:
            return super().load_weights(paths, trust)
        state = self.convert_state_dict(self.read_checkpoint(paths[0], trust))
        self.architecture = "tf_efficientnet_b2" if is_lukemelas(state) else "efficientnet_b2"
        model = self.build()
        if is_lukemelas(state):
            state = lukemelas_to_timm(state, model)
            self.notes.append(f"{paths[0].name} has efficientnet_pytorch keys: effb2 runs it as timm "
                              "tf_efficientnet_b2, the architecture those keys belong to.")
        elif is_torchvision(state):
            state = torchvision_to_timm(state, model)
        fit_state_dict(model, state, f"effb2 (timm {self.architecture})")
        return model
