"""RetinaFace (ResNet-50), SBI's face finder, run from a weights file the user gives (nothing is downloaded).

SBI (``src/inference/inference_dataset.py``) finds faces with ``retinaface.pre_trained_models.get_model(
"resnet50_2020-07-20", max_size=2048)`` from ternaus/retinaface and ``predict_jsons`` at its defaults. That
package's inference, as read at ternaus/retinaface ``retinaface/predict_single.py`` (``Model.predict_jsons``),
``network.py``, ``net.py``, ``prior_box.py`` and ``box_utils.py``, is written here from that description:

- the RGB frame is resized so that its longer side is ``max_size`` (albumentations ``LongestMaxSize``: Python
  rounding of each side, bilinear, enlarging too) and normalised with ImageNet statistics on 0-255 values;
- the network: torchvision ResNet-50 (layers 2-4 out), an FPN to 256 channels, an SSH context module per level,
  and per level two anchors' class, box and 5-landmark heads;
- priors of sizes (16, 32), (64, 128), (256, 512) at strides 8, 16, 32 over the resized image; boxes decoded
  with variances (0.1, 0.2); faces with softmax score > 0.7 kept, then torchvision NMS at IoU 0.4;
- boxes scaled back by ``original height / resized height``.

The weights file is ``retinaface_resnet50_2020-07-20.pth`` from the ternaus/retinaface release 0.01 (inside its
zip), or any state dict of the same network (biubug6/Pytorch_Retinaface's ``Resnet50_Final.pth``: the same key
names, with a ``module.`` prefix that is stripped). Point ``DFBENCH_RETINAFACE_WEIGHTS`` at it.
"""

from __future__ import annotations

import hashlib
import os
from itertools import product
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfbench.errors import ConfigError
from dfbench.faces.face import Face

if TYPE_CHECKING:
    import torch

WEIGHTS_ENV = "DFBENCH_RETINAFACE_WEIGHTS"
MIN_SIZES = ((16, 32), (64, 128), (256, 512))     # prior sizes per level (predict_single.py)
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
IMAGENET_MEAN = (0.485, 0.456, 0.406)              # albumentations Normalize defaults, max_pixel_value 255
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_network() -> Any:
    """The RetinaFace ResNet-50 network, randomly initialised, with the key layout of the released files."""
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torchvision.models import _utils, resnet50

    def conv_bn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, nn.LeakyReLU(0.0, inplace=True)) if relu else nn.Sequential(*layers)

    class SSH(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv3X3 = conv_bn(channels, channels // 2, 3, relu=False)
            self.conv5X5_1 = conv_bn(channels, channels // 4, 3, relu=True)
            self.conv5X5_2 = conv_bn(channels // 4, channels // 4, 3, relu=False)
            self.conv7X7_2 = conv_bn(channels // 4, channels // 4, 3, relu=True)
            self.conv7x7_3 = conv_bn(channels // 4, channels // 4, 3, relu=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = self.conv5X5_1(x)
            return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(first),
                                     self.conv7x7_3(self.conv7X7_2(first))], dim=1))

    class FPN(nn.Module):
        def __init__(self, widths: list[int], channels: int) -> None:
            super().__init__()
            self.output1, self.output2, self.output3 = (conv_bn(w, channels, 1, relu=True) for w in widths)
            self.merge1 = conv_bn(channels, channels, 3, relu=True)
            self.merge2 = conv_bn(channels, channels, 3, relu=True)

        def forward(self, x: dict) -> list[torch.Tensor]:
            c2, c3, c4 = x.values()
            out1, out2, out3 = self.output1(c2), self.output2(c3), self.output3(c4)
            out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[2:], mode="nearest"))
            out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[2:], mode="nearest"))
            return [out1, out2, out3]

    class Head(nn.Module):
        def __init__(self, channels: int, values: int) -> None:
            super().__init__()
            self.values = values
            self.conv1x1 = nn.Conv2d(channels, 2 * values, 1)       # two anchors per position

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
            return out.view(out.shape[0], -1, self.values)

    class RetinaFace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _utils.IntermediateLayerGetter(resnet50(), {"layer2": 1, "layer3": 2, "layer4": 3})
            self.fpn = FPN([512, 1024, 2048], 256)
            self.ssh1, self.ssh2, self.ssh3 = SSH(256), SSH(256), SSH(256)
            self.ClassHead = nn.ModuleList(Head(256, 2) for _ in range(3))
            self.BboxHead = nn.ModuleList(Head(256, 4) for _ in range(3))
            self.LandmarkHead = nn.ModuleList(Head(256, 10) for _ in range(3))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), self.fpn(self.body(x)),
                                                         strict=True)]
            return tuple(torch.cat([head(f) for head, f in zip(heads, features, strict=True)], dim=1)
                         for heads in (self.BboxHead, self.ClassHead, self.LandmarkHead))  # type: ignore[return-value]

    return RetinaFace().eval()


def priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h), as fractions of the image, in the network's output order."""
    rows = []
    for sizes, step in zip(MIN_SIZES, STEPS, strict=True):
        for i, j in product(range(ceil(height / step)), range(ceil(width / step))):
            for size in sizes:
                rows.append(((j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height))
    return np.asarray(rows, dtype=np.float32)


def decode_points(landmarks: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Five-point regressions against priors -> (x, y) x 5 as fractions of the image (``decode_landm``)."""
    return np.concatenate([prior[:, :2] + landmarks[:, 2 * k:2 * k + 2] * VARIANCES[0] * prior[:, 2:]
                           for k in range(5)], axis=1)


def decode(loc: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Box regressions against priors -> corners (x1, y1, x2, y2) as fractions of the image."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


class RetinaFaceFinder:
    """RetinaFace ResNet-50 (SBI's finder) from a local weights file (``$DFBENCH_RETINAFACE_WEIGHTS``).

    Args:
        weights: the state dict file; None reads ``$DFBENCH_RETINAFACE_WEIGHTS``.
        max_size: the longer side the frame is resized to (SBI: 2048).
        confidence, nms: the score threshold and the NMS IoU (predict_jsons defaults 0.7, 0.4).
        device: where the network runs; frames of one size are searched together there (a run puts it on the
            run's device, and its workers then only decode).
    """

    name = "retinaface"

    batch_frames = 4        # ours: frames per network call on a device (a 2048 px ResNet-50 is large)

    def __init__(self, weights: str | Path | None = None, max_size: int = 2048, confidence: float = 0.7,
                 nms: float = 0.4, device: str = "cpu") -> None:
        path = weights or os.environ.get(WEIGHTS_ENV)
        if not path or not Path(path).is_file():
            where = f"{str(path)!r} is not a file" if path else f"${WEIGHTS_ENV} is not set"
            raise ConfigError(f"The retinaface finder needs its weights file and {where}: set {WEIGHTS_ENV} to "
                              "retinaface_resnet50_2020-07-20.pth (ternaus/retinaface release 0.01, in its zip); "
                              "dfbench downloads nothing.")
        self.weights = Path(path)
        self.sha256 = hashlib.sha256(self.weights.read_bytes()).hexdigest()
        self.max_size, self.confidence, self.nms = max_size, confidence, nms
        self.device = device
        self._model: Any = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_model": None}

    def _network(self) -> Any:
        if self._model is None:
            import torch

            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            state = {k.removeprefix("module."): v for k, v in state.items()}
            model = build_network()
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise ConfigError(f"{self.weights} is not a RetinaFace ResNet-50 state dict "
                                  f"({str(exc).splitlines()[0]}).") from None
            self._model = model
        return self._model

    def where(self) -> str:
        """The device the network runs on in this process (`resample.usable_device`)."""
        from dfbench.faces.resample import usable_device

        return usable_device(self.device)

    def find(self, frame: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB frame (the `FaceFinder` protocol)."""
        return self.find_many([frame])[0]

    def find_many(self, frames: list[np.ndarray] | torch.Tensor) -> list[list[Face]]:
        """Faces in each frame: uint8 RGB arrays, or one B x H x W x 3 uint8 tensor of frames of one size (on
        the device). Frames are resized on the device with OpenCV's linear arithmetic (`resample.crop_uint8`),
        normalised in float64 as the CPU path was, and go through the network together."""
        import torch

        if not isinstance(frames, torch.Tensor):
            found: list[list[Face]] = []
            for frame in frames:
                found += self.find_many(torch.from_numpy(np.ascontiguousarray(frame))[None].to(self.where()))
            return found
        from dfbench.faces.resample import crop_uint8, exact_float32

        height, width = frames.shape[1], frames.shape[2]
        scale = self.max_size / max(height, width)
        size = (round(width * scale), round(height * scale))
        resized = frames if scale == 1.0 else crop_uint8(frames, range(len(frames)), [(0, 0, width, height)] *
                                                           len(frames), (size[1], size[0]), "linear")
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64, device=frames.device) * 255
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64, device=frames.device) * 255
        image = ((resized.double() - mean) / std).float().permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode(), exact_float32():
            network = self._network()
            loc, conf, landmarks = network.to(frames.device)(image)
            scores = torch.softmax(conf, dim=-1)[..., 1].cpu().numpy()
        loc_all, points_all = loc.cpu().numpy(), landmarks.cpu().numpy()
        prior = priors(size[1], size[0])
        return [self._faces(loc_all[b], points_all[b], scores[b], prior, size, height, width)
                for b in range(len(frames))]

    def _faces(self, loc: np.ndarray, landmarks: np.ndarray, scores: np.ndarray, prior: np.ndarray,
               size: tuple[int, int], height: int, width: int) -> list[Face]:
        import torch
        from torchvision.ops import nms

        boxes = (decode(loc, prior) * np.tile(size, 2)).astype(np.float32)
        points = (decode_points(landmarks, prior) * np.tile(size, 5)).astype(np.float32)
        kept = scores > self.confidence
        boxes, scores, points = boxes[kept], scores[kept], points[kept]
        order = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms).numpy()
        boxes, points = boxes[order] * (height / size[1]), points[order] * (height / size[1])
        faces = []
        for (x1, y1, x2, y2), score, five in zip(boxes.tolist(), scores[order].tolist(), points.tolist(),
                                                 strict=True):
            # predict_jsons skips a box whose clipped corners cross; the box it reports is the unclipped one
            left = min(max(x1, 0), width - 1)
            top = min(max(y1, 0), height - 1)
            if left >= min(max(x2, left + 1), width - 1) or top >= min(max(y2, top + 1), height - 1):
                continue
            keypoints = tuple((round(five[2 * k], 2), round(five[2 * k + 1], 2)) for k in range(5))
            faces.append(Face(round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2), float(score),
                              keypoints=keypoints))
        return faces

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "weights": self.weights.name, "weights_sha256": self.sha256,
                "max_size": self.max_size, "confidence": self.confidence, "nms": self.nms}
