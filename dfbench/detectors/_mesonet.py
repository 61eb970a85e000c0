"""MesoNet (Afchar, Nozick, Yamagishi, Echizen, WIFS 2018; seeds/mesonet-style-review.txt) as PyTorch modules
that read the authors' Keras weight files (``weights/Meso4_DF.h5`` ...) directly.

Layer facts from the authors' ``classifiers.py``: convolutions with bias and 'same' padding, ReLU *before*
BatchNormalization (Keras epsilon 1e-3), max-pooling 2, 2, 2, 4, flatten (Keras flattens H, W, C), dropout,
dense 16, LeakyReLU(0.1), dropout, dense 1 with a sigmoid. MesoInception4 starts with two inception layers
(1, 4, 4, 2) and (2, 4, 4, 2): a 1x1 branch and three 1x1-then-3x3 branches with dilation 1, 2 and 3,
concatenated in that order. The sigmoid is P(real) (Keras sorted the class folders ``df``, ``real``);
P(fake) = 1 - output.

Protocol as the authors' ``pipeline.py``: faces from the face_recognition models, cut as the landmark-aligned
square (`faces.crop.aligned_crop`), and a video scored by its share of frames judged fake (``vote``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.errors import CheckpointError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

KERAS_BN_EPS = 1e-3
INCEPTION_WIDTHS = ((1, 4, 4, 2), (2, 4, 4, 2))


def build_mesonet(inception: bool):
    """Meso4 (`inception` False) or MesoInception4 with random weights; output = sigmoid P(real), shape (N, 1)."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation)

    class Inception(nn.Module):
        def __init__(self, cin: int, widths: tuple[int, int, int, int]) -> None:
            super().__init__()
            a, b, c, d = widths
            self.branch1 = conv(cin, a, 1)
            self.branch2 = nn.ModuleList([conv(cin, b, 1), conv(b, b, 3)])
            self.branch3 = nn.ModuleList([conv(cin, c, 1), conv(c, c, 3, dilation=2)])
            self.branch4 = nn.ModuleList([conv(cin, d, 1), conv(d, d, 3, dilation=3)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = [torch.relu(self.branch1(x))]
            for first, second in (self.branch2, self.branch3, self.branch4):
                out.append(torch.relu(second(torch.relu(first(x)))))
            return torch.cat(out, dim=1)

    class MesoNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block1: nn.Module
            self.block2: nn.Module
            if inception:
                self.block1 = Inception(3, INCEPTION_WIDTHS[0])
                self.block2 = Inception(sum(INCEPTION_WIDTHS[0]), INCEPTION_WIDTHS[1])
                channels = (sum(INCEPTION_WIDTHS[0]), sum(INCEPTION_WIDTHS[1]), 16, 16)
            else:
                self.block1, self.block2 = conv(3, 8, 3), conv(8, 8, 5)
                channels = (8, 8, 16, 16)
            self.block3 = conv(channels[1], 16, 5)
            self.block4 = conv(16, 16, 5)
            self.bns = nn.ModuleList(nn.BatchNorm2d(c, eps=KERAS_BN_EPS) for c in channels)
            self.dense1 = nn.Linear(8 * 8 * 16, 16)
            self.dense2 = nn.Linear(16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            blocks = (self.block1, self.block2, self.block3, self.block4)
            for i, (block, bn) in enumerate(zip(blocks, self.bns, strict=True)):
                x = block(x)
                x = bn(x if inception and i < 2 else torch.relu(x))  # inception layers apply their own ReLUs
                x = nn.functional.max_pool2d(x, 4 if i == 3 else 2)
            x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens in H, W, C order
            x = nn.functional.leaky_relu(self.dense1(x), 0.1)
            return torch.sigmoid(self.dense2(x))

    return MesoNet()


def _numbered(names: list[str], kind: str) -> list[str]:
    found = [n for n in names if re.fullmatch(f"{kind}_\\d+", n)]
    return sorted(found, key=lambda n: int(n.rsplit("_", 1)[1]))


def read_keras_h5(path: Path, inception: bool) -> dict[str, Any]:
    """A torch state dict for `build_mesonet(inception)` from a Keras 2 weights-only HDF5 file.

    Keras numbers layers in creation order (``conv2d_5`` ...), so layers are matched by their sorted index
    within each kind: conv kernels (kh, kw, in, out) become (out, in, kh, kw), dense kernels are transposed.
    """
    import h5py
    import torch

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path.name} is not a readable HDF5 file: {exc}") from None
    with h5:
        names = list(h5.keys())
        convs, bns, denses = (_numbered(names, k) for k in ("conv2d", "batch_normalization", "dense"))
        expected = (16 if inception else 4, 4, 2)
        if (len(convs), len(bns), len(denses)) != expected:
            raise CheckpointError(f"{path.name} holds {len(convs)} conv, {len(bns)} batch-norm and {len(denses)} "
                                  f"dense layers; {'MesoInception4' if inception else 'Meso4'} has "
                                  f"{expected[0]}, {expected[1]} and {expected[2]}.")

        def weights(layer: str) -> dict[str, np.ndarray]:
            group = h5[layer][layer] if layer in h5[layer] else h5[layer]
            return {k.split(":")[0]: np.asarray(v) for k, v in group.items()}

        state: dict[str, Any] = {}
        for target, layer in zip(_conv_targets(inception), convs, strict=True):
            w = weights(layer)
            state[f"{target}.weight"] = np.transpose(w["kernel"], (3, 2, 0, 1))
            state[f"{target}.bias"] = w["bias"]
        for i, layer in enumerate(bns):
            w = weights(layer)
            state.update({f"bns.{i}.weight": w["gamma"], f"bns.{i}.bias": w["beta"],
                          f"bns.{i}.running_mean": w["moving_mean"], f"bns.{i}.running_var": w["moving_variance"]})
            state[f"bns.{i}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        for target, layer in zip(("dense1", "dense2"), denses, strict=True):
            w = weights(layer)
            state[f"{target}.weight"] = w["kernel"].T
            state[f"{target}.bias"] = w["bias"]
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def _conv_targets(inception: bool) -> list[str]:
    if not inception:
        return ["block1", "block2", "block3", "block4"]
    targets = []
    for block in ("block1", "block2"):  # code order: a, b-1x1, b-3x3, c-1x1, c-3x3 d2, d-1x1, d-3x3 d3
        targets += [f"{block}.branch1", f"{block}.branch2.0", f"{block}.branch2.1", f"{block}.branch3.0",
                    f"{block}.branch3.1", f"{block}.branch4.0", f"{block}.branch4.1"]
    return targets + ["block3", "block4"]


def mesonet_card(key: str, inception: bool) -> DetectorCard:
    """The card of the Meso4 or MesoInception4 adapter."""
    name = "MesoInception4" if inception else "Meso4"
    files = "MesoInception_DF.h5, MesoInception_F2F.h5" if inception else "Meso4_DF.h5, Meso4_F2F.h5"
    return DetectorCard(
        key=key,
        title=f"{name} (MesoNet), PyTorch port reading the authors' Keras weights",
        reference="Afchar et al., MesoNet: a Compact Facial Video Forgery Detection Network, WIFS 2018; "
                  "DariusAf/MesoNet classifiers.py",
        input_size=256,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        # MesoNet pipeline.py get_aligned_face: l_factor 1.3 on the landmark-aligned square (faces.crop).
        crop=CropSpec(size=256, scale=1.3, square=True, interpolation="pil_nearest", aligned=True),
        finder="face_recognition",
        aggregation="vote",       # pipeline.py compute_accuracy: mean(p > 0.5), the share of frames judged real
        protocol="Authors' finder searched around the previous frame's face (a track); dfbench's searches each "
                 "frame. Their video script resized with scipy zoom; dfbench resizes as example.py (nearest). "
                 "Video rule: share of frames with P(fake) >= 0.5 (= 1 - the authors' share with P(real) > 0.5).",
        output="1 - sigmoid (the network outputs P(real))",
        formats=(f"Keras weights-only HDF5 ({files})",
                 "torch state dict of this port"),
        verified="matches Keras (TensorFlow) outputs to 1e-4 on the authors' four test images "
                 "(tests/test_mesonet.py)",
    )


class MesoNetAdapter(DetectorAdapter):
    """Shared loading and scoring of the two MesoNet variants."""

    inception = False

    def build(self) -> torch.nn.Module:
        return build_mesonet(self.inception)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        return 1.0 - output[:, 0].float()

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        from dfbench.detectors.checkpoints import fit_state_dict

        if len(paths) == 1 and paths[0].suffix.lower() in (".h5", ".hdf5"):
            model = self.build()
            fit_state_dict(model, read_keras_h5(paths[0], self.inception), f"{self.card.key} ({self.card.title})")
            return model
        return super().load_weights(paths, trust)
