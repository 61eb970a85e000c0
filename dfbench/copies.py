"""`dfbench perturb`: the full perturbed copy of a test set for every cell, written to disk.

Copies go to ``OUT/<op>-<level>/<path relative to the dataset>``, with a ``manifest.csv`` per cell that
keeps sample ids, labels and splits, so a copy can be scored as a dataset of its own. Scoring a copy
with the ``clean`` suite gives the same frames, and so the same scores, as the in-process cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfbench.cluster import backend_for
from dfbench.config import SuiteConfig, check_backend, load_suite
from dfbench.data import Dataset, load_dataset
from dfbench.data.manifest import OPTIONAL, REQUIRED
from dfbench.errors import ConfigError, MediaError
from dfbench.outputs import prepare_folder
from dfbench.paths import inside, overlap, safe_part
from dfbench.video.engine import CellPlan, copy_path, write_copies
from dfbench.video.probe import media_of, probe_video

MANIFEST_COLUMNS = [*REQUIRED, *OPTIONAL]


@dataclass
class CopyReport:
    """What `write_dataset_copies` wrote."""

    n_samples: int
    n_cells: int
    n_files: int
    manifest: str
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()       # adversarial cells: made per detector at scoring time, no copy to write


def write_dataset_copies(suite_name: str, dataset_spec: str, out: Path, split: str | None = None,
                         limit: int | None = None, on_progress: Callable[[int, int], None] | None = None,
                         backend: str = "local", address: str | None = None) -> CopyReport:
    """Write every cell's copy of every sample; failures are reported per (sample, cell), not raised.

    With ``backend="ray"`` each sample's copies are written by a Ray task (`dfbench.cluster.RayBackend.map`)
    on any node: `out` and the dataset must be at the same paths on every node."""
    check_backend(backend, address)
    suite = load_suite(suite_name)
    skipped = tuple(c.id for c in suite.cells if c.attack is not None)
    suite = dataclasses.replace(suite, cells=tuple(c for c in suite.cells if c.attack is None))
    dataset = load_dataset(dataset_spec).select(split, limit)
    dataset.check_evaluable()
    for media, paths in dataset.media_groups().items():
        if media == "frames":
            raise ConfigError(f"dfbench perturb does not write copies of frame folders yet ({Path(paths[0]).name!r} "
                              "and others); score them in process with dfbench run.")
        suite.check_media(media, Path(paths[0]).name, len(paths))
    out = Path(out)
    check_apart(out, dataset)
    prepare_folder(out, "--out")
    folders = {c.id: safe_part(c.id) for c in suite.cells}
    rows: dict[str, list[dict]] = {c.id: [] for c in suite.cells}
    report = CopyReport(len(dataset), len(suite.cells), 0, str(out / "<cell>" / "manifest.csv"), skipped=skipped)
    calls = [(suite, sample._asdict(), dataset.relative_path(sample.sample_id, sample.path), out.resolve(), folders)
             for sample in dataset.table.itertuples()]
    ray = backend_for(backend, address)
    with ray or contextlib.nullcontext():
        copied = ray.map(copy_sample, calls) if ray else (copy_sample(*call) for call in calls)
        for done, (sample_rows, errors) in enumerate(copied, start=1):
            report.errors.update(errors)
            for cell_id, row in sample_rows.items():
                rows[cell_id].append(row)
                report.n_files += 1
            if on_progress:
                on_progress(done, len(dataset))
    order = {sample_id: i for i, sample_id in enumerate(dataset.table["sample_id"])}   # the dataset's order
    for cell_id, cell_rows in rows.items():
        (out / folders[cell_id]).mkdir(parents=True, exist_ok=True)
        cell_rows.sort(key=lambda row: order[row["sample_id"]])
        pd.DataFrame(cell_rows, columns=[*MANIFEST_COLUMNS, "cell"]).to_csv(
            out / folders[cell_id] / "manifest.csv", index=False)
    pd.DataFrame({"folder": list(folders.values()), "cell": list(folders)}).to_csv(out / "cells.csv", index=False)
    return report


def copy_sample(suite: SuiteConfig, sample: dict, rel: Path, out: Path,
                folders: dict[str, str]) -> tuple[dict[str, dict], dict[tuple[str, str], str]]:
    """Write one sample's copy for every cell of `suite`: its manifest row per cell written, and its failures
    per (sample, cell)."""
    sample_id = sample["sample_id"]
    media = media_of(sample["path"])
    plans = [CellPlan(c.id, c.steps(suite.seed, sample_id)) for c in suite.cells]
    destinations = {p.cell_id: inside(out, Path(folders[p.cell_id]) / copy_path(rel, p, media)) for p in plans}
    try:
        fps = probe_video(Path(sample["path"])).fps
    except MediaError as exc:
        return {}, {(sample_id, c.id): str(exc) for c in suite.cells}
    errors = write_copies(Path(sample["path"]), plans, destinations, workdir=None, media=media, fps=fps)
    rows = {}
    for cell in suite.cells:
        if cell.id in errors:
            continue
        dest = destinations[cell.id].relative_to((out / folders[cell.id]).resolve())
        rows[cell.id] = {"sample_id": sample_id, "path": dest.as_posix(), "label": sample["label"],
                         "split": sample["split"], "method": sample["method"], "group": sample["group"],
                         "cell": cell.id}
    return rows, {(sample_id, cell_id): message for cell_id, message in errors.items()}


def check_apart(out: Path, dataset: Dataset) -> None:
    """Refuse an output folder inside the dataset's folder, or a dataset inside the output folder: the copies
    would join the dataset (the next run would count them as samples, under labels their paths suggest)."""
    roots = [dataset.root] if dataset.root is not None and dataset.scans_root else []
    roots += [Path(p).parent for p in dataset.table["path"]]
    real_out = Path(os.path.realpath(out))
    for folder in dict.fromkeys(roots):
        if overlap(real_out, folder):
            where = "inside the dataset" if real_out.is_relative_to(os.path.realpath(folder)) else (
                "around files of the dataset")
            raise ConfigError(f"--out {str(out)!r} lies {where} ({str(folder)!r}); the copies would become part "
                              "of it. Choose an output folder outside the dataset.")
