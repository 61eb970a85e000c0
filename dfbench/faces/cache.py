"""The face cache: what one run found and cut, kept for the next detector on the same suite and data.

Every run writes, per sample, the faces it found in each (cell, frame): a few kilobytes. With ``--keep-crops``
it also writes the crops it cut, for its detector's crop spec (about 150 KB per face at 224 px, 430 KB at 380 px).
A later run of any detector on the same data, suite, frames, face mode and finder reads them:

- the faces: it skips face finding, and still decodes and perturbs to cut crops with its own crop spec;
- the crops, when they were kept for the same crop spec (effb2, efficientnet_lite0, resnet68 and timm models
  share one): it skips decoding too and only runs its model.

Kept crops sit in a plain ``.npy`` file beside a small ``.npz`` index (owners, counts, sampled frames), and a
reader memory-maps them: a sample's crops are read from disk (or the page cache) only as its batches go to the
model, in the process that runs the model, with no copy on the way and no worker process involved.

Decoding, perturbing and finding are deterministic, so a run served from the cache scores exactly what it would
have scored without it; the run id does not change. The key holds everything that changes the pixels or the boxes:
the suite hash (cells, op versions, seed, frames, face mode), the finder's settings, the dfbench version, and each
sample's id, path, size and modification time (so a split or a --limit subset reuses the faces of a full run).
A file that cannot be read is ignored (recomputed).
Samples with a failed cell are never cached. Delete ``<cache>/faces`` to reclaim the space.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dfbench.faces.crop import CropSpec, Owner, SampleCrops
from dfbench.faces.finder import Face
from dfbench.hashing import stable_hash
from dfbench.version import __version__

log = logging.getLogger(__name__)
FORMAT = 3            # 2: crops in a memory-mapped .npy beside an .npz index; 3: faces may carry landmarks


class FaceCache:
    """Per-sample faces (always) and crops (``keep_crops``) under ``root/<key of data, suite and finder>/``."""

    def __init__(self, root: Path, suite_hash: str, finder: dict[str, object], keep_crops: bool = False) -> None:
        self.key = stable_hash({"format": FORMAT, "suite": suite_hash, "finder": finder,
                                "dfbench": __version__})
        self.folder = Path(root) / self.key
        self.keep_crops = keep_crops

    def faces(self, sample_id: str, path: Path, cells: list[str]) -> dict[Owner, list[Face]] | None:
        """The faces found in every sampled frame of `cells`, or None when the cache lacks any of the cells."""
        file = self._file(sample_id, path, "faces", ".json")
        try:
            data = json.loads(file.read_text()) if file.exists() else None
            if data is None or not set(cells) <= set(data["cells"]):
                return None
            return {(cell, int(index)): [_face(box) for box in boxes]
                    for cell, index, boxes in data["frames"] if cell in cells}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring unreadable face cache file %s (%s); finding the faces again.", file, exc)
            return None

    def crops(self, sample_id: str, path: Path, spec: CropSpec, cells: list[str]) -> SampleCrops | None:
        """The crops cut with `spec` for `cells`, or None when they were not kept for all of them.

        When every kept cell is wanted the crops come back memory-mapped (nothing is read until used);
        otherwise only the wanted ones are read."""
        file = self._file(sample_id, path, self._spec_folder(spec), ".npz")
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as index:
                if not set(cells) <= set(index["cells"].tolist()):
                    return None
                owner_cell, owner_index = index["owner_cell"], index["owner_index"]
                seen_cell, seen_index, seen_count = index["seen_cell"], index["seen_index"], index["seen_count"]
                indices = [int(i) for i in index["indices"]]
                pixels = file.with_name(str(index["pixels"]))
            images = np.load(pixels, mmap_mode="c", allow_pickle=False)
            if images.dtype != np.uint8 or images.shape[1:] != (spec.size, spec.size, 3) \
                    or len(images) != len(owner_cell):
                raise ValueError(f"{pixels.name} holds {images.dtype} {images.shape}, not {len(owner_cell)} crops")
            wanted = np.isin(owner_cell, cells)
            if not wanted.all():
                images = images[wanted]                    # a boolean index reads a copy
            owners = list(zip(owner_cell[wanted].tolist(), owner_index[wanted].tolist(), strict=True))
            keep_seen = np.isin(seen_cell, cells)
            seen = {(c, int(i)): int(n) for c, i, n in zip(seen_cell[keep_seen].tolist(),
                                                          seen_index[keep_seen].tolist(),
                                                          seen_count[keep_seen].tolist(), strict=True)}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("Ignoring unreadable crop cache file %s (%s); cutting the crops again.", file, exc)
            return None
        return SampleCrops(sample_id, tuple(cells), indices, images, owners, seen, {})

    def save(self, path: Path, gathered: SampleCrops, spec: CropSpec) -> None:
        """Keep the faces of a gathered sample (and its crops, with ``keep_crops``); a failed write only logs a
        warning.

        The crops go to a new ``.npy`` file first and the index that names it second, so a reader sees either the
        old pair or the new one, never a mix; the superseded ``.npy`` is removed after."""
        sample_id, cells, owners, seen = gathered.sample_id, list(gathered.cells), gathered.owners, gathered.seen
        frames = [[cell, index, [_row(f) for f in found]]
                  for (cell, index), found in sorted((gathered.faces or {}).items())]
        try:
            payload = json.dumps({"sample_id": sample_id, "cells": cells, "frames": frames}).encode()
            _atomic_write(self._file(sample_id, path, "faces", ".json"), lambda out: out.write(payload))
            if self.keep_crops:
                file = self._file(sample_id, path, self._spec_folder(spec), ".npz")
                pixels = file.with_name(f"{file.stem}-{secrets.token_hex(4)}.npy")
                images = np.ascontiguousarray(gathered.crops, dtype=np.uint8)
                _atomic_write(pixels, lambda out: np.save(out, images, allow_pickle=False))
                index = {"cells": np.array(cells), "pixels": np.array(pixels.name),
                         "indices": np.array(gathered.indices, dtype=np.int64),
                         "owner_cell": np.array([c for c, _ in owners], dtype=str),
                         "owner_index": np.array([i for _, i in owners], dtype=np.int64),
                         "seen_cell": np.array([c for c, _ in seen], dtype=str),
                         "seen_index": np.array([i for _, i in seen], dtype=np.int64),
                         "seen_count": np.array(list(seen.values()), dtype=np.int64)}
                _atomic_write(file, lambda out: np.savez(out, allow_pickle=False, **index))
                for old in file.parent.glob(f"{file.stem}-*.npy"):
                    if old != pixels:
                        old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("Could not write the face cache for %s (%s); the run goes on without it.", sample_id, exc)

    def _file(self, sample_id: str, path: Path, kind: str, suffix: str) -> Path:
        try:
            stat = path.stat()
            identity = [sample_id, str(path.resolve()), stat.st_size, stat.st_mtime_ns]
        except OSError:
            identity = [sample_id, str(path), -1, -1]
        return self.folder / kind / f"{stable_hash(identity)}{suffix}"

    @staticmethod
    def _spec_folder(spec: CropSpec) -> str:
        return f"crops-{spec.size}-{stable_hash(dataclasses.asdict(spec))}"


def _row(face: Face) -> list:
    """A face as JSON: its box and confidence, then its landmarks (or null) and five keypoints where it has them."""
    row: list = [face.x1, face.y1, face.x2, face.y2, face.confidence]
    if face.landmarks is not None or face.keypoints is not None:
        row.append(None if face.landmarks is None else [list(p) for p in face.landmarks])
    if face.keypoints is not None:
        row.append([list(p) for p in face.keypoints])
    return row


def _face(row: list) -> Face:
    def points(at: int) -> tuple[tuple[float, float], ...] | None:
        return tuple((float(x), float(y)) for x, y in row[at]) if len(row) > at and row[at] is not None else None

    x1, y1, x2, y2, confidence = (float(v) for v in row[:5])
    return Face(x1, y1, x2, y2, confidence, points(5), points(6))


def _atomic_write(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `target` with `write(handle)` through a temporary file and a rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
