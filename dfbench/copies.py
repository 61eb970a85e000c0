"""`dfbench perturb`: the full perturbed copy of a test set for every cell, written to disk.

Copies go to ``OUT/<op>-<level>/<path relative to the dataset>``, with a ``manifest.csv`` per cell that
keeps sample ids, labels and splits, so a copy can be scored as a dataset of its own. Scoring a copy
with the ``clean`` suite gives the same frames, and so the same scores, as the in-process cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfbench.config import load_suite
from dfbench.data import load_dataset
from dfbench.errors import ConfigError, MediaError
from dfbench.video.engine import CellPlan, copy_path, write_copies
from dfbench.video.probe import media_of, probe_video


@dataclass
class CopyReport:
    """What `write_dataset_copies` wrote."""

    n_samples: int
    n_cells: int
    n_files: int
    manifest: str
    errors: dict[tuple[str, str], str] = field(default_factory=dict)


def write_dataset_copies(suite_name: str, dataset_spec: str, out: Path, split: str | None = None,
                         limit: int | None = None,
                         on_progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Write every cell's copy of every sample; failures are reported per (sample, cell), not raised."""
    suite = load_suite(suite_name)
    dataset = load_dataset(dataset_spec).select(split, limit)
    dataset.check_evaluable()
    for media, paths in dataset.media_groups().items():
        if media == "frames":
            raise ConfigError(f"dfbench perturb does not write copies of frame folders yet ({Path(paths[0]).name!r} "
                              "and others); score them in process with dfbench run.")
        suite.check_media(media, Path(paths[0]).name, len(paths))
    out = Path(out)
    rows: dict[str, list[dict]] = {c.id: [] for c in suite.cells}
    report = CopyReport(len(dataset), len(suite.cells), 0, str(out / "<cell>" / "manifest.csv"))
    for done, sample in enumerate(dataset.table.itertuples(), start=1):
        rel = dataset.relative_path(sample.sample_id, sample.path)
        media = media_of(sample.path)
        plans = [CellPlan(c.id, c.steps(suite.seed, sample.sample_id)) for c in suite.cells]
        destinations = {p.cell_id: out / p.cell_id / copy_path(rel, p, media) for p in plans}
        try:
            fps = probe_video(Path(sample.path)).fps
        except MediaError as exc:
            report.errors.update({(sample.sample_id, c.id): str(exc) for c in suite.cells})
            continue
        errors = write_copies(Path(sample.path), plans, destinations, workdir=None, media=media, fps=fps)
        for cell in suite.cells:
            if cell.id in errors:
                report.errors[(sample.sample_id, cell.id)] = errors[cell.id]
                continue
            report.n_files += 1
            dest = destinations[cell.id].relative_to(out / cell.id)
            rows[cell.id].append({"sample_id": sample.sample_id, "path": dest.as_posix(), "label": sample.label,
                                  "split": sample.split, "method": sample.method, "group": sample.group})
        if on_progress:
            on_progress(done, len(dataset))
    for cell_id, cell_rows in rows.items():
        (out / cell_id).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(cell_rows, columns=["sample_id", "path", "label", "split", "method", "group"]).to_csv(
            out / cell_id / "manifest.csv", index=False)
    return report
