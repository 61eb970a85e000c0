"""Training data: splits that never touch the test split, and face crops extracted once and cached."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dfbench.cache import cache_root
from dfbench.data import Dataset
from dfbench.errors import DatasetError
from dfbench.faces import CropSpec, FaceFinder
from dfbench.gather import Gatherer, clean_suite, make_finder

CROPS_VERSION = 1


@dataclass
class Crops:
    """Face crops of one split: uint8 RGB (N x size x size x 3) with their label, method and video. (`images` may
    hold a model's frozen features instead, N x ... float32, for a trainer without normalisation.)"""

    images: np.ndarray
    labels: np.ndarray
    methods: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Crops:
        return Crops(self.images[index], self.labels[index], self.methods[index], self.groups[index])


def _groups(table) -> np.ndarray:
    return np.where(table["group"] != "", table["group"], table["sample_id"]).astype(str)


def _seeded_share(keys: np.ndarray, fraction: float, seed: int, salt: str) -> set[str]:
    """A seeded share of the distinct keys (at least one)."""
    unique = np.array(sorted(set(keys)))
    rng = np.random.default_rng([seed, int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)])
    return set(rng.permutation(unique)[:max(1, int(round(len(unique) * fraction)))])


def split_for_training(dataset: Dataset, val_fraction: float, seed: int,
                       test_fraction: float = 0.3) -> tuple[Dataset, Dataset]:
    """Training and validation sets; the test split is never used.

    A dataset with a ``train`` split trains on it (validating on ``val`` when there is one, else on a seeded
    share of the training groups). A dataset without splits is first split by group, seeded, into train and
    test (70/30, as the EfficientNet-B2 paper did); only the train part is used. A video and its fake twins
    (one group) always stay together.
    """
    table = dataset.table
    if dataset.has_splits:
        if "train" not in set(table["split"]):
            raise DatasetError(f"Dataset {dataset.name!r} has splits but no 'train' split to train on.")
        if "val" in set(table["split"]):
            return dataset.select("train"), dataset.select("val")
        table = table[table["split"] == "train"]
    else:
        held_out = _seeded_share(_groups(table), test_fraction, seed, "test")
        table = table[~np.isin(_groups(table), list(held_out))]
    val_groups = _seeded_share(_groups(table), val_fraction, seed, "val")
    is_val = np.isin(_groups(table), list(val_groups))
    train = Dataset(f"{dataset.name}:train", table[~is_val].reset_index(drop=True), dataset.root)
    val = Dataset(f"{dataset.name}:val", table[is_val].reset_index(drop=True), dataset.root)
    train.check_evaluable()
    val.check_evaluable()
    return train, val


def split_groups(dataset: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """Two disjoint halves of a dataset by group (DeepFeatureX trains its base models and its head on
    different images)."""
    groups = _groups(dataset.table)
    first = _seeded_share(groups, 0.5, seed, "half")
    mask = np.isin(groups, list(first))
    return (Dataset(f"{dataset.name}:a", dataset.table[mask].reset_index(drop=True), dataset.root),
            Dataset(f"{dataset.name}:b", dataset.table[~mask].reset_index(drop=True), dataset.root))


def extract_crops(dataset: Dataset, spec: CropSpec, frames: int, finder: FaceFinder | None = None) -> Crops:
    """Face crops of the clean samples, gathered as ``dfbench run --suite clean`` gathers them with `finder`
    (None: mtcnn, or none for whole-frame specs); cached by content and finder."""
    finder = finder or make_finder("none" if spec.whole_frame else "mtcnn")
    key = hashlib.sha256(json.dumps({"v": CROPS_VERSION, "data": dataset.hash, "ids": list(dataset.table["sample_id"]),
                                     "spec": asdict(spec), "frames": frames, "finder": finder.describe()},
                                    sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "crops" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return Crops(data["images"], data["labels"], data["methods"], data["groups"])
    gatherer = Gatherer(clean_suite(frames), finder, spec)
    images, labels, methods, groups = [], [], [], []
    for sample in dataset.table.itertuples():
        gathered = gatherer.gather_all(str(sample.sample_id), Path(sample.path))
        problem = gathered.unreadable or next(iter(gathered.failures.values()), None)
        if problem:
            raise DatasetError(f"Cannot decode training sample {sample.sample_id!r}: {problem}")
        found = list(gathered.crops)
        images.extend(found)
        labels += [int(sample.label)] * len(found)
        methods += [str(sample.method)] * len(found)
        groups += [str(sample.group or sample.sample_id)] * len(found)
    if not images:
        raise DatasetError(f"No faces found in {dataset.name!r}.")
    crops = Crops(np.stack(images), np.asarray(labels, np.int64), np.asarray(methods), np.asarray(groups))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=crops.images, labels=crops.labels, methods=crops.methods, groups=crops.groups)
    tmp.replace(path)
    return crops
