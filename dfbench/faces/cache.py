"""The face cache: what one run found and cut, kept for the next detector on the same suite and data.

Every run writes, per sample, the faces it found in each (cell, frame): a few kilobytes. With ``--keep-crops``
it also writes the crops it cut, for its detector's crop spec (about 150 KB per face at 224 px, 430 KB at 380 px).
A later run of any detector on the same data, suite, frames, face mode and finder reads them:

- the faces: it skips face finding, and still decodes and perturbs to cut crops with its own crop spec;
- the crops, when they were kept for the same crop spec (effb2, efficientnet_lite0, resnet68 and timm models
  share one): it skips decoding too and only runs its model.

Decoding, perturbing and finding are deterministic, so a run served from the cache scores exactly what it would
have scored without it; the run id does not change. The key holds everything that changes the pixels or the boxes:
the suite hash (cells, op versions, seed, frames, face mode), the finder's settings, the dfbench version, and each
sample's id, path, size and modification time (so a split or a --limit subset reuses the faces of a full run).
A file that cannot be read is ignored (recomputed).
Samples with a failed cell are never cached. Delete ``<cache>/faces`` to reclaim the space.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

import dfbench
from dfbench.faces.crop import CropSpec
from dfbench.faces.finder import Face
from dfbench.provenance import stable_hash

log = logging.getLogger(__name__)
FORMAT = 1
Owner = tuple[str, int]            # (cell id, frame index)


class CachedCrops(NamedTuple):
    """The crops of one sample, in the shape `pipeline.collect_faces` returns them."""

    crops: np.ndarray               # N x size x size x 3 uint8
    owners: list[Owner]
    seen: dict[Owner, int]


class FaceCache:
    """Per-sample faces (always) and crops (``keep_crops``) under ``root/<key of data, suite and finder>/``."""

    def __init__(self, root: Path, suite_hash: str, finder: dict[str, object], keep_crops: bool = False) -> None:
        self.key = stable_hash({"format": FORMAT, "suite": suite_hash, "finder": finder,
                                "dfbench": dfbench.__version__})
        self.folder = Path(root) / self.key
        self.keep_crops = keep_crops

    def faces(self, sample_id: str, path: Path, cells: list[str]) -> dict[Owner, list[Face]] | None:
        """The faces found in every sampled frame of `cells`, or None when the cache lacks any of the cells."""
        file = self._file(sample_id, path, "faces", ".json")
        try:
            data = json.loads(file.read_text()) if file.exists() else None
            if data is None or not set(cells) <= set(data["cells"]):
                return None
            return {(cell, int(index)): [Face(*map(float, box)) for box in boxes]
                    for cell, index, boxes in data["frames"] if cell in cells}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring unreadable face cache file %s (%s); finding the faces again.", file, exc)
            return None

    def crops(self, sample_id: str, path: Path, spec: CropSpec, cells: list[str]) -> CachedCrops | None:
        """The crops cut with `spec` for `cells`, or None when they were not kept for all of them."""
        file = self._file(sample_id, path, self._spec_folder(spec), ".npz")
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as data:
                if not set(cells) <= set(data["cells"].tolist()):
                    return None
                wanted = np.isin(data["owner_cell"], cells)
                images = data["crops"][wanted]
                owners = list(zip(data["owner_cell"][wanted].tolist(), data["owner_index"][wanted].tolist(),
                                  strict=True))
                keep_seen = np.isin(data["seen_cell"], cells)
                seen = {(c, int(i)): int(n) for c, i, n in zip(data["seen_cell"][keep_seen].tolist(),
                                                              data["seen_index"][keep_seen].tolist(),
                                                              data["seen_count"][keep_seen].tolist(), strict=True)}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("Ignoring unreadable crop cache file %s (%s); cutting the crops again.", file, exc)
            return None
        return CachedCrops(images, owners, seen)

    def save(self, sample_id: str, path: Path, cells: list[str], faces: dict[Owner, list[Face]], spec: CropSpec,
             crops: np.ndarray, owners: list[Owner], seen: dict[Owner, int]) -> None:
        """Keep the faces of `cells` (and the crops, with ``keep_crops``); a failed write only logs a warning."""
        frames = [[cell, index, [[f.x1, f.y1, f.x2, f.y2, f.confidence] for f in found]]
                  for (cell, index), found in sorted(faces.items())]
        try:
            _atomic_write(self._file(sample_id, path, "faces", ".json"),
                          json.dumps({"sample_id": sample_id, "cells": cells, "frames": frames}).encode())
            if self.keep_crops:
                arrays = {"cells": np.array(cells), "crops": np.asarray(crops, dtype=np.uint8),
                          "owner_cell": np.array([c for c, _ in owners], dtype=str),
                          "owner_index": np.array([i for _, i in owners], dtype=np.int64),
                          "seen_cell": np.array([c for c, _ in seen], dtype=str),
                          "seen_index": np.array([i for _, i in seen], dtype=np.int64),
                          "seen_count": np.array(list(seen.values()), dtype=np.int64)}
                _atomic_write(self._file(sample_id, path, self._spec_folder(spec), ".npz"), _npz_bytes(arrays))
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


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)      # uncompressed: zlib gains little on face crops and costs a core
    return buffer.getvalue()


def _atomic_write(target: Path, payload: bytes) -> None:
    """Write `payload` to `target` through a temporary file and a rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
