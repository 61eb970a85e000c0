"""Inception-ResNet-v2 (Szegedy et al., 2017), the transfer-learning baseline of the cut-out paper
(seeds/residual-cnn-cutout.txt), as timm ``inception_resnet_v2`` with a 2-class head at 299 x 299.
No detector weights were published: train it with ``dfbench train --detector inception_resnet_v2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch


@register_detector
class InceptionResNetV2(DetectorAdapter):
    """timm ``inception_resnet_v2``, 2 classes, inputs scaled to [-1, 1] (timm's config for it)."""

    card = DetectorCard(
        key="inception_resnet_v2",
        title="Inception-ResNet-v2 (timm inception_resnet_v2), cut-out paper baseline",
        reference="Gummadi et al., cut-out paper (compared model); Szegedy et al., Inception-v4, 2017",
        input_size=299,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop=CropSpec(size=299, scale=1.3, square=True),
        output="softmax over 2 logits, index 1 = fake",
        formats=("state dict with timm inception_resnet_v2 keys",),
        verified="unverified: no detector weights published",
    )

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model("inception_resnet_v2", pretrained=False, num_classes=2)
