"""The score store: atomic per-sample writes, resume bookkeeping, and one process per output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfbench.errors import StoreError
from dfbench.store import FolderLock, FrameRow, ScoreStore, TaskRow


def _store(tmp_path: Path) -> ScoreStore:
    store = ScoreStore(tmp_path / "scores.sqlite")
    row = {"sample_id": "a", "label": 0, "path": "/a", "split": "", "method": "", "group": ""}
    samples = pd.DataFrame([row])
    store.register_run("r1", {"x": 1}, {"identity": {}}, samples,
                       [{"cell": "none-0", "op": "none", "level": "0", "category": "clean", "op_version": 1}])
    return store


def test_a_sample_is_written_in_one_transaction_and_then_finished(tmp_path: Path):
    store = _store(tmp_path)
    frames = [FrameRow("a", "none-0", 0, "ok", 0.25, 1), FrameRow("a", "none-0", 5, "no_face", None, 0)]
    store.write_sample("r1", frames, [TaskRow("a", "none-0", "ok", "", 2, 0.1)])
    assert store.finished("r1") == {("a", "none-0")}
    frames = store.table("frames", "r1")
    assert frames["status"].tolist() == ["ok", "no_face"] and frames["score"].iloc[0] == 0.25
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path):
    store = _store(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - any error inside the transaction must roll it back
        store.write_sample("r1", [FrameRow("a", "none-0", 0, "ok", 0.5, 1)],
                           [TaskRow("a", "none-0", "ok", "", 1, object())])  # type: ignore[arg-type]
    assert store.finished("r1") == set() and store.table("frames", "r1").empty


def test_a_second_holder_of_the_folder_is_refused(tmp_path: Path):
    first = FolderLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StoreError, match="is in use by dfbench pid"):
            FolderLock(tmp_path).acquire()
        code = ("from pathlib import Path; from dfbench.store import FolderLock; "
                f"FolderLock(Path({str(tmp_path)!r})).acquire()")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode != 0 and "in use" in out.stderr
    finally:
        first.release()
    FolderLock(tmp_path).acquire()


def test_a_store_locked_while_another_process_sets_it_up_is_opened_once_the_lock_clears(tmp_path: Path,
                                                                                          monkeypatch):
    import sqlite3

    import dfbench.store as store_module

    real, calls = store_module._set_up, []

    def locked_twice(db):                   # what SQLite answers while the other process switches to WAL
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        real(db)

    monkeypatch.setattr(store_module, "_set_up", locked_twice)
    store = _store(tmp_path)
    assert len(calls) == 3 and store.finished("r1") == set()
    store.close()

    def broken(db):
        calls.append(1)
        raise sqlite3.DatabaseError("file is not a database")

    calls.clear()
    monkeypatch.setattr(store_module, "_set_up", broken)
    with pytest.raises(StoreError, match="file is not a database"):
        ScoreStore(tmp_path / "other.sqlite")
    assert len(calls) == 1                  # anything but a lock fails at once

    def always_locked(db):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store_module, "_set_up", always_locked)
    monkeypatch.setattr(ScoreStore, "OPEN_TIMEOUT", 0.05)
    with pytest.raises(StoreError, match="database is locked"):
        ScoreStore(tmp_path / "third.sqlite")
