"""Manifests and dataset folders are validated before any work, each problem in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dfbench.data import load_dataset
from dfbench.errors import DatasetError, MissingFileError


def _files(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")


def _manifest(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_folder_with_real_and_fake_subfolders(tmp_path: Path):
    _files(tmp_path, ["real/a.mp4", "real/sub/b.mp4", "fake/a.mp4", "fake/notes.txt", "fake/.hidden.mp4"])
    ds = load_dataset(str(tmp_path))
    assert sorted(ds.table["sample_id"]) == ["fake/a", "real/a", "real/sub/b"]
    labels = dict(zip(ds.table["sample_id"], ds.table["label"], strict=True))
    assert labels == {"fake/a": 1, "real/a": 0, "real/sub/b": 0}


def test_folder_without_fake_subfolder_is_an_error(tmp_path: Path):
    _files(tmp_path, ["real/a.mp4"])
    with pytest.raises(DatasetError, match="has no fake/ subfolder"):
        load_dataset(str(tmp_path))


def test_csv_manifest_resolves_relative_paths_and_keeps_splits(tmp_path: Path):
    _files(tmp_path, ["v/1.mp4", "v/2.mp4"])
    spec = _manifest(tmp_path, [{"sample_id": "a", "path": "v/1.mp4", "label": 0, "split": "test"},
                                {"sample_id": "b", "path": "v/2.mp4", "label": 1, "split": "train"}])
    ds = load_dataset(spec)
    assert ds.has_splits and Path(ds.table["path"][0]).is_absolute()
    assert list(ds.select("test").table["sample_id"]) == ["a"]


def test_parquet_manifest(tmp_path: Path):
    _files(tmp_path, ["1.mp4", "2.mp4"])
    path = tmp_path / "m.parquet"
    pd.DataFrame([{"sample_id": "a", "path": "1.mp4", "label": 0},
                  {"sample_id": "b", "path": "2.mp4", "label": 1}]).to_parquet(path)
    assert len(load_dataset(str(path))) == 2


@pytest.mark.parametrize("rows,message", [
    ([{"sample_id": "a", "path": "1.mp4", "label": 0}, {"sample_id": "a", "path": "2.mp4", "label": 1}],
     "Duplicate sample_id 'a'"),
    ([{"sample_id": "a", "path": "1.mp4", "label": 2}], "Label '2' of sample 'a'.*not 0 .real. or 1 .fake."),
    ([{"sample_id": "a", "path": "missing.mp4", "label": 0}], "File '.*missing.mp4' of sample 'a' does not exist"),
])
def test_manifest_problems_are_named(tmp_path: Path, rows: list[dict], message: str):
    _files(tmp_path, ["1.mp4", "2.mp4"])
    with pytest.raises(DatasetError, match=message):
        load_dataset(_manifest(tmp_path, rows))


def test_empty_manifest_and_one_class_set_are_errors(tmp_path: Path):
    (tmp_path / "e.csv").write_text("sample_id,path,label\n")
    with pytest.raises(DatasetError, match="has no samples"):
        load_dataset(str(tmp_path / "e.csv"))
    _files(tmp_path, ["1.mp4"])
    ds = load_dataset(_manifest(tmp_path, [{"sample_id": "a", "path": "1.mp4", "label": 1}]))
    with pytest.raises(DatasetError, match="has only fake samples"):
        ds.check_evaluable()


def test_missing_dataset_path_is_a_file_error(tmp_path: Path):
    with pytest.raises(MissingFileError, match="does not exist"):
        load_dataset(str(tmp_path / "nope"))


def test_limit_keeps_both_labels(tmp_path: Path):
    _files(tmp_path, [f"real/{i}.mp4" for i in range(5)] + [f"fake/{i}.mp4" for i in range(5)])
    ds = load_dataset(str(tmp_path)).select(None, limit=2)
    assert sorted(ds.table["label"]) == [0, 1]
