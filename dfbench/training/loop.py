"""One training loop for every recipe: batches of in-memory crops, optional Cut-Out and self-blending, early
stopping, learning-rate schedules, SAM, checkpoint selection on validation only, and resume after a stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfbench.detectors.base import autocast
from dfbench.metrics import auc
from dfbench.training.data import Crops

Progress = Callable[[int, int, int, float], None]   # epoch, batch, batches, running loss


@dataclass(frozen=True)
class FitSettings:
    """Everything that decides how a model is trained.

    Attributes:
        optimizer: ``adamw``, ``adam`` or ``sam`` (SAM around SGD with momentum 0.9, as SBI trains).
        loss: ``ce`` (softmax cross-entropy), ``bce`` (binary cross-entropy on the fake-minus-real logit, the
            same quantity for two classes) or ``weighted_ce`` (class weights 1/count, DeepFeatureX).
        patience: stop after this many epochs without a better validation loss (None: run every epoch).
        plateau: (patience, min_lr) of a reduce-on-plateau schedule on the validation loss, or None.
        linear_decay_from: share of the epochs after which the learning rate falls linearly to 0 (SBI).
        select: keep the epoch with the lowest ``val_loss``, the highest ``val_auc``, or the highest ``val_acc``
            (accuracy at 0.5; ties go to the lower loss). Early stopping watches the loss whatever is selected.
        flip: mirror half the training crops.
        cutout: side of the zeroed square as a share of the crop side (DeVries & Taylor), or None.
        self_blend: train on real crops plus their self-blended copies (SBI); the face is the central
            1/`face_scale` of each crop.
        micro_batch: split each batch into chunks of this size and accumulate gradients (same update).
        weight_decay: the optimizer's weight decay; None keeps PyTorch's default (AdamW 0.01, Adam 0).
    """

    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    loss: str = "ce"
    patience: int | None = None
    plateau: tuple[int, float] | None = None
    linear_decay_from: float | None = None
    select: str = "val_loss"
    flip: bool = False
    cutout: float | None = None
    self_blend: bool = False
    face_scale: float = 1.3
    micro_batch: int | None = None
    weight_decay: float | None = None
    seed: int = 0

    @property
    def drawn_per_step(self) -> int:
        """Training crops drawn per optimiser step: half the batch with self-blending (the rest are their blends)."""
        return self.batch_size // 2 if self.self_blend else self.batch_size


@dataclass
class FitResult:
    """The selected epoch and its validation numbers; `state` holds its weights (CPU tensors)."""

    state: dict = field(repr=False)
    best_epoch: int
    best_val_loss: float
    best_val_auc: float
    epochs_run: int
    seconds_per_epoch: float
    resumed_from: int = 0


def cutout(crops: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Zero one square of side `fraction` x the crop side per crop, centred anywhere (clipped at the edges)."""
    out = crops.copy()
    size = crops.shape[1]
    side = max(1, int(round(size * fraction)))
    for i in range(len(out)):
        cy, cx = rng.integers(0, size, size=2)
        out[i, max(0, cy - side // 2):cy + (side + 1) // 2, max(0, cx - side // 2):cx + (side + 1) // 2] = 0
    return out


def self_blended(crops: np.ndarray, face_scale: float, rng: np.random.Generator) -> np.ndarray:
    """A self-blended fake of every real crop; the face box is the central 1/`face_scale` of the crop."""
    from dfbench.data.blend import self_blend

    size = crops.shape[1]
    margin = size * (1 - 1 / face_scale) / 2
    box = (margin, margin, size - margin, size - margin)
    return np.stack([self_blend(crop, box, rng) for crop in crops])


def model_input(crops: np.ndarray, device: str, normalize: Callable):
    """uint8 crops N x H x W x 3 as the model's input: `scoring.to_model_input`, normalised, channels-last."""
    import torch

    from dfbench.scoring import to_model_input

    return normalize(to_model_input(crops, device)).contiguous(memory_format=torch.channels_last)


class SAM:
    """Sharpness-aware minimisation (Foret et al., ICLR 2021) around SGD: step to the worst nearby weights
    (radius `rho`), take the gradient there, step back and let SGD update."""

    def __init__(self, params, lr: float, momentum: float = 0.9, rho: float = 0.05) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.base = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        self.param_groups = self.base.param_groups
        self.rho = rho
        self._eps: list = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def first_step(self) -> None:
        import torch

        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.norm(torch.stack([g.norm(2) for g in grads]), 2) if grads else torch.tensor(0.0)
        scale = self.rho / (norm + 1e-12)
        self._eps = []
        with torch.no_grad():
            for p in self.params:
                e = p.grad * scale if p.grad is not None else torch.zeros_like(p)
                p.add_(e)
                self._eps.append(e)
        self.zero_grad()

    def second_step(self) -> None:
        import torch

        with torch.no_grad():
            for p, e in zip(self.params, self._eps, strict=True):
                p.sub_(e)
        self.base.step()
        self.zero_grad()

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)


class Trainer:
    """Trains `model` on crops: uint8 N x H x W x 3 arrays that `normalize` turns into the model's input, or
    (`normalize` None) float arrays that are the model's input already, such as frozen features."""

    def __init__(self, model, normalize: Callable | None, settings: FitSettings, device: str, precision: str,
                 class_weights: np.ndarray | None = None, positive: int = 1) -> None:
        import torch

        self.model, self.normalize, self.settings = model, normalize, settings
        self.device, self.precision = device, precision
        self.positive = positive
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32, device=device)
        self.ce = torch.nn.CrossEntropyLoss(weight=weight)
        params = [p for p in model.parameters() if p.requires_grad]
        if settings.optimizer == "sam":
            self.optimizer: Any = SAM(params, lr=settings.lr)
        elif settings.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay or 0.0)
        else:
            decay = 0.01 if settings.weight_decay is None else settings.weight_decay
            self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=decay)
        self.plateau = None
        if settings.plateau:
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer if settings.optimizer != "sam" else self.optimizer.base, mode="min",
                patience=settings.plateau[0], min_lr=settings.plateau[1])

    # -- one pass ---------------------------------------------------------------------------------------------
    def _logits(self, crops: np.ndarray):
        import torch

        if self.normalize is None:
            x = torch.from_numpy(crops).to(self.device)
        else:
            x = model_input(crops, self.device, self.normalize)
        with autocast(self.device, self.precision):
            return self.model(x).float()

    def _loss(self, logits, labels):
        import torch

        if self.settings.loss == "bce":
            margin = logits[:, 1] - logits[:, 0]
            return torch.nn.functional.binary_cross_entropy_with_logits(margin, labels.float())
        return self.ce(logits, labels)

    def _step(self, crops: np.ndarray, labels: np.ndarray) -> float:
        import torch

        chunk = self.settings.micro_batch or len(crops)
        passes = 2 if self.settings.optimizer == "sam" else 1
        total = 0.0
        for attempt in range(passes):
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for start in range(0, len(crops), chunk):
                part = slice(start, start + chunk)
                target = torch.from_numpy(labels[part]).to(self.device)
                loss = self._loss(self._logits(crops[part]), target) * (len(target) / len(crops))
                loss.backward()
                total += float(loss.detach())
            if self.settings.optimizer == "sam":
                self.optimizer.first_step() if attempt == 0 else self.optimizer.second_step()
            else:
                self.optimizer.step()
        return total

    def _batch(self, data: Crops, index: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        crops, labels = data.images[index], data.labels[index]
        if self.settings.self_blend:
            fakes = self_blended(crops, self.settings.face_scale, rng)
            crops = np.concatenate([crops, fakes])
            labels = np.concatenate([np.zeros(len(fakes), np.int64), np.ones(len(fakes), np.int64)])
        if self.settings.flip:
            flip = rng.random(len(crops)) < 0.5
            crops = crops.copy()
            crops[flip] = crops[flip][:, :, ::-1]
        if self.settings.cutout:
            crops = cutout(crops, self.settings.cutout, rng)
        return crops, labels

    def train_epoch(self, data: Crops, rng: np.random.Generator, epoch: int, progress: Progress | None) -> float:
        self.model.train()
        per_step = self.settings.drawn_per_step
        order = rng.permutation(len(data))
        batches = [order[i:i + per_step] for i in range(0, len(order), per_step)]
        total, seen = 0.0, 0
        for b, index in enumerate(batches, start=1):
            crops, labels = self._batch(data, index, rng)
            if len(crops) < 2:  # BatchNorm cannot train on one sample
                continue
            total += self._step(crops, labels) * len(crops)
            seen += len(crops)
            if progress:
                progress(epoch, b, len(batches), total / max(seen, 1))
        return total / max(seen, 1)

    def evaluate(self, data: Crops) -> tuple[float, float, float]:
        """Validation loss, AUC of the positive class (NaN when one class is missing) and accuracy at 0.5."""
        import torch

        self.model.eval()
        total, scores = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(data), self.settings.batch_size):
                part = slice(start, start + self.settings.batch_size)
                logits = self._logits(data.images[part])
                target = torch.from_numpy(data.labels[part]).to(self.device)
                total += float(self._loss(logits, target)) * len(target)
                scores.append(torch.softmax(logits, dim=1)[:, self.positive].cpu().numpy())
        binary = (data.labels == self.positive).astype(np.int64)
        positive = np.concatenate(scores)
        try:
            value = auc(binary, positive)
        except ValueError:
            value = float("nan")
        return total / len(data), value, float(((positive >= 0.5) == binary).mean())

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_epoch(self, epoch: int, val_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_loss)
        if self.settings.linear_decay_from is not None:
            start = int(self.settings.epochs * self.settings.linear_decay_from)
            if epoch >= start:
                factor = max(0.0, (self.settings.epochs - epoch) / max(1, self.settings.epochs - start))
                for group in self.optimizer.param_groups:
                    group["lr"] = self.settings.lr * factor


def fit(trainer: Trainer, train: Crops, val: Crops, checkpoint: Path, log: Callable[[str], None],
        progress: Progress | None = None, tag: str = "") -> FitResult:
    """Train for the settings' epochs, keep the best epoch on validation, resume from `checkpoint`'s
    ``.last`` file when an earlier run with the same settings stopped."""
    import torch

    settings = trainer.settings
    last = checkpoint.with_name(checkpoint.name + ".last")
    rng = np.random.default_rng([settings.seed, 17])
    state = _resume(last, trainer, settings)
    start, best, best_state, times = 1, (np.inf, 0, np.nan, np.nan), {}, []
    lowest = (np.inf, 0)   # (val loss, epoch): what early stopping watches
    if state is not None:
        start, best, times = state["epoch"] + 1, tuple(state["best"]), list(state["times"])
        lowest = tuple(state["lowest"])
        best_state = state["best_state"]
        rng.bit_generator.state = state["rng"]
        log(f"{tag}resuming after epoch {state['epoch']} from {last}")
    per_step = settings.drawn_per_step
    if train is not None and 0 < len(train) < per_step:
        log(f"{tag}note: the batch of {per_step} crops is larger than the {len(train)} training crops, so each "
            f"epoch is one optimiser step; --batch-size sets a smaller batch")
    epoch = start - 1
    for epoch in range(start, settings.epochs + 1):
        t0 = time.perf_counter()
        train_loss = trainer.train_epoch(train, rng, epoch, progress)
        val_loss, val_auc, val_acc = trainer.evaluate(val)
        times.append(time.perf_counter() - t0)
        trainer.after_epoch(epoch, val_loss)
        if settings.select == "val_loss":
            better = val_loss < best[0]
        elif settings.select == "val_auc":
            better = not (val_auc <= best[2])
        else:
            better = bool(np.isnan(best[3]) or val_acc > best[3] or (val_acc == best[3] and val_loss < best[0]))
        if better:
            best = (val_loss, epoch, val_auc, val_acc)
            best_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
        if val_loss < lowest[0]:
            lowest = (val_loss, epoch)
        log(f"{tag}epoch {epoch:3d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  val AUC {val_auc:.4f}  "
            f"val acc {val_acc:.4f}  lr {trainer.lr():.1e}  {times[-1]:.0f} s{'  *' if better else ''}")
        last.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"settings": asdict(settings), "epoch": epoch, "best": list(best), "lowest": list(lowest),
                    "best_state": best_state, "times": times, "rng": rng.bit_generator.state,
                    "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()}, last)
        if settings.patience is not None and epoch - lowest[1] >= settings.patience:
            log(f"{tag}early stop: no lower validation loss for {settings.patience} epochs")
            break
    last.unlink(missing_ok=True)
    return FitResult(best_state, int(best[1]), float(best[0]), float(best[2]), epoch,
                     float(np.median(times)) if times else 0.0, start - 1)


def _resume(last: Path, trainer: Trainer, settings: FitSettings) -> dict | None:
    import torch

    if not last.is_file():
        return None
    state = torch.load(last, map_location="cpu", weights_only=True)
    if state.get("settings") != asdict(settings):
        return None
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    return state
