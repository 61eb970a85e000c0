"""The score store: SQLite in WAL mode, one row per (run, sample, cell, frame).

A run's work unit is one sample (decoded once for every cell). All frame rows of a sample and one task
row per (sample, cell) are committed in a single transaction, so a run killed at any moment resumes
where it stopped: a (sample, cell) with a task row is finished and never recomputed, and nothing
committed is lost. A lock file keeps a second process out of an output folder that is in use.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dfbench.errors import DiskSpaceError, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL, config TEXT, provenance TEXT);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT, sample_id TEXT, label INTEGER, path TEXT, split TEXT, method TEXT, grp TEXT, extra TEXT,
    PRIMARY KEY (run_id, sample_id));
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT, cell TEXT, op TEXT, level TEXT, category TEXT, op_version INTEGER, position INTEGER,
    PRIMARY KEY (run_id, cell));
CREATE TABLE IF NOT EXISTS frames (
    run_id TEXT, sample_id TEXT, cell TEXT, frame INTEGER, status TEXT, score REAL, n_faces INTEGER, probs TEXT,
    PRIMARY KEY (run_id, sample_id, cell, frame));
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT, sample_id TEXT, cell TEXT, status TEXT, message TEXT, n_frames INTEGER, seconds REAL, seed INTEGER,
    PRIMARY KEY (run_id, sample_id, cell));
"""

STORE_NAME = "scores.sqlite"
SAMPLE_COLUMNS = ("sample_id", "path", "label", "split", "method", "group")   # the samples table's own columns
# Columns added after the first layout; older stores get them on open (ALTER TABLE ... ADD COLUMN).
ADDED_COLUMNS = {"frames": {"probs": "TEXT"}, "tasks": {"seed": "INTEGER"}, "samples": {"extra": "TEXT"}}


@dataclass(frozen=True)
class FrameRow:
    """One scored (or failed) frame. `score` is P(fake) or None; `status` is ``ok`` or why not; `probs` holds
    the class probabilities (JSON list) of detectors with more than two classes."""

    sample_id: str
    cell: str
    frame: int
    status: str
    score: float | None
    n_faces: int
    probs: str | None = None


@dataclass(frozen=True)
class TaskRow:
    """The outcome of one (sample, cell): ``ok`` or a failure status with its message, and the op's seed."""

    sample_id: str
    cell: str
    status: str
    message: str
    n_frames: int
    seconds: float
    seed: int = 0


class FolderLock:
    """An exclusive, non-blocking lock on an output folder; released when the process ends, even by a kill."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".dfbench.lock"
        self._fh: Any = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the lifetime of the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreError(f"Output folder {str(self.path.parent)!r} is in use by {holder}; wait for it to "
                             "finish or choose another --out.") from None
        fh.truncate(0)
        fh.write(f"dfbench pid {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _set_up(db: sqlite3.Connection) -> None:
    """WAL journal, the schema, and the columns later versions added."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    db.commit()


DAMAGED_HINT = ("If the file is damaged, move it away (keep it for the record) and run the same command again: "
                "the run starts over in that folder.")


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """StoreError unless SQLite's `quick_check` finds the file intact (pages, records, indexes; O(size))."""
    rows = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
    if rows != ["ok"]:
        found = " ".join(" ".join(rows).replace("*** in database main ***", "").split())[:160]
        raise StoreError(f"The score store {str(path)!r} is damaged (SQLite quick_check: {found}). {DAMAGED_HINT}")


class ScoreStore:
    """The SQLite score store of one output folder."""

    OPEN_TIMEOUT = 60.0     # seconds to wait for another process's lock, on open and on every write

    def __init__(self, path: Path, readonly: bool = False, checked: bool = False) -> None:
        """Open (or create) the store; `checked` skips `quick_check` (O(size)) where the caller just ran it."""
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise StoreError(f"No score store at {str(self.path)!r}.")
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        deadline, pause = time.monotonic() + self.OPEN_TIMEOUT, 0.01
        while True:
            db = None
            try:
                db = sqlite3.connect(uri, uri=True, timeout=self.OPEN_TIMEOUT)
                if not checked:
                    _check_intact(db, self.path)
                if not readonly:
                    _set_up(db)
                self.db = db
                return
            except StoreError:
                if db is not None:
                    db.close()
                raise
            except sqlite3.DatabaseError as exc:
                # Two processes setting up one store at once: SQLite answers "database is locked" at once, without
                # waiting, where waiting could deadlock (the journal-mode switch, a read lock upgraded for the
                # schema; see sqlite3_busy_handler), so the whole set-up is tried again until the deadline.
                if db is not None:
                    db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"Cannot open the score store {str(self.path)!r}: {exc}. {DAMAGED_HINT}") from None
                time.sleep(pause)
                pause = min(0.5, pause * 2)

    def close(self) -> None:
        self.db.close()

    # -- runs ----------------------------------------------------------------------------------------
    def register_run(self, run_id: str, config: dict, provenance: dict, samples: pd.DataFrame,
                     cells: Sequence[dict]) -> None:
        """Record a run's config, provenance, samples and cells (idempotent for the same run id)."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?)",
                            (run_id, time.time(), json.dumps(config, sort_keys=True), json.dumps(provenance)))
            extra = [c for c in samples.columns if c not in SAMPLE_COLUMNS]   # a manifest's own columns, as JSON
            self.db.executemany(
                "INSERT OR IGNORE INTO samples (run_id, sample_id, label, path, split, method, grp, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r["sample_id"], int(r["label"]), r["path"], r["split"], r["method"], r["group"],
                  json.dumps({c: r[c] for c in extra}) if extra else None)
                 for r in samples.to_dict("records")])
            self.db.executemany(
                "INSERT OR IGNORE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, c["cell"], c["op"], c["level"], c["category"], c["op_version"], i)
                 for i, c in enumerate(cells)])

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created")]

    def run_info(self, run_id: str) -> tuple[dict, dict]:
        row = self.db.execute("SELECT config, provenance FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"Run {run_id!r} is not in {str(self.path)!r}.")
        return json.loads(row[0]), json.loads(row[1])

    # -- work ----------------------------------------------------------------------------------------
    def finished(self, run_id: str) -> set[tuple[str, str]]:
        """The (sample_id, cell) pairs that are done (successfully or with a recorded failure)."""
        rows = self.db.execute("SELECT sample_id, cell FROM tasks WHERE run_id = ?", (run_id,))
        return {(s, c) for s, c in rows}

    def write_sample(self, run_id: str, frames: Iterable[FrameRow], tasks: Iterable[TaskRow]) -> None:
        """Commit one sample's frame and task rows atomically; a full disk stops the run (DiskSpaceError)."""
        try:
            self._write_sample(run_id, frames, tasks)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc) or "No space" in str(exc):
                raise DiskSpaceError(f"The disk of {str(self.path.parent)!r} is full ({exc}); free space, then run "
                                     "the same command again to resume.") from None
            raise

    def _write_sample(self, run_id: str, frames: Iterable[FrameRow], tasks: Iterable[TaskRow]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, f.sample_id, f.cell, f.frame, f.status, f.score, f.n_faces, f.probs) for f in frames])
            self.db.executemany(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, t.sample_id, t.cell, t.status, t.message, t.n_frames, t.seconds, t.seed) for t in tasks])

    # -- reading -------------------------------------------------------------------------------------
    def table(self, name: str, run_id: str) -> pd.DataFrame:
        """A table of the store restricted to one run, as a DataFrame."""
        if name not in ("samples", "cells", "frames", "tasks"):
            raise ValueError(name)
        return pd.read_sql_query(f"SELECT * FROM {name} WHERE run_id = ?", self.db, params=(run_id,))  # noqa: S608
