"""Dataset loaders: a folder with ``real/`` and ``fake/``, a CSV or Parquet manifest, and the demo set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from dfbench.data.manifest import Dataset, validate
from dfbench.errors import DatasetError, MissingFileError, UnknownNameError
from dfbench.registry import unknown_name
from dfbench.video.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MEDIA_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES


def scored_samples(dataset: Dataset, split: str | None, limit: int | None, notes: list[str]) -> Dataset:
    """The samples a run scores, one rule for `run` and `score`: `dataset`'s ``test`` split when it has splits and
    none is asked for, at most `limit` samples balanced by label; both classes must be there.

    Args:
        notes: what the user should know (skipped files, the split chosen) is appended here.
    """
    if dataset.skipped:
        notes.append(f"{len(dataset.skipped)} files in {dataset.name} are not samples and are skipped (e.g. "
                     f"{dataset.skipped[0]}); 'dfbench data check' lists them.")
    if split is None and dataset.has_splits:
        split = "test"
        notes.append(f"Scoring the 'test' split of {dataset.name} ({(dataset.table['split'] == 'test').sum()} "
                     "samples); pass --split to choose another.")
    dataset = dataset.select(split, limit)
    dataset.check_evaluable()
    return dataset


def load_dataset(spec: str, problems: list[str] | None = None) -> Dataset:
    """Load a test set: ``demo``, a manifest (``.csv``, ``.parquet``), a real/fake folder, or a layout spec such as
    ``ffpp:/data/FaceForensics++?compression=c23`` (see `dfbench.data.layouts`)."""
    if spec == "demo":
        from dfbench.data.demo import demo_dataset

        return demo_dataset()
    from dfbench.data.layouts import load_layout, parse_spec

    if parse_spec(spec) is not None:
        return load_layout(spec, problems)
    path = Path(spec).expanduser().absolute()   # rows hold absolute paths, whatever the working folder
    kind, colon, _ = spec.partition(":")
    if not path.exists() and colon and len(kind) > 1 and kind.isidentifier():   # kind:ROOT, not C:\ or a path
        from dfbench.data.layouts import LOADERS

        error = unknown_name("dataset layout", kind, LOADERS, "README.md, Your own test set")
        raise UnknownNameError(f"{error.args[0]} Or {spec!r} is a path that does not exist.")
    if not path.exists():
        raise MissingFileError(f"Dataset {spec!r} does not exist: give a folder with real/ and fake/, a .csv or "
                               ".parquet manifest, or 'demo'.")
    if path.is_dir():
        return load_folder(path, problems, name=spec)
    if path.suffix.lower() in (".csv", ".parquet", ".pq"):
        return load_manifest(path, problems, name=spec)
    raise DatasetError(f"Dataset {spec!r} is a file but not a .csv or .parquet manifest.")


def load_manifest(path: Path, problems: list[str] | None = None, name: str | None = None) -> Dataset:
    """Read a CSV or Parquet manifest; relative paths are taken from the manifest's folder.

    `name` is how the user wrote it (the run's identity holds it); default: `path`.
    """
    path = Path(path).absolute()
    try:
        table = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(
            path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DatasetError(f"Cannot read manifest {str(path)!r}: {exc}".splitlines()[0]) from None
    return validate(table, name or str(path), root=path.parent, problems=problems)


def load_folder(root: Path, problems: list[str] | None = None, name: str | None = None) -> Dataset:
    """A folder whose ``real/`` and ``fake/`` subfolders (searched recursively) hold the media.

    The sample id is the path below `root` without its suffix (``fake/clip_003``); files with other
    suffixes and hidden files are ignored. `name` is how the user wrote it; default: `root`.
    """
    name = name or str(root)
    root = Path(root).absolute()
    absent = [sub for sub in ("real", "fake") if not (root / sub).is_dir()]
    if absent:
        raise DatasetError(f"Folder {name!r} has no {absent[0]}/ subfolder; a dataset folder needs real/ "
                           "and fake/ (or pass a .csv manifest).")
    rows, skipped = [], []
    for label, sub in ((0, "real"), (1, "fake")):
        for file in sorted((root / sub).rglob("*")):
            rel = file.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or file.is_dir():
                continue
            if not file.is_file():
                skipped.append(f"{rel.as_posix()}: {'broken link' if file.is_symlink() else 'not a regular file'}")
            elif file.suffix.lower() not in MEDIA_SUFFIXES:
                skipped.append(f"{rel.as_posix()}: unsupported type {file.suffix.lower() or '(no suffix)'}")
            else:
                rows.append({"sample_id": rel.with_suffix("").as_posix(), "path": str(file), "label": label})
    dataset = validate(pd.DataFrame(rows, columns=["sample_id", "path", "label"]), name, root=root,
                       problems=problems)
    return dataclasses.replace(dataset, skipped=tuple(skipped), scans_root=True)
