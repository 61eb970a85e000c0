"""A test set is a table: ``sample_id``, ``path``, ``label`` (0 real, 1 fake), optional ``split``, ``method``,
``group``. Everything is validated before any work starts; each problem is one line naming the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dfbench.errors import DatasetError
from dfbench.paths import safe_relative, sample_id_problem

REQUIRED = ("sample_id", "path", "label")
# The split names `--calibrate-on val` takes as the validation split, in this order (FF++'s is ``val``).
VALIDATION_SPLITS = ("val", "validation", "valid", "dev")
OPTIONAL = ("split", "method", "group")
LABEL_NAMES = {0: "real", 1: "fake"}


@dataclass(frozen=True)
class Dataset:
    """A validated test set.

    Attributes:
        name: how the user named it (folder, manifest path, or ``demo``).
        table: one row per sample with columns `REQUIRED` + `OPTIONAL`, then any other column of the manifest (as
            text); ``path`` is absolute.
        root: the folder that relative paths are taken from (written copies mirror paths below it).
        skipped: files of a dataset folder that are not samples, each as ``<path>: <why>`` (unsupported
            type, broken link); `dfbench data check` lists them and `dfbench run` notes their count.
        scans_root: every media file below `root` would be a sample (a real/fake folder, a layout), so an
            output folder there would join the dataset.
    """

    name: str
    table: pd.DataFrame
    root: Path | None = None
    skipped: tuple[str, ...] = ()
    scans_root: bool = False

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_splits(self) -> bool:
        """Whether any sample carries a split name."""
        return bool((self.table["split"] != "").any())

    def select(self, split: str | None, limit: int | None = None) -> Dataset:
        """The samples of one split (None: every sample), at most `limit` of them, balanced by label."""
        table = self.table
        if split is not None:
            known = sorted(set(table["split"]) - {""})
            if split not in known:
                raise DatasetError(f"Dataset {self.name!r} has no split {split!r}; its splits: "
                                   f"{', '.join(known) or 'none'}.")
            table = table[table["split"] == split]
        if limit is not None:
            # Interleave the labels so a small limit still holds both classes.
            table = table.assign(_rank=table.groupby("label").cumcount()).sort_values(
                ["_rank", "label"], kind="stable").head(limit).drop(columns="_rank")
            table = table.sort_index()
        name = self.name if split is None else f"{self.name}:{split}"
        return dataclasses.replace(self, name=name, table=table.reset_index(drop=True))

    def validation_split(self, choice: str, scored: str | None) -> str:
        """The split that ``--calibrate-on`` names: ``val`` takes the first of `VALIDATION_SPLITS` the dataset
        has, ``split:NAME`` the split NAME; it may not be the `scored` one.

        Raises:
            DatasetError: the dataset has no such split, or it is the split being scored.
        """
        known = sorted(set(self.table["split"]) - {""})
        if choice.startswith("split:"):
            name: str | None = choice[len("split:"):]
        elif choice == "val":
            name = next((n for n in VALIDATION_SPLITS if n in known), None)
        else:
            raise DatasetError(f"--calibrate-on {choice!r}: use clean, val or split:NAME.")
        if name is None or name not in known:
            wanted = f"split named {name!r}" if choice.startswith("split:") else \
                f"validation split (named {', '.join(VALIDATION_SPLITS)})"
            raise DatasetError(f"Dataset {self.name!r} has no {wanted}; its splits: {', '.join(known) or 'none'}. "
                               "--calibrate-on needs one: the ffpp layout's val.json, a manifest's split column, "
                               "trueface:ROOT?val=0.1; or calibrate on the clean cell (--calibrate-on clean).")
        if name == scored:
            raise DatasetError(f"--calibrate-on {choice!r} names the split being scored ({name!r}); a threshold "
                               "found on the scored samples is --calibrate-on clean.")
        return name

    def relative_path(self, sample_id: str, path: str) -> Path:
        """Where a sample lives below the dataset root; the sample id plus suffix when it is elsewhere.

        Either way a relative path without '..' whose every part fits a file name (`paths.safe_relative`).
        """
        if self.root is not None:
            try:
                return safe_relative(Path(path).relative_to(Path(self.root).resolve()))
            except ValueError:
                pass
        return safe_relative(sample_id + Path(path).suffix)

    def media_groups(self) -> dict[str, list[str]]:
        """Sample paths per medium (``video``, ``image``), decided by file suffix."""
        from dfbench.video.probe import media_of

        groups: dict[str, list[str]] = {}
        for path in self.table["path"]:
            groups.setdefault(media_of(path), []).append(path)
        return groups

    def check_evaluable(self) -> None:
        """Raise unless the set holds at least one real and one fake sample (AUC needs both)."""
        if len(self.table) == 0:
            raise DatasetError(f"Dataset {self.name!r} has no samples.")
        counts = self.table["label"].value_counts()
        for label in LABEL_NAMES:
            if counts.get(label, 0) == 0:
                other = LABEL_NAMES[1 - label]
                raise DatasetError(f"Dataset {self.name!r} has only {other} samples ({len(self.table)}); "
                                   f"metrics need both real and fake.")

    @property
    def hash(self) -> str:
        """sha256 over (sample_id, label, file size) rows, first 16 hex digits: identifies the test set."""
        digest = hashlib.sha256()
        for sid, label, path in zip(self.table["sample_id"], self.table["label"], self.table["path"], strict=True):
            size = Path(path).stat().st_size if Path(path).exists() else -1
            digest.update(f"{sid}\t{label}\t{size}\n".encode())
        return digest.hexdigest()[:16]


def validate(table: pd.DataFrame, name: str, root: Path | None = None, problems: list[str] | None = None) -> Dataset:
    """Check a manifest table and return a Dataset; `root` resolves relative paths.

    Args:
        problems: when given, row-level problems (duplicate id, bad label, missing file) are appended here
            and their rows dropped, instead of raising on the first one (`dfbench data check`).

    Raises:
        DatasetError: a required column is missing, a sample id repeats, a label is not 0/1,
            a file is missing, or the table is empty.
    """
    table = table.rename(columns=str)
    missing_cols = [c for c in REQUIRED if c not in table.columns]
    if missing_cols:
        raise DatasetError(f"Manifest {name!r} lacks column {missing_cols[0]!r}; required: {', '.join(REQUIRED)}.")
    if len(table) == 0:
        raise DatasetError(f"Dataset {name!r} has no samples.")
    table = table.copy()
    for col in OPTIONAL:
        table[col] = table[col].fillna("").astype(str) if col in table.columns else ""
    table["sample_id"] = table["sample_id"].astype(str)
    bad_ids = [(sid, why) for sid in table["sample_id"] if (why := sample_id_problem(sid))]
    for sample_id, why in bad_ids:
        _problem(f"Sample id {sample_id!r} in {name!r} {why}; sample ids name the files dfbench writes below "
                 "--out, so they must be relative paths without empty, '.' or '..' parts.", problems)
    if bad_ids:
        table = table[~table["sample_id"].isin({sid for sid, _ in bad_ids})]
    for sample_id in table["sample_id"][table["sample_id"].duplicated()].unique():
        rows = [i + 2 for i in table.index[table["sample_id"] == sample_id][:2]]
        _problem(f"Duplicate sample_id {sample_id!r} in {name!r} (rows {rows[0]} and {rows[1]}).", problems)
    if problems is not None:
        table = table[~table["sample_id"].duplicated(keep=False)]
    keep, labels, paths = [], [], []
    for index, (sid, label, path) in enumerate(zip(table["sample_id"], table["label"], table["path"], strict=True)):
        try:
            parsed = _parse_label(label, sid, name), _resolve(path, sid, name, root)
        except DatasetError as exc:
            _problem(str(exc), problems)
            continue
        labels.append(parsed[0])
        paths.append(parsed[1])
        keep.append(index)
    table = table.iloc[keep].assign(label=labels, path=paths)
    extra = [c for c in table.columns if c not in REQUIRED + OPTIONAL]
    for column in extra:   # a manifest's own columns (a subgroup attribute), as text; `--by COLUMN` reads them
        table[column] = table[column].fillna("").astype(str)
    return Dataset(name, table[[*REQUIRED, *OPTIONAL, *extra]].reset_index(drop=True), root)


def _problem(message: str, problems: list[str] | None) -> None:
    if problems is None:
        raise DatasetError(message)
    problems.append(message)


def _parse_label(value: object, sample_id: str, name: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if number not in (0.0, 1.0):
        raise DatasetError(f"Label {value!r} of sample {sample_id!r} in {name!r} is not 0 (real) or 1 (fake).")
    return int(number)


def _resolve(value: object, sample_id: str, name: str, root: Path | None) -> str:
    text = "" if pd.isna(value) else str(value)
    if not text:
        raise DatasetError(f"Sample {sample_id!r} in {name!r} has an empty path.")
    path = Path(text).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    try:
        if not path.is_file() and not path.is_dir():
            kind = "is not a regular file (a device, pipe or socket)" if path.exists() else "does not exist"
            raise DatasetError(f"File {_short(str(path))!r} of sample {_short(sample_id)!r} {kind}.")
        return str(path.resolve())
    except (OSError, RuntimeError) as exc:   # a name too long, a link loop
        raise DatasetError(f"File {_short(str(path))!r} of sample {_short(sample_id)!r} cannot be used: "
                           f"{getattr(exc, 'strerror', None) or exc}.") from None


def _short(text: str, keep: int = 120) -> str:
    """`text` cut to `keep` characters with its length said, so that one line stays one readable line."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"
