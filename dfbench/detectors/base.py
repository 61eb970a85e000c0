"""The adapter contract: a `DetectorCard` holding everything that changes a score, and `DetectorAdapter`.

A face batch handed to `predict` is float32, N x 3 x H x W, RGB in [0, 1]; each adapter normalises it
itself. `predict` returns P(fake) per face, shape (N,), in [0, 1].
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from dfbench.errors import CheckpointError, ConfigError, DetectorOutputError
from dfbench.faces.crop import CropSpec
from dfbench.registry import Registry

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Precision = Literal["auto", "fp32", "bf16", "fp16"]
ENTRY_POINT_GROUP = "dfbench.detectors"
_NOT_ADAPTERS = {"base", "checkpoints"}


@dataclass(frozen=True)
class DetectorCard:
    """Everything about a detector that changes its scores.

    Attributes:
        key: registry key (CLI ``--detector``).
        title: human name and variant.
        reference: the paper or code the adapter follows.
        input_size: side of the square input in pixels.
        mean, std: per-channel RGB normalisation applied to inputs in [0, 1].
        crop: how faces are cut out (margin, shape, output size, which faces).
        output: how the network output becomes P(fake).
        aggregation: default frame-to-video aggregation.
        formats: checkpoint formats `load` reads.
        demo_weights: file name of weights shipped in ``dfbench/detectors/weights`` (None if none).
        verified: what the port was checked against, or why it is unverified.
    """

    key: str
    title: str
    reference: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: CropSpec
    output: str
    formats: tuple[str, ...]
    aggregation: str = "mean"
    demo_weights: str | None = None
    verified: str = "unverified"

    def __post_init__(self) -> None:
        if self.crop.size != self.input_size:
            raise ConfigError(f"[{self.key}] crop size {self.crop.size} != input size {self.input_size}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"[{self.key}] mean and std need three values each, std > 0.")


def resolve_device(name: str) -> str:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable device is a ConfigError."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for, but torch sees no CUDA device. Use --device cpu or auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"Unknown device {name!r}. Allowed: auto, cpu, cuda, cuda:N, mps.")
    return name


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` is bf16 on a CPU with native bf16 support (AVX512-BF16/AMX) or a bf16 GPU, else fp32/fp16."""
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"Unknown precision {precision!r}. Allowed: auto, fp32, bf16, fp16.")
    if precision != "auto":
        return precision
    if device == "cpu":
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


class DetectorAdapter:
    """Base class of every adapter. Construction is cheap; `load` builds the network and reads weights."""

    card: ClassVar[DetectorCard]

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.device = "cpu"
        self.precision = "fp32"
        self.weights_label = "none"
        self.weights_sha256 = ""

    # -- what subclasses provide -------------------------------------------------------------------
    def build(self) -> torch.nn.Module:
        """The network with random weights; no file or network access."""
        raise NotImplementedError

    def convert_state_dict(self, checkpoint: Any) -> dict[str, torch.Tensor]:
        """Map a loaded checkpoint object to this adapter's state-dict keys (override for foreign formats)."""
        from dfbench.detectors.checkpoints import extract_state_dict, strip_prefixes

        return strip_prefixes(extract_state_dict(checkpoint))

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """P(fake) from the network output; default: softmax over two logits, index 1 = fake."""
        import torch

        return torch.softmax(output.float(), dim=1)[:, 1]

    # -- shared machinery --------------------------------------------------------------------------
    def load(self, weights: str | Path | None, device: str = "cpu", precision: str = "fp32",
             trust_checkpoint: bool = False, seed: int = 0) -> None:
        """Build the network and load `weights`: a file path, ``"demo"`` or ``"random"`` (seeded init)."""
        import torch

        from dfbench.detectors.checkpoints import file_sha256, fit_state_dict, load_checkpoint

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build()
        if weights in (None, "random"):
            self.weights_label, self.weights_sha256 = f"random(seed={seed})", ""
        else:
            path = self.demo_weights_path() if weights == "demo" else Path(weights)
            state = self.convert_state_dict(load_checkpoint(path, trust=trust_checkpoint))
            fit_state_dict(model, state, f"{self.card.key} ({self.card.title})")
            self.weights_label = "demo" if weights == "demo" else path.name
            self.weights_sha256 = file_sha256(path)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)

    def demo_weights_path(self) -> Path:
        """The shipped demo weights of this adapter; CheckpointError if it has none."""
        if not self.card.demo_weights:
            raise CheckpointError(f"Detector {self.card.key!r} ships no demo weights; pass --weights FILE "
                                  "or --weights random.")
        return Path(str(resources.files("dfbench") / "detectors" / "weights" / self.card.demo_weights))

    def normalize(self, faces: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB to the network's input scale with the card's mean and std."""
        mean = faces.new_tensor(self.card.mean).view(1, 3, 1, 1)
        std = faces.new_tensor(self.card.std).view(1, 3, 1, 1)
        return (faces - mean) / std

    def predict(self, faces: torch.Tensor) -> torch.Tensor:
        """P(fake) for each face of a float batch N x 3 x H x W in [0, 1]; returns (N,) float32 on the CPU."""
        import torch

        if self.model is None:
            raise RuntimeError(f"[{self.card.key}] call load() before predict().")
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise DetectorOutputError(f"[{self.card.key}] expects N x 3 x H x W faces, got {tuple(faces.shape)}.")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = "cuda" if self.device.startswith("cuda") else self.device
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            x = self.normalize(faces.to(self.device, non_blocking=True).float())
            out = self.scores(self.model(x.contiguous(memory_format=torch.channels_last)))
        return out.float().cpu().reshape(-1)


def _import_adapter(key: str) -> None:
    name = key.split(":", 1)[0]
    if name not in _NOT_ADAPTERS and importlib.util.find_spec(f"dfbench.detectors.{name}") is not None:
        importlib.import_module(f"dfbench.detectors.{name}")
        return
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == key:
            adapter = ep.load()
            if key not in DETECTORS._entries:
                DETECTORS.add(key, adapter)
            return


def _discover() -> list[str]:
    from dfbench import detectors as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__)
             if not m.name.startswith("_") and m.name not in _NOT_ADAPTERS]
    return names + [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


DETECTORS: Registry[type[DetectorAdapter]] = Registry("detector", "dfbench list detectors",
                                                      loader=_import_adapter, discover=_discover)
register_detector = DETECTORS.register
