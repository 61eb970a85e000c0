"""Resizing on the device: boxes cut out of a batch of frames and resampled as two matrix products.

Every resampler the crop specs name (`crop._INTERPOLATIONS`) is separable: one output row is a weighted sum of
input rows, one output column a weighted sum of input columns. `axis_weights` writes those weights down as a
matrix, following the arithmetic of the library the CPU path calls (OpenCV's ``cv2.resize`` for ``linear``,
``area``, ``cubic`` and ``nearest``; Pillow's ``Image.resize`` for ``pil_bilinear`` and ``pil_nearest``), and
`resample_boxes` applies them to many boxes of many frames at once: ``out = Wy @ region @ Wx^T``, in float32
on whichever device the frames are. The CPU libraries round in fixed point (OpenCV's linear resize keeps 11
fractional bits; Pillow rounds to 8 bits between its horizontal and vertical passes); the matrices do not, so
the two paths differ by at most one grey level per pixel (`tests/test_device_faces.py` measures it).

Boxes may reach outside their frame: what lies outside counts as black (MTCNN's zero padding).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dfbench.errors import ConfigError

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]          # x1, y1, x2, y2 in frame pixels, end exclusive
_CUBIC_A = -0.75                         # OpenCV's bicubic coefficient (imgproc/src/resize.cpp, interpolateCubic)
_CHUNK_ELEMENTS = 1 << 25                # ours: regions gathered per chunk, in floats (128 MB)


@functools.lru_cache(maxsize=4096)
def axis_weights(n_in: int, n_out: int, mode: str, shrink: bool = True) -> np.ndarray:
    """The n_out x n_in matrix that resamples one axis of length `n_in` to `n_out`, as the CPU library does.

    Args:
        mode: a crop interpolation (``linear``, ``area``, ``cubic``, ``nearest``, ``pil_bilinear``,
            ``pil_nearest``).
        shrink: for ``area`` only: whether OpenCV takes its area-averaging branch, which it does only when
            neither axis grows (otherwise both axes take its interpolating branch, even one that shrinks).
    """
    if n_in < 1 or n_out < 1:
        raise ConfigError(f"Cannot resample {n_in} pixels to {n_out}.")
    if mode in ("linear", "cubic") or (mode == "area" and not shrink):
        return _cv2_interpolating(n_in, n_out, mode)
    table = {"area": _cv2_area, "nearest": _cv2_nearest, "pil_bilinear": _pil_bilinear, "pil_nearest": _pil_nearest}
    if mode not in table:
        raise ConfigError(f"Unknown interpolation {mode!r}; allowed: linear, area, cubic, nearest, pil_bilinear, "
                          "pil_nearest.")
    weights = table[mode](n_in, n_out)
    weights.setflags(write=False)
    return weights


def _cv2_interpolating(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """``cv2.resize`` with INTER_LINEAR, INTER_CUBIC, or INTER_AREA when an axis grows: source position
    ``(d + 0.5) * scale - 0.5`` (INTER_AREA: its own fraction), taps clamped to the edge (replicated border)."""
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in))
    taps = 4 if mode == "cubic" else 2
    for d in range(n_out):
        if mode == "area":
            sx = math.floor(d * scale)
            fx = (d + 1) - (sx + 1) / scale
            fx = 0.0 if fx <= 0 else fx - math.floor(fx)
        else:
            position = (d + 0.5) * scale - 0.5
            sx = math.floor(position)
            fx = position - sx
        if mode != "cubic":
            if sx < 0:
                sx, fx = 0, 0.0
            if sx >= n_in - 1:
                sx, fx = n_in - 1, 0.0
            coefficients = [1.0 - fx, fx]
        else:
            coefficients = _cubic(fx)
        for k in range(taps):
            weights[d, min(max(sx + k - taps // 2 + 1, 0), n_in - 1)] += coefficients[k]
    return weights


def _cubic(x: float) -> list[float]:
    a = _CUBIC_A
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return [c0, c1, c2, 1.0 - c0 - c1 - c2]


def _cv2_area(n_in: int, n_out: int) -> np.ndarray:
    """INTER_AREA shrinking: each output pixel averages the input span it covers, partial pixels by their share
    (OpenCV's computeResizeAreaTab)."""
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in))
    for d in range(n_out):
        start, end = d * scale, d * scale + scale
        first, last = math.ceil(start), min(math.floor(end), n_in - 1)
        first = min(first, last)
        width = min(scale, n_in - start)
        if first - start > 1e-3:
            weights[d, first - 1] = (first - start) / width
        weights[d, first:last] = 1.0 / width
        if end - last > 1e-3:
            weights[d, last] = min(min(end - last, 1.0), width) / width
    return weights


def _cv2_nearest(n_in: int, n_out: int) -> np.ndarray:
    """INTER_NEAREST: source index ``floor(d * scale)`` (OpenCV's, not centred)."""
    weights = np.zeros((n_out, n_in))
    for d in range(n_out):
        weights[d, min(math.floor(d * n_in / n_out), n_in - 1)] = 1.0
    return weights


def _pil_bilinear(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's BILINEAR: a triangle filter widened by the shrink factor (antialiased), centred on
    ``(d + 0.5) * scale``, normalised over the taps inside the image (Resample.c, precompute_coeffs)."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = filter_scale
    weights = np.zeros((n_out, n_in))
    for d in range(n_out):
        centre = (d + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), n_in)
        x = (np.arange(low, high) - centre + 0.5) * (1.0 / filter_scale)      # Pillow multiplies by 1/scale
        taps = np.clip(1.0 - np.abs(x), 0.0, None)
        if taps.sum() > 0:
            weights[d, low:high] = taps / taps.sum()
    return weights


def _pil_nearest(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's NEAREST: an affine transform whose source position starts at ``scale / 2`` and grows by
    ``scale`` per pixel, added up in doubles as Pillow does (Geometry.c: its sums fall just short of an exact
    boundary where a product would not), then truncated."""
    weights = np.zeros((n_out, n_in))
    scale, position = n_in / n_out, 0.5 * (n_in / n_out)
    for d in range(n_out):
        weights[d, min(int(position), n_in - 1)] = 1.0
        position += scale
    return weights


def resample_boxes(frames: torch.Tensor, which: Sequence[int], boxes: Sequence[Box], size: tuple[int, int],
                   mode: str) -> torch.Tensor:
    """Boxes of a batch of frames, each resampled to `size` (rows, columns): float32, n x rows x cols x C.

    Args:
        frames: B x H x W x C (uint8 or float), on any device; one frame per `which` entry's index.
        which: the frame of each box.
        boxes: (x1, y1, x2, y2), end exclusive; a box may reach outside the frame (black there).
        size: the output rows and columns.
        mode: a crop interpolation (`axis_weights`).
    """
    import torch

    n = len(boxes)
    rows, cols = size
    out = torch.empty((n, rows, cols, frames.shape[3]), dtype=torch.float32, device=frames.device)
    if n == 0:
        return out
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    order = sorted(range(n), key=areas.__getitem__)       # similar sizes share a chunk: little padding
    start = 0
    while start < n:
        end = start + 1
        while end < n and areas[order[end]] * (end + 1 - start) * frames.shape[3] <= _CHUNK_ELEMENTS:
            end += 1
        chunk = order[start:end]
        out[chunk] = _resample_chunk(frames, [which[i] for i in chunk], [boxes[i] for i in chunk], size, mode)
        start = end
    return out


def _resample_chunk(frames: torch.Tensor, which: list[int], boxes: list[Box], size: tuple[int, int],
                    mode: str) -> torch.Tensor:
    import torch

    height, width = frames.shape[1], frames.shape[2]
    corners = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    sides = np.stack([corners[:, 3] - corners[:, 1], corners[:, 2] - corners[:, 0]], axis=1)     # h, w
    h_max, w_max = int(sides[:, 0].max()), int(sides[:, 1].max())
    wy = np.zeros((len(boxes), size[0], h_max), np.float32)
    wx = np.zeros((len(boxes), size[1], w_max), np.float32)
    shapes, members = np.unique(sides, axis=0, return_inverse=True)
    for k, (h, w) in enumerate(shapes.tolist()):          # one weight pair per box shape (candidates repeat them)
        shrink = h >= size[0] and w >= size[1]
        chosen = members.reshape(-1) == k
        wy[chosen, :, :h] = axis_weights(h, size[0], mode, shrink)
        wx[chosen, :, :w] = axis_weights(w, size[1], mode, shrink)
    ys = corners[:, 1:2] + np.arange(h_max)
    xs = corners[:, 0:1] + np.arange(w_max)
    wy *= ((ys >= 0) & (ys < height))[:, None, :]                  # outside the frame: black
    wx *= ((xs >= 0) & (xs < width))[:, None, :]
    row_index, col_index = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    device = frames.device
    frame_index = torch.as_tensor(which, device=device)[:, None, None]
    regions = frames[frame_index, torch.as_tensor(row_index, device=device)[:, :, None],
                     torch.as_tensor(col_index, device=device)[:, None, :]].float()     # n x h x w x C
    by_rows = torch.einsum("nsh,nhwc->nswc", torch.as_tensor(wy, device=device), regions)
    return torch.einsum("ntw,nswc->nstc", torch.as_tensor(wx, device=device), by_rows)


def usable_device(device: str) -> str:
    """`device` where this process can use it; a CUDA device asked for in a process without one (a Ray gather task
    on a CPU node, a worker) is the CPU."""
    import torch

    return device if not device.startswith("cuda") or torch.cuda.is_available() else "cpu"


def to_uint8(resampled: torch.Tensor) -> torch.Tensor:
    """Float pixels rounded to the nearest grey level and kept in 0-255, as uint8."""
    import torch

    return resampled.round_().clamp_(0, 255).to(torch.uint8)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """No TF32 inside: on CUDA, float32 matrix products and convolutions may otherwise run with 10-bit
    mantissas, which moves resampled pixels and finder scores past the CPU path's."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def area_shrink_uint8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Whole uint8 frames (B x H x W x C) shrunk to `size` (rows, columns) exactly as ``cv2.resize`` with
    INTER_AREA shrinks uint8 images, to the grey level: float32 sums taken in OpenCV's order (each output pixel's
    source columns one after another, then its source rows), rounded half to even; for whole-number factors,
    integer block sums (a 2 x 2 block rounded half up, as OpenCV's vector path does). Returns float32 holding
    whole grey levels. This is what MTCNN's pyramid sees, where a grey level's difference moves boxes."""
    import torch

    height, width = frames.shape[1], frames.shape[2]
    rows, cols = size
    if rows > height or cols > width:
        raise ConfigError(f"area_shrink_uint8 shrinks: {height} x {width} cannot become {rows} x {cols}.")
    if height % rows == 0 and width % cols == 0:
        ky, kx = height // rows, width // cols
        sums = frames.to(torch.int32).reshape(len(frames), rows, ky, cols, kx, -1).sum((2, 4))
        if ky == kx == 2:
            return torch.div(sums + 2, 4, rounding_mode="floor").float()
        return (sums.float() * np.float32(1.0 / (ky * kx))).round_()
    pixels = frames.float()
    by_cols = _area_pass(pixels, 2, width, cols)
    return _area_pass(by_cols, 1, height, rows).round_().clamp_(0, 255)


def _area_pass(pixels: torch.Tensor, axis: int, n_in: int, n_out: int) -> torch.Tensor:
    """One axis of `area_shrink_uint8`: the taps added one after another in float32, as OpenCV adds them."""
    import torch

    index, weight = _area_taps(n_in, n_out)
    shape = [1] * pixels.dim()
    shape[axis] = n_out
    out = None
    for j in range(index.shape[1]):
        tap = pixels.index_select(axis, torch.as_tensor(index[:, j], device=pixels.device))
        term = tap.mul_(torch.as_tensor(weight[:, j], device=pixels.device).reshape(shape))
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


@functools.lru_cache(maxsize=256)
def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's area table for one axis (computeResizeAreaTab): each output's source indices in order and their
    float32 weights, padded with zero weights. The scale is ``1 / (n_out / n_in)``, computed as OpenCV does."""
    scale = 1.0 / (n_out / n_in)
    taps: list[list[tuple[int, float]]] = []
    for d in range(n_out):
        start = d * scale
        end = start + scale
        last = min(math.floor(end), n_in - 1)
        first = min(math.ceil(start), last)
        width = min(scale, n_in - start)
        mine = [(first - 1, (first - start) / width)] if first - start > 1e-3 else []
        mine += [(s, 1.0 / width) for s in range(first, last)]
        if end - last > 1e-3:
            mine.append((last, min(min(end - last, 1.0), width) / width))
        taps.append(mine)
    index = np.zeros((n_out, max(len(t) for t in taps)), np.int64)
    weight = np.zeros(index.shape, np.float32)
    for d, mine in enumerate(taps):
        for j, (s, w) in enumerate(mine):
            index[d, j], weight[d, j] = s, w
    return index, weight


def crop_uint8(frames: torch.Tensor, which: Sequence[int], boxes: Sequence[Box], size: int | tuple[int, int],
               mode: str) -> torch.Tensor:
    """uint8 crops (n x rows x cols x C; `size` is both or (rows, cols)) of boxes inside uint8 frames, resized as
    the CPU path resizes them (`crop.resize_square`, ``cv2.resize``, Pillow's ``Image.resize``).

    ``linear`` and ``pil_bilinear`` (the cards' resamplers with fractional weights) are computed in the libraries'
    own fixed point and give the CPU path's pixels exactly: OpenCV's 11-bit coefficients with its vector path's
    rounding, Pillow's 22-bit coefficients with a rounded 8-bit image between its two passes. The nearest
    resamplers are exact as they are; ``area`` and ``cubic`` use the float matrices (at most one grey level off)."""
    import torch

    rows, cols = (size, size) if isinstance(size, int) else size
    if mode not in ("linear", "pil_bilinear"):
        return to_uint8(resample_boxes(frames, which, boxes, (rows, cols), mode))
    if mode == "pil_bilinear" and rows != cols:
        raise ConfigError(f"Pillow-exact device crops are square; got a {rows} x {cols} output.")
    out = torch.empty((len(boxes), rows, cols, frames.shape[3]), dtype=torch.uint8, device=frames.device)
    # Pillow 13 resamples along rows first, except for a box taller than the output and narrow enough (2 w < h +
    # size; found by comparing both orders with Pillow over a grid of sizes, `tests/test_device_faces.py` keeps
    # checking it). The columns-first order runs here as the rows-first order on the transposed frame.
    columns_first = [mode == "pil_bilinear" and b[3] - b[1] > rows and 2 * (b[2] - b[0]) < b[3] - b[1] + rows
                     for b in boxes]
    for flipped in (False, True):
        members = [i for i in range(len(boxes)) if columns_first[i] == flipped]
        source = frames.transpose(1, 2) if flipped else frames
        start = 0
        while start < len(members):          # chunks of about _CHUNK_ELEMENTS gathered values
            end, tally = start, 0
            while end < len(members) and (end == start or tally <= _CHUNK_ELEMENTS):
                tally += (boxes[members[end]][3] - boxes[members[end]][1]) * cols * 8 * frames.shape[3]
                end += 1
            chunk = members[start:end]
            part = [(b[1], b[0], b[3], b[2]) if flipped else b for b in (boxes[i] for i in chunk)]
            cut = _fixed_point(source, [which[i] for i in chunk], part, (rows, cols), mode)
            out[torch.as_tensor(chunk, device=frames.device)] = cut.transpose(1, 2) if flipped else cut
            start = end
    return out


def _fixed_point(frames: torch.Tensor, which: list[int], boxes: list[Box], size: tuple[int, int],
                 mode: str) -> torch.Tensor:
    import torch

    taps = _cv2_linear_taps if mode == "linear" else _pil_bilinear_taps
    x_taps = [taps(b[2] - b[0], size[1], False) for b in boxes]
    y_taps = [taps(b[3] - b[1], size[0], True) for b in boxes]
    device = frames.device

    def stacked(parts: list[tuple[np.ndarray, np.ndarray]], offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        k = max(p[0].shape[1] for p in parts)
        index = np.zeros((len(parts), parts[0][0].shape[0], k), np.int64)
        weight = np.zeros(index.shape, np.int64)
        for n, ((i, w), offset) in enumerate(zip(parts, offsets, strict=True)):
            index[n, :, :i.shape[1]], weight[n, :, :w.shape[1]] = i + offset, w
        return torch.as_tensor(index, device=device), torch.as_tensor(weight, device=device)

    xi, xw = stacked(x_taps, [b[0] for b in boxes])
    yi, yw = stacked(y_taps, [0] * len(boxes))
    h_max = max(b[3] - b[1] for b in boxes)
    rows = torch.as_tensor(np.stack([np.minimum(np.arange(b[1], b[1] + h_max), b[3] - 1) for b in boxes]),
                           device=device)
    frame = torch.as_tensor(which, device=device)
    picked = frames[frame[:, None, None, None], rows[:, :, None, None], xi[:, None, :, :]].to(torch.int64)
    across = (picked * xw[:, None, :, :, None]).sum(3)                       # n x rows x size x C
    if mode == "pil_bilinear":
        across = ((across + (1 << 21)) >> 22).clamp_(0, 255)                 # Pillow's 8-bit image between passes
    lines = across[torch.arange(len(boxes), device=device)[:, None, None], yi]   # n x size x taps x size x C
    weights = yw[:, :, :, None, None]
    if mode == "pil_bilinear":
        total = ((lines * weights).sum(2) + (1 << 21)) >> 22
    else:       # OpenCV's VResizeLinearVec_32s8u: each row's sum shifted by 4, multiplied, high 16 bits kept
        total = (((lines >> 4) * weights) >> 16).sum(2)
        total = (total + 2) >> 2
    return total.clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=4096)
def _cv2_linear_taps(n_in: int, n_out: int, vertical: bool) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps for one axis (relative source indices, 11-bit weights): the position
    ``(d + 0.5) * scale - 0.5`` in float32; along x it is clamped to the edge pixel, along y it is not (the row
    index is, with the weight kept), as ``cv::resize`` does."""
    scale = 1.0 / (n_out / n_in)
    index = np.zeros((n_out, 2), np.int64)
    weight = np.zeros((n_out, 2), np.int64)
    for d in range(n_out):
        position = np.float32((d + 0.5) * scale - 0.5)
        sx = math.floor(position)
        fx = np.float32(position - sx)
        if not vertical and sx < 0:
            sx, fx = 0, np.float32(0)
        if not vertical and sx >= n_in - 1:
            sx, fx = n_in - 1, np.float32(0)
        index[d] = min(max(sx, 0), n_in - 1), min(max(sx + 1, 0), n_in - 1)
        weight[d] = round(float(np.float32(1 - fx)) * 2048), round(float(fx) * 2048)
    return index, weight


@functools.lru_cache(maxsize=4096)
def _pil_bilinear_taps(n_in: int, n_out: int, vertical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's BILINEAR taps for one axis: `_pil_bilinear`'s normalised weights in 22-bit fixed point
    (normalize_coeffs_8bpc: ``int(0.5 + w * 2**22)``)."""
    del vertical         # Pillow treats both axes alike
    weights = _pil_bilinear(n_in, n_out)
    k = max(1, int((weights > 0).sum(1).max()))
    index = np.zeros((n_out, k), np.int64)
    fixed = np.zeros((n_out, k), np.int64)
    for d in range(n_out):
        taps = np.nonzero(weights[d] > 0)[0]
        index[d, :len(taps)] = taps
        fixed[d, :len(taps)] = np.floor(0.5 + weights[d, taps] * (1 << 22)).astype(np.int64)
    return index, fixed
