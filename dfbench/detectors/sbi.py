"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): EfficientNet-B4 trained on self-blended fakes.

The released ``FFraw.tar`` / ``FFc23.tar`` hold ``{"model": state_dict, ...}`` of SBI's ``Detector``, whose
``net`` is lukemelas' ``EfficientNet.from_pretrained("efficientnet-b4", advprop=True, num_classes=2)``.
That maps exactly onto timm ``tf_efficientnet_b4`` (not ``efficientnet_b4``). Preprocessing as
``src/inference/preprocess.py``: the box grows by w/8 left and right and h/8 top and bottom, clamped,
resized to 380 with cv2 (bilinear), RGB / 255 with no mean/std; P(fake) = softmax index 1; every face
with at least half the largest face's area is scored and a frame takes the max, a video the mean.
SBI finds faces with RetinaFace: ``--finder card`` runs it from the weights file named by
``$DFBENCH_RETINAFACE_WEIGHTS``, and falls back to MTCNN with a notice when there is none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfbench.detectors._efficientnet import is_lukemelas, lukemelas_to_timm
from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    from pathlib import Path

    import torch


@register_detector
class SelfBlendedImages(DetectorAdapter):
    """timm ``tf_efficientnet_b4``, 2 classes, input RGB in [0, 1] without normalisation."""

    card = DetectorCard(
        key="sbi",
        title="SBI EfficientNet-B4 (timm tf_efficientnet_b4)",
        reference="Shiohara & Yamasaki, Detecting Deepfakes with Self-Blended Images, CVPR 2022; "
                  "mapooon/SelfBlendedImages src/inference",
        input_size=380,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        crop=CropSpec(size=380, scale=1.25, square=False, faces="all", min_relative_area=0.5,
                      interpolation="linear"),
        finder="retinaface",      # src/inference/inference_dataset.py: RetinaFace resnet50_2020-07-20, max_size 2048
        protocol="SBI's finder is RetinaFace (resnet50_2020-07-20), which runs from a weights file you give "
                 "($DFBENCH_RETINAFACE_WEIGHTS); without it, mtcnn boxes are cut with SBI's margins. Video rule "
                 "as SBI: max over faces, mean over frames, 0.5 for a video without a face.",
        output="softmax over 2 logits, index 1 = fake; frame = max over faces",
        formats=("SBI release FFraw.tar / FFc23.tar ({'model': {net.* efficientnet_pytorch keys}})",
                 "state dict with efficientnet_pytorch keys (_conv_stem, _blocks.i) or timm tf_efficientnet_b4 keys"),
        verified="key mapping checked against efficientnet_pytorch EfficientNet-B4 at 380 px (tests/test_parity.py)",
    )

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model("tf_efficientnet_b4", pretrained=False, num_classes=2)

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        from dfbench.detectors.checkpoints import fit_state_dict

        if len(paths) != 1:
            return super().load_weights(paths, trust)
        state = self.convert_state_dict(self.read_checkpoint(paths[0], trust))
        model = self.build()
        if is_lukemelas(state):
            state = lukemelas_to_timm(state, model)
        fit_state_dict(model, state, "sbi (timm tf_efficientnet_b4)")
        return model
