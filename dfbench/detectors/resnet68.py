"""The residual CNN of Gummadi et al., "Deep Residual Learning based Discriminator for Identifying Deepfakes
with Cut-Out Regularization" (seeds/residual-cnn-cutout.txt): 68 layers with skip connections, identity and
convolution blocks of three convolutions each (1x1, 3x3, 1x1), 224 x 224 x 3 input.

The paper's figure with the stage depths is not in the text, so they are ours: bottleneck stages of
3, 4, 12 and 3 blocks (22 blocks x 3 convolutions + the stem convolution + the classifier = 68 weighted
layers), built with timm's ResNet (stride in the 3x3 convolution). No weights were published: train it
with ``dfbench train --detector resnet68`` (Cut-Out is a training option).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfbench.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

STAGE_BLOCKS = (3, 4, 12, 3)


@register_detector
class ResNet68(DetectorAdapter):
    """Bottleneck ResNet with 68 weighted layers, 2 classes."""

    card = DetectorCard(
        key="resnet68",
        title="Residual CNN with 68 layers (bottleneck blocks 3-4-12-3), cut-out paper",
        reference="Gummadi et al., Deep Residual Learning based Discriminator for Identifying Deepfakes with "
                  "Cut-Out Regularization",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=CropSpec(size=224, scale=1.3, square=True),
        output="softmax over 2 logits, index 1 = fake",
        formats=("state dict written by dfbench train (timm ResNet keys)",),
        verified="unverified: no code or weights published; stage depths are ours (68 weighted layers)",
    )

    def build(self) -> torch.nn.Module:
        from timm.models.resnet import Bottleneck, ResNet

        return ResNet(block=Bottleneck, layers=STAGE_BLOCKS, num_classes=2)  # type: ignore[arg-type]
