"""Loaders for public datasets laid out as distributed. A spec is ``<kind>:<root>[?key=value&...]``:

* ``ffpp:ROOT?compression=c23&methods=Deepfakes,Face2Face`` — FaceForensics++ (``original_sequences/youtube``,
  ``manipulated_sequences/<method>``; raw, c23 or c40; the official ``train/val/test.json`` pairs, read from
  ROOT, ROOT/splits or ``splits=DIR``). Sample ids are ``original/000`` and ``<method>/000_003``, so the
  same pair under two methods never merges.
* ``celebdf:ROOT`` — Celeb-DF v2 (``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis``); the videos listed in
  ``List_of_testing_videos.txt`` (where 1 means real) are ``test``, the others ``train``.
* ``dfdc:ROOT`` — DFDC: every ``metadata.json`` below ROOT (training parts; FAKE/REAL, ``original`` gives the
  group), or a ``labels.csv`` (filename, label with 1 = fake) for the public test set.
* ``trueface:ROOT?social=pre|facebook|telegram|twitter|whatsapp|all`` — TrueFace images (``TrueFace_PreSocial``,
  ``TrueFace_PostSocial/<platform>``; ``Real``/``Fake``); split 70/30 by image with a seed, as the
  EfficientNet-B2 paper did (``seed=``); ``val=0.1`` moves that share of the images from train to a ``val`` split
  (ours: the paper has none; the test split stays the same).
* ``deepfakebench:INDEX.json?compression=c23`` — a DeepfakeBench JSON index; each video is a folder of frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd

from dfbench.data.manifest import Dataset, validate
from dfbench.errors import DatasetError, MissingFileError
from dfbench.video.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
TRUEFACE_PLATFORMS = ("facebook", "telegram", "twitter", "whatsapp")
COLUMNS = ["sample_id", "path", "label", "split", "method", "group"]


def parse_spec(spec: str) -> tuple[str, Path, dict[str, str]] | None:
    """``kind:root?options`` -> (kind, root, options), or None when `spec` names no known layout."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in LOADERS:
        return None
    path, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return kind, Path(path).expanduser().absolute(), options


def load_layout(spec: str, problems: list[str] | None = None) -> Dataset:
    """Load a dataset spec of a known layout (see the module docstring)."""
    parsed = parse_spec(spec)
    if parsed is None:
        raise DatasetError(f"{spec!r} is not a dataset spec; known layouts: {', '.join(LOADERS)}.")
    kind, root, options = parsed
    if not root.exists():
        raise MissingFileError(f"{kind} root {str(root)!r} does not exist.")
    allowed = ALLOWED_OPTIONS[kind]
    unknown = sorted(set(options) - allowed)
    if unknown:
        names = ", ".join(sorted(allowed)) or "none"
        raise DatasetError(f"Unknown option {unknown[0]!r} for {kind}; allowed: {names}.")
    rows = LOADERS[kind](root, options)
    if not rows:
        raise DatasetError(f"No samples found under {str(root)!r} for layout {kind!r} (options {options or 'none'}).")
    base = root if root.is_dir() else root.parent
    dataset = validate(pd.DataFrame(rows, columns=COLUMNS), spec, root=base, problems=problems)
    return dataclasses.replace(dataset, scans_root=True)


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not p.name.startswith("."))


def _row(sample_id: str, path: Path, label: int, split: str = "", method: str = "", group: str = "") -> dict:
    return {"sample_id": sample_id, "path": str(path), "label": label, "split": split, "method": method,
            "group": group}


# -- FaceForensics++ ----------------------------------------------------------------------------------------------

def _ffpp_splits(root: Path, options: dict[str, str]) -> dict[str, str]:
    """Video id (``000``) or pair (``000_003``) -> split, from the official pair files."""
    folders = [Path(options["splits"])] if "splits" in options else [root, root / "splits"]
    mapping: dict[str, str] = {}
    for folder in folders:
        for split in ("train", "val", "test"):
            file = folder / f"{split}.json"
            if not file.is_file():
                continue
            for a, b in json.loads(file.read_text()):
                mapping.update({a: split, b: split, f"{a}_{b}": split, f"{b}_{a}": split})
        if mapping:
            break
    return mapping


def load_ffpp(root: Path, options: dict[str, str]) -> list[dict]:
    compression = options.get("compression", "c23")
    methods = options.get("methods", ",".join(FFPP_METHODS)).split(",")
    splits = _ffpp_splits(root, options)
    rows = []
    for path in _files(root / "original_sequences" / "youtube" / compression / "videos", VIDEO_SUFFIXES):
        rows.append(_row(f"original/{path.stem}", path, 0, splits.get(path.stem, ""), "original", path.stem))
    for method in methods:
        folder = root / "manipulated_sequences" / method / compression / "videos"
        if not folder.is_dir():
            raise DatasetError(f"FaceForensics++ method folder {str(folder)!r} does not exist (methods={method}, "
                               f"compression={compression}).")
        for path in _files(folder, VIDEO_SUFFIXES):
            target = path.stem.split("_")[0]
            rows.append(_row(f"{method}/{path.stem}", path, 1, splits.get(path.stem, ""), method, target))
    return rows


# -- Celeb-DF v2 ------------------------------------------------------------------------------------------------

def load_celebdf(root: Path, options: dict[str, str]) -> list[dict]:
    listed: dict[str, int] = {}
    test_list = root / "List_of_testing_videos.txt"
    if test_list.is_file():
        for line in test_list.read_text().splitlines():
            if line.strip():
                flag, rel = line.split(maxsplit=1)
                listed[_celebdf_key(rel)] = 0 if flag == "1" else 1  # the list writes 1 for real
    rows = []
    for folder, label in (("Celeb-real", 0), ("YouTube-real", 0), ("Youtube-real", 0), ("Celeb-synthesis", 1)):
        for path in _files(root / folder, VIDEO_SUFFIXES):
            key = _celebdf_key(f"{folder}/{path.name}")
            split = "test" if key in listed else ("train" if listed else "")
            group = path.stem.split("_")[0] if label else path.stem
            rows.append(_row(key.rsplit(".", 1)[0], path, label, split, folder, group))
    return rows


def _celebdf_key(rel: str) -> str:
    folder, _, name = rel.strip().replace("\\", "/").replace("Youtube-real", "YouTube-real").rpartition("/")
    return f"{folder.split('/')[0]}/{name}"


# -- DFDC --------------------------------------------------------------------------------------------------------

def load_dfdc(root: Path, options: dict[str, str]) -> list[dict]:
    rows = []
    for meta in sorted(root.rglob("metadata.json")):
        for name, info in json.loads(meta.read_text()).items():
            label = 1 if str(info.get("label", "")).upper() == "FAKE" else 0
            group = Path(info.get("original") or name).stem
            rows.append(_row(f"{meta.parent.name}/{Path(name).stem}", meta.parent / name, label,
                             str(info.get("split", "")), "FAKE" if label else "REAL", group))
    for labels in sorted(root.rglob("labels.csv")):
        table = pd.read_csv(labels)
        for name, label in zip(table["filename"], table["label"], strict=True):
            rows.append(_row(f"{labels.parent.name}/{Path(name).stem}", labels.parent / name, int(label), "test",
                             "FAKE" if int(label) else "REAL", Path(name).stem))
    return rows


# -- TrueFace ----------------------------------------------------------------------------------------------------

def load_trueface(root: Path, options: dict[str, str]) -> list[dict]:
    social = options.get("social", "pre").lower()
    seed = int(options.get("seed", 0))
    val = float(options.get("val", 0))
    if not 0 <= val < 0.7:
        raise DatasetError(f"TrueFace val={val}: a share of the images in [0, 0.7), taken from the train split.")
    platforms = ("pre", *TRUEFACE_PLATFORMS) if social == "all" else (social,)
    if any(p not in ("pre", *TRUEFACE_PLATFORMS) for p in platforms):
        raise DatasetError(f"TrueFace social={social!r}; allowed: pre, {', '.join(TRUEFACE_PLATFORMS)}, all.")
    base = root / "TrueFace" if (root / "TrueFace").is_dir() else root
    rows = []
    for platform in platforms:
        folder = base / "TrueFace_PreSocial" if platform == "pre" else _child(base / "TrueFace_PostSocial", platform)
        for kind, label in (("Real", 0), ("Fake", 1)):
            top = _child(folder, kind)
            for path in _files(top, IMAGE_SUFFIXES):
                rel = path.relative_to(top)
                method = rel.parts[0] if len(rel.parts) > 1 else kind
                group = f"{kind}/{rel.with_suffix('').as_posix()}"
                rows.append(_row(f"{platform}/{group}", path, label, _hash_split(group, seed, 0.7, val), method,
                                 group))
    return rows


def _child(folder: Path, name: str) -> Path:
    """The sub-folder of `folder` called `name`, ignoring case."""
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.lower() == name.lower():
                return child
    return folder / name


def _hash_split(key: str, seed: int, train_share: float, val_share: float = 0.0) -> str:
    """'train' for a seeded `train_share` of keys (its last `val_share` 'val'), else 'test' (stable across runs and
    machines)."""
    value = int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "big") / 2**64
    if value >= train_share:
        return "test"
    return "val" if value >= train_share - val_share else "train"


# -- DeepfakeBench -----------------------------------------------------------------------------------------------

def load_deepfakebench(root: Path, options: dict[str, str]) -> list[dict]:
    if not root.is_file():
        raise DatasetError(f"deepfakebench needs the JSON index file, got folder {str(root)!r}.")
    index = json.loads(root.read_text())
    compression = options.get("compression")
    rows = []
    for _dataset, by_label in index.items():
        for label_key, by_split in by_label.items():
            label = 0 if "real" in label_key.lower() else 1
            for split, level in by_split.items():
                for video, info in _videos(level, compression):
                    frames = info.get("frames") or []
                    if not frames:
                        continue
                    folder = Path(frames[0]).parent
                    folder = folder if folder.is_absolute() else root.parent / folder
                    rows.append(_row(f"{label_key}/{video}", folder, label, split, label_key, video))
    return rows


def _videos(level: dict, compression: str | None):
    """(video name, info) pairs below a split, looking through the optional compression level."""
    if level and all(isinstance(v, dict) and "frames" not in v for v in level.values()):
        for comp, videos in level.items():
            if compression is None or comp == compression:
                yield from videos.items()
    else:
        yield from level.items()


LOADERS: dict[str, Callable[[Path, dict[str, str]], list[dict]]] = {
    "ffpp": load_ffpp, "celebdf": load_celebdf, "dfdc": load_dfdc, "trueface": load_trueface,
    "deepfakebench": load_deepfakebench,
}
ALLOWED_OPTIONS = {"ffpp": {"compression", "methods", "splits"}, "celebdf": set(), "dfdc": set(),
                   "trueface": {"social", "seed", "val"}, "deepfakebench": {"compression"}}
