"""`dfbench train`: the EfficientNet-B2 paper's recipe (Dey, Jadhav, Rana; seeds/effnet-b2-trueface-social.txt).

Recipe as published: AdamW, initial learning rate 3e-4, mini-batch 64, at most 100 epochs, early
stopping on the loss with patience 10, a learning-rate scheduler with patience 10 down to 1e-6. The
paper names no augmentation; dfbench mirrors half the crops at random (``augment``). The
paper picks its model on the test set; dfbench picks the epoch with the lowest *validation* loss,
where validation is a seeded share of the training groups (a real video and its fake twin share a
group) and never the test split. Faces are found and cropped exactly as `dfbench run` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.data import Dataset, load_dataset
from dfbench.detectors import DetectorAdapter, get_detector
from dfbench.detectors.base import resolve_device, resolve_precision
from dfbench.errors import ConfigError, DatasetError
from dfbench.faces import make_finder
from dfbench.metrics import auc
from dfbench.perturbations import OPERATIONS
from dfbench.pipeline import StageClock, collect_faces
from dfbench.provenance import git_hash
from dfbench.video.engine import CellPlan
from dfbench.video.probe import probe_video, sample_indices


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; defaults are the paper's recipe."""

    detector: str
    dataset: str
    out: Path
    epochs: int = 100
    patience: int = 10
    batch_size: int = 64
    lr: float = 3e-4
    min_lr: float = 1e-6
    frames: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    save_dtype: str = "fp32"
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 2 or self.frames < 1:
            raise ConfigError("epochs, patience and frames must be >= 1 and batch_size >= 2.")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}.")
        if self.save_dtype not in ("fp32", "fp16"):
            raise ConfigError(f"--save-dtype must be fp32 or fp16, got {self.save_dtype!r}.")


@dataclass(frozen=True)
class TrainResult:
    """The best epoch and its validation numbers."""

    best_epoch: int
    best_val_loss: float
    best_val_auc: float
    epochs_run: int
    seconds_per_epoch: float


def split_train_val(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Training and validation sets: the 'val' split if there is one, else a seeded share of training groups.

    The test split is never used. Groups (a video and its fake twins) stay on one side.
    """
    table = dataset.table
    if dataset.has_splits:
        if "train" not in set(table["split"]):
            raise DatasetError(f"Dataset {dataset.name!r} has splits but no 'train' split to train on.")
        if "val" in set(table["split"]):
            return dataset.select("train"), dataset.select("val")
        table = table[table["split"] == "train"]
    groups = np.where(table["group"] != "", table["group"], table["sample_id"])
    unique = np.array(sorted(set(groups)))
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(unique) * val_fraction)))
    val_groups = set(rng.permutation(unique)[:n_val])
    is_val = np.array([g in val_groups for g in groups])
    train = Dataset(f"{dataset.name}:train", table[~is_val].reset_index(drop=True), dataset.root)
    val = Dataset(f"{dataset.name}:val", table[is_val].reset_index(drop=True), dataset.root)
    train.check_evaluable()
    val.check_evaluable()
    return train, val


def extract_crops(dataset: Dataset, adapter: DetectorAdapter, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (uint8, N x size x size x 3) of the clean videos and their labels."""
    finder = make_finder("mtcnn")
    plan = [CellPlan("none-0", tuple(OPERATIONS.get("none").steps(0, 0)))]
    crops, labels = [], []
    for sample in dataset.table.itertuples():
        indices = sample_indices(probe_video(Path(sample.path)).frame_count, frames)
        found, _, _, failures = collect_faces(finder, adapter.card.crop, plan, Path(sample.path), indices, None,
                                              StageClock())
        if failures:
            raise DatasetError(f"Cannot decode training sample {sample.sample_id!r}: {failures['none-0']}")
        crops.extend(found)
        labels.extend([int(sample.label)] * len(found))
    if not crops:
        raise DatasetError(f"No faces found in {dataset.name!r}.")
    return np.stack(crops), np.asarray(labels, dtype=np.int64)


def augment_crops(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation (ours; the paper names none): each crop mirrored left-right with probability 1/2.

    Example:
        >>> x = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
        >>> out = augment_crops(x, np.random.default_rng(0))
        >>> bool((out[0] == x[0]).all() or (out[0] == x[0][:, ::-1]).all())
        True
    """
    flip = rng.random(len(crops)) < 0.5
    out = crops.copy()
    out[flip] = crops[flip][:, :, ::-1]
    return out


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_detector(config: TrainConfig, log: Callable[[str], None] = lambda _msg: None) -> TrainResult:
    """Train `config.detector` on the training split of `config.dataset` and save the best checkpoint."""
    import torch

    torch.manual_seed(config.seed)
    dataset = load_dataset(config.dataset)
    train_set, val_set = split_train_val(dataset, config.val_fraction, config.seed)
    adapter = get_detector(config.detector)
    started = time.perf_counter()
    x_train, y_train = extract_crops(train_set, adapter, config.frames)
    x_val, y_val = extract_crops(val_set, adapter, config.frames)
    log(f"{len(x_train)} training crops from {len(train_set)} videos, {len(x_val)} validation crops from "
        f"{len(val_set)} videos ({time.perf_counter() - started:.0f} s to extract)")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = adapter.build().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=config.patience,
                                                           min_lr=config.min_lr)
    loop = _Loop(adapter, model, device, precision, config.batch_size, config.augment)
    rng = np.random.default_rng(config.seed)
    best = (float("inf"), 0, float("nan"))
    best_state: dict = {}
    epoch_times = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        train_loss = loop.train_epoch(optimizer, x_train, y_train, rng)
        val_loss, val_scores = loop.evaluate(x_val, y_val)
        epoch_times.append(time.perf_counter() - t0)
        val_auc = auc(y_val, val_scores) if len(set(y_val.tolist())) == 2 else float("nan")
        scheduler.step(val_loss)
        improved = val_loss < best[0]
        if improved:
            best = (val_loss, epoch, val_auc)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log(f"epoch {epoch:3d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  val AUC {val_auc:.4f}  "
            f"lr {optimizer.param_groups[0]['lr']:.1e}  {epoch_times[-1]:.0f} s{'  *' if improved else ''}")
        if epoch - best[1] >= config.patience:
            log(f"early stop: no validation-loss improvement for {config.patience} epochs")
            break
    _save(config, best_state, best, dataset, train_set, val_set, epoch, float(np.median(epoch_times)))
    return TrainResult(best[1], best[0], best[2], epoch, float(np.median(epoch_times)))


class _Loop:
    """One model's training and evaluation passes over in-memory uint8 crops."""

    def __init__(self, adapter: DetectorAdapter, model, device: str, precision: str, batch_size: int,
                 augment: bool) -> None:
        import torch

        self.adapter, self.model, self.device, self.batch_size = adapter, model, device, batch_size
        self.augment = augment
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.device_type = "cuda" if device.startswith("cuda") else device
        self.loss = torch.nn.CrossEntropyLoss()

    def _forward(self, crops: np.ndarray):
        import torch

        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        x = self.adapter.normalize(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.model(x).float()

    def train_epoch(self, optimizer, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
        import torch

        self.model.train()
        total = 0.0
        for idx in _batches(len(x), self.batch_size, rng):
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            optimizer.zero_grad(set_to_none=True)
            crops = augment_crops(x[idx], rng) if self.augment else x[idx]
            loss = self.loss(self._forward(crops), torch.from_numpy(y[idx]).to(self.device))
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        return total / len(x)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        import torch

        self.model.eval()
        total, scores = 0.0, []
        with torch.inference_mode():
            for idx in _batches(len(x), self.batch_size, None):
                logits = self._forward(x[idx])
                total += float(self.loss(logits, torch.from_numpy(y[idx]).to(self.device))) * len(idx)
                scores.append(self.adapter.scores(logits).cpu().numpy())
        return total / len(x), np.concatenate(scores)


def _save(config: TrainConfig, state: dict, best: tuple[float, int, float], dataset: Dataset, train_set: Dataset,
          val_set: Dataset, epochs_run: int, seconds_per_epoch: float) -> None:
    import torch

    import dfbench

    if config.save_dtype == "fp16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "detector": config.detector, "recipe": "trueface-effb2", "augment": config.augment,
        "dfbench_version": dfbench.__version__,
        "git_hash": git_hash(), "dataset": dataset.name, "dataset_hash": dataset.hash,
        "train_samples": len(train_set), "val_samples": len(val_set), "best_epoch": best[1],
        "best_val_loss": best[0], "best_val_auc": best[2], "epochs_run": epochs_run,
        "seconds_per_epoch": round(seconds_per_epoch, 1),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
    }
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": meta}, config.out)
