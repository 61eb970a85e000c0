"""FaceForensics++ Xception (Rössler et al., ICCV 2019), as timm ``legacy_xception`` (Cadene's port, which
FF++'s ``network/xception.py`` is).

Reads the FF++ release (``all_raw.p``, ``all_c23.p``, ``all_c40.p``: whole pickled ``TransferModel``
objects, only with ``--trust-checkpoint``; converted once to a plain state dict) and plain state dicts in
either the FF++ layout (``model.`` prefix, ``last_linear.*`` or ``last_linear.1.*`` head) or timm's.
Preprocessing as FF++'s ``detect_from_video.py``: square crop 1.3x the face box, resize to 299 (PIL
bilinear), normalise to [-1, 1], P(fake) = softmax index 1. Faces: dlib's frontal detector and its first
face, as FF++ (``--finder card``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

# The classes FF++'s pickles name (ondyari/FaceForensics classification/network/{models,xception}.py).
FFPP_PICKLED_CLASSES = ("network.models.TransferModel", "network.xception.Xception", "network.xception.Block",
                        "network.xception.SeparableConv2d")


def ffpp_to_timm(state: dict[str, Any]) -> dict[str, Any]:
    """Rename FF++ TransferModel keys to timm ``legacy_xception`` keys (the head ``last_linear[.1]`` -> ``fc``).

    Example:
        >>> sorted(ffpp_to_timm({"last_linear.1.weight": 0, "conv1.weight": 1}))
        ['conv1.weight', 'fc.weight']
    """
    out = {}
    for key, value in state.items():
        for old in ("last_linear.1.", "last_linear."):
            if key.startswith(old):
                key = "fc." + key[len(old):]
                break
        out[key] = value
    return out


@register_detector
class XceptionFFPP(DetectorAdapter):
    """timm ``legacy_xception`` with a 2-class head."""

    card = DetectorCard(
        key="xception",
        title="Xception, FaceForensics++ baseline (timm legacy_xception)",
        reference="Rossler et al., FaceForensics++, ICCV 2019; ondyari/FaceForensics classification/",
        input_size=299,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        # FF++ classification/detect_from_video.py: dlib's first face (faces[0]), get_boundingbox scale 1.3.
        crop=CropSpec(size=299, scale=1.3, square=True, faces="first", interpolation="pil_bilinear"),
        finder="dlib",
        protocol="FF++ labels frames only; the video rule (mean of frame P(fake)) is ours. FF++'s training crops "
                 "came from the Face2Face tracker, its test script from dlib, which dfbench runs.",
        output="softmax over 2 logits, index 1 = fake",
        formats=("FF++ release all_{raw,c23,c40}.p (pickled TransferModel; needs --trust-checkpoint, converted once)",
                 "state dict, FF++ keys (model.*, last_linear[.1].*) or timm keys (fc.*)"),
        verified="key mapping checked against pretrainedmodels' Cadene Xception (tests/test_parity.py)",
    )

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model("legacy_xception", pretrained=False, num_classes=2)

    def pickle_aliases(self) -> dict[str, type]:
        import torch

        # Stand-ins: an unpickled module only needs nn.Module's state machinery to give its state dict.
        return {name: type(name.rsplit(".", 1)[1], (torch.nn.Module,), {}) for name in FFPP_PICKLED_CLASSES}

    def convert_state_dict(self, checkpoint: Any) -> dict[str, torch.Tensor]:
        return ffpp_to_timm(super().convert_state_dict(checkpoint))
