"""Capsule-Forensics-v2 (Nguyen, Yamagishi, Echizen, ICASSP 2019), ported to read the authors' files.

Architecture, from the paper and ``nii-yamagishilab/Capsule-Forensics-v2`` (``model_big.py``), written here
from that description: VGG19 ``features[0:19]`` (ImageNet weights, frozen; 256 channels at stride 8), then
10 primary capsules, each conv(256->64)-BN-ReLU-conv(64->16)-BN-ReLU, per-channel mean and *unbiased*
standard deviation over the spatial positions, conv1d(2->8, k5, s2)-BN-conv1d(8->1, k3)-BN -> 8 values.
Two details are reproduced as the authors' code has them: the squash of the stacked [B, 8, 10] primary
outputs runs across the 10 capsules (not within each capsule's 8 values), and the routing update adds the
elementwise product of priors and outputs to the logits (no dot product), 2 iterations, no noise at test.
The class output is the softmax over the 2 output capsules for each of their 4 dimensions, averaged over
the dimensions; P(fake) = class index 1. A video's score is the mean of its frames'.

Weights come as two files: the released capsule state dict (``capsule_21.pt``) and torchvision's VGG19
ImageNet weights (``vgg19-dcbb9e9d.pth``), which the capsule file does not contain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfbench.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorAdapter, DetectorCard
from dfbench.detectors.registry import register_detector
from dfbench.errors import CheckpointError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    from pathlib import Path

    import torch

N_CAPSULES, VGG_LAYERS, ROUTING_ITERATIONS = 10, 19, 2


def build_capsule_net(num_classes: int = 2):
    """The Capsule-Forensics-v2 network (random weights) as a torch module."""
    import torch
    from torch import nn

    class StatsPool(nn.Module):
        """[B, C, H, W] -> [B, 2, C]: per-channel mean and unbiased std over the H x W positions."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(2)
            return torch.stack((flat.mean(dim=2), flat.std(dim=2, unbiased=True)), dim=1)

    class Flatten8(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], 8)

    def primary_capsule() -> nn.Sequential:
        # Indices 0..11 match the authors' Sequential, so their state-dict keys load as they are.
        return nn.Sequential(
            nn.Conv2d(256, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 16, 3, 1, 1), nn.BatchNorm2d(16),
            nn.ReLU(), StatsPool(), nn.Conv1d(2, 8, 5, 2, 2), nn.BatchNorm1d(8), nn.Conv1d(8, 1, 3, 1, 1),
            nn.BatchNorm1d(1), Flatten8())

    def squash(s: torch.Tensor, dim: int) -> torch.Tensor:
        norm2 = (s * s).sum(dim=dim, keepdim=True)
        return norm2 / (1 + norm2) * s / norm2.sqrt()

    class PrimaryCapsules(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.capsules = nn.ModuleList(primary_capsule() for _ in range(N_CAPSULES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            u = torch.stack([capsule(x) for capsule in self.capsules], dim=-1)  # [B, 8, 10]
            return squash(u, dim=-1)  # across the capsules, as the authors' code does

    class DynamicRouting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.route_weights = nn.Parameter(torch.randn(num_classes, N_CAPSULES, 4, 8))

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            # u [B, 8, 10] -> priors [B, out, in, 4]: W[out, in] (4 x 8) @ u[b, :, in]
            priors = torch.einsum("oidk,bki->boid", self.route_weights, u)
            logits = torch.zeros_like(priors)
            for step in range(ROUTING_ITERATIONS):
                weights = torch.softmax(logits, dim=2)
                v = squash((weights * priors).sum(dim=2, keepdim=True), dim=3)  # [B, out, 1, 4]
                if step < ROUTING_ITERATIONS - 1:
                    logits = logits + priors * v  # elementwise agreement, as the authors' code does
            return v.squeeze(2).transpose(1, 2)  # [B, 4, out]

    class CapsuleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vgg = nn.Sequential(*_vgg19_head())
            self.fea_ext = PrimaryCapsules()
            self.routing_stats = DynamicRouting()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.routing_stats(self.fea_ext(self.vgg(x)))
            return torch.softmax(z, dim=-1).mean(dim=1)  # [B, classes]: class probabilities

    return CapsuleNet()


def _vgg19_head():
    import torchvision

    return list(torchvision.models.vgg19(weights=None).features.children())[:VGG_LAYERS]


@register_detector
class CapsuleForensics(DetectorAdapter):
    """Capsule-Forensics-v2, binary (real vs fake)."""

    card = DetectorCard(
        key="capsule",
        title="Capsule-Forensics-v2, binary (VGG19 features + 10 statistics capsules)",
        reference="Nguyen, Yamagishi, Echizen, Use of a Capsule Network to Detect Fake Images and Videos, 2019; "
                  "nii-yamagishilab/Capsule-Forensics-v2",
        input_size=300,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=CropSpec(size=300, scale=1.3, square=True, interpolation="pil_bilinear"),
        protocol="The authors cut faces from FF++'s manipulation masks (Otsu, largest contour, side 1.3 x the "
                 "mask's height, saved as JPEG q95), which cannot be rebuilt for other videos: dfbench cuts "
                 "mtcnn boxes (ours). Video rule as the authors: the mean over frames.",
        output="mean over the 4 output dimensions of the softmax over the 2 class capsules; index 1 = fake",
        formats=("two files: the released capsule state dict (capsule_21.pt: fea_ext.*, routing_stats.*) and "
                 "torchvision's VGG19 ImageNet weights (vgg19-dcbb9e9d.pth: features.*)",),
        verified="ported from the paper and the authors' model_big.py; VGG part = torchvision vgg19; "
                 "checked against an independent loop-based re-implementation (tests/test_parity.py)",
    )

    def build(self) -> torch.nn.Module:
        return build_capsule_net()

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, 1].float()

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        from dfbench.detectors.checkpoints import extract_state_dict, fit_state_dict, strip_prefixes

        states = [strip_prefixes(extract_state_dict(self.read_checkpoint(p, trust))) for p in paths]
        capsule = [s for s in states if any(k.startswith(("fea_ext.", "routing_stats.")) for k in s)]
        vgg = [s for s in states if "features.0.weight" in s]
        if len(paths) != 2 or len(capsule) != 1 or len(vgg) != 1:
            missing = "the VGG19 ImageNet weights (torchvision vgg19-dcbb9e9d.pth, keys features.*)" if capsule \
                else "the capsule state dict (capsule_21.pt, keys fea_ext.*, routing_stats.*)"
            raise CheckpointError(f"capsule needs two weight files, the capsule state dict and torchvision's VGG19 "
                                  f"ImageNet weights; missing: {missing}. Pass --weights twice.")
        state: dict[str, Any] = dict(capsule[0])
        state.update({f"vgg.{k[len('features.'):]}": v for k, v in vgg[0].items()
                      if k.startswith("features.") and int(k.split(".")[1]) < VGG_LAYERS})
        model = self.build()
        fit_state_dict(model, state, "capsule (Capsule-Forensics-v2 + VGG19 features[0:19])")
        return model
