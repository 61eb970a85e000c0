"""The adapter contract: a `DetectorCard` holding everything that changes a score, and `DetectorAdapter`.

A face batch handed to `predict` is float32, N x 3 x H x W, RGB in [0, 1]; each adapter normalises it
itself. `predict` returns P(fake) per face, shape (N,), in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from dfbench.errors import CheckpointError, ConfigError, DetectorOutputError, MissingFileError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class DetectorCard:
    """Everything about a detector that changes its scores.

    Attributes:
        key: registry key (CLI ``--detector``), written only here: ``@register_detector`` reads it.
        title: human name and variant.
        reference: the paper or code the adapter follows.
        input_size: side of the square input in pixels.
        mean, std: per-channel RGB normalisation applied to inputs in [0, 1].
        crop: how faces are cut out (margin, shape, output size, which faces).
        output: how the network output becomes P(fake).
        finder: the face finder the detector's authors used (`faces.finder.FINDERS`); ``--finder card`` runs it
            where it installs offline, else mtcnn with a notice. A name dfbench cannot run is kept as a record.
        protocol: where dfbench's protocol around the network differs from the authors' (finder, crop, video
            rule), in one or two sentences; shown by ``dfbench list detectors`` and in the report.
        aggregation: the authors' frame-to-video rule (``metrics.AGGREGATIONS``), used by suites that say
            ``aggregation: card``.
        fallback_score: the video score of a video with no scored frame in a cell (SBI: 0.5).
        decision: how accuracy-type metrics decide fake: ``threshold`` (P(fake) at the run's threshold) or
            ``argmax`` (the network's most probable class is not the last, REAL: DeepFeatureX).
        formats: checkpoint formats `load` reads.
        demo_weights: file name of weights shipped in ``dfbench/detectors/weights`` (None if none).
        verified: what the port was checked against, or why it is unverified.
        classes: names of the network's classes when it has more than real/fake (kept for 3-class metrics).
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
    finder: str = "mtcnn"
    protocol: str = ""
    aggregation: str = "mean"
    fallback_score: float = 0.5
    decision: str = "threshold"
    demo_weights: str | None = None
    verified: str = "unverified"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.crop.size != self.input_size:
            raise ConfigError(f"[{self.key}] crop size {self.crop.size} != input size {self.input_size}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"[{self.key}] mean and std need three values each, std > 0.")
        if self.decision not in ("threshold", "argmax") or (self.decision == "argmax" and len(self.classes) < 2):
            raise ConfigError(f"[{self.key}] decision must be 'threshold', or 'argmax' with classes named.")
        if not 0.0 <= self.fallback_score <= 1.0:
            raise ConfigError(f"[{self.key}] fallback_score must be in [0, 1], got {self.fallback_score}.")


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


def autocast(device: str, precision: str):
    """The autocast context of a resolved `precision` (bf16 or fp16 autocast; fp32: disabled) on `device`."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    device_type = "cuda" if device.startswith("cuda") else device
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


WeightsArg = str | Path | Sequence[str | Path] | None


def weight_files(weights: WeightsArg) -> tuple[str, ...]:
    """The weights argument as a tuple of strings (``()`` for random initialisation)."""
    if weights is None:
        return ()
    if isinstance(weights, (str, Path)):
        return () if str(weights) == "random" else (str(weights),)
    files = tuple(str(w) for w in weights)
    return () if files in ((), ("random",)) else files


class DetectorAdapter:
    """Base class of every adapter. Construction is cheap; `load` builds the network and reads weights.

    Subclasses give a `card` and `build()`; they override `convert_state_dict` for foreign key layouts,
    `load_weights` when the network depends on the files (several files, variants), and `scores` when
    P(fake) is not softmax index 1.
    """

    card: ClassVar[DetectorCard]

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.device = "cpu"
        self.precision = "fp32"
        self.weights_label = "none"
        self.weights_sha256 = ""
        self.notes: list[str] = []

    # -- what subclasses provide -------------------------------------------------------------------
    def build(self) -> torch.nn.Module:
        """The network with random weights; no file or network access."""
        raise NotImplementedError

    def convert_state_dict(self, checkpoint: Any) -> dict[str, torch.Tensor]:
        """Map a loaded checkpoint object to this adapter's state-dict keys (override for foreign formats)."""
        from dfbench.detectors.checkpoints import extract_state_dict, strip_prefixes

        return strip_prefixes(extract_state_dict(checkpoint))

    def load_weights(self, paths: list[Path], trust: bool) -> torch.nn.Module:
        """Build the network and fill it from `paths`; by default exactly one torch checkpoint."""
        from dfbench.detectors.checkpoints import fit_state_dict

        if len(paths) != 1:
            raise CheckpointError(f"{self.card.key!r} reads one weights file, got {len(paths)}: "
                                  f"{', '.join(p.name for p in paths)}.")
        state = self.convert_state_dict(self.read_checkpoint(paths[0], trust))
        model = self.build()
        fit_state_dict(model, state, f"{self.card.key} ({self.card.title})")
        return model

    def pickle_aliases(self) -> dict[str, type]:
        """``"module.Class"`` names of the authors' code in pickled checkpoints, mapped to stand-in classes."""
        return {}

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """P(fake) from the network output; default: softmax over two logits, index 1 = fake."""
        import torch

        return torch.softmax(output.float(), dim=1)[:, 1]

    def fake_log_odds(self, output: torch.Tensor) -> torch.Tensor:
        """log P(fake) - log P(real) per face from the network output, what attacks push on: from two logits it is
        their difference (it never saturates); adapters whose network ends in probabilities give the log-odds of
        `scores`, which stop moving where float32 rounds the probability to 0 or 1."""
        import torch

        out = output.float()
        if type(self).scores is DetectorAdapter.scores and out.ndim == 2 and out.shape[1] == 2:
            return out[:, 1] - out[:, 0]
        p = self.scores(output).float().reshape(-1).clamp(1e-12, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)

    def class_probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities (N x len(card.classes)) for adapters with more than two classes."""
        import torch

        return torch.softmax(output.float(), dim=1)

    # -- shared machinery --------------------------------------------------------------------------
    def read_checkpoint(self, path: Path, trust: bool) -> Any:
        """Read one torch file safely (see `checkpoints.load_checkpoint`), noting any conversion."""
        from dfbench.detectors.checkpoints import load_checkpoint

        loaded = load_checkpoint(path, trust=trust, aliases=self.pickle_aliases())
        if loaded.converted:
            self.notes.append(f"{path.name} was read as the plain state dict {loaded.converted}; pass that file "
                              "as --weights to skip unpickling entirely.")
        return loaded.obj

    def load(self, weights: WeightsArg, device: str = "cpu", precision: str = "fp32",
             trust_checkpoint: bool = False, seed: int = 0) -> None:
        """Build the network and load `weights`: file path(s), ``"demo"`` or ``"random"`` (seeded init)."""
        import torch

        from dfbench.hashing import file_sha256

        files = weight_files(weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if not files:
                model = self.build()
                self.weights_label, self.weights_sha256 = f"random(seed={seed})", ""
            else:
                paths = [self.demo_weights_path() if f == "demo" else Path(f) for f in files]
                for path in paths:
                    if not path.exists():
                        raise MissingFileError(f"Weights file {str(path)!r} does not exist.")
                model = self.load_weights(paths, trust_checkpoint)
                self.weights_label = "demo" if files == ("demo",) else "+".join(p.name for p in paths)
                self.weights_sha256 = "+".join(file_sha256(p) for p in paths)
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

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """The raw network output for a float batch N x 3 x H x W in [0, 1], under the chosen precision."""
        import torch

        if self.model is None:
            raise RuntimeError(f"[{self.card.key}] call load() before predict().")
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise DetectorOutputError(f"[{self.card.key}] expects N x 3 x H x W faces, got {tuple(faces.shape)}.")
        with torch.inference_mode(), autocast(self.device, self.precision):
            x = self.normalize(faces.to(self.device, non_blocking=True).float())
            return self.model(x.contiguous(memory_format=torch.channels_last))

    def forward_grad(self, faces: torch.Tensor) -> torch.Tensor:
        """The raw network output as `forward` gives it, with autograd on, for attacks that need the gradient with
        respect to `faces` (`dfbench.perturbations.adversarial`); the network stays in eval mode."""
        import torch

        if self.model is None:
            raise RuntimeError(f"[{self.card.key}] call load() before an attack.")
        with torch.enable_grad(), autocast(self.device, self.precision):
            x = self.normalize(faces.float())
            return self.model(x.contiguous(memory_format=torch.channels_last))

    def predict(self, faces: torch.Tensor) -> torch.Tensor:
        """P(fake) for each face of a float batch N x 3 x H x W in [0, 1]; returns (N,) float32 on the CPU."""
        import torch

        output = self.forward(faces)  # an inference tensor; what is computed from it outside is a normal one
        with torch.no_grad():
            return self.scores(output).float().cpu().reshape(-1)

    def predict_all(self, faces: torch.Tensor, copy_back: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P(fake) and, for adapters that declare classes, the class probabilities, from one forward pass; on
        the CPU, or (``copy_back=False``) left on the model's device so that the call does not wait for it."""
        import torch

        output = self.forward(faces)
        with torch.no_grad():
            scores = self.scores(output).float().reshape(-1)
            probs = self.class_probabilities(output).float() if self.card.classes else None
        if copy_back:
            return scores.cpu(), None if probs is None else probs.cpu()
        return scores, probs

    def predict_classes(self, faces: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N x len(card.classes)) on the CPU, for adapters that declare classes."""
        import torch

        if not self.card.classes:
            raise DetectorOutputError(f"[{self.card.key}] has no class outputs beyond P(fake).")
        output = self.forward(faces)
        with torch.no_grad():
            return self.class_probabilities(output).float().cpu()
