"""Nothing lost, nothing crashes: kills at random moments, Ctrl-C, ffmpeg dying, NaN scores, full disks.

`make test` runs Ctrl-C, too little free disk, NaN scores and concurrent writers; the kill tests (3 and 20
SIGKILLs at random points of the run's progress), SIGTERM, a full disk, ffmpeg dying, the work-file limit and the
repeat run are marked ``slow`` and run with ``make test-slow`` (both in ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dfbench.pipeline as pipeline
from dfbench.api import run
from dfbench.config import RunConfig
from dfbench.errors import DiskSpaceError

CELLS = 13


def _args(demo: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dfbench", "run", "--detector", "effb2", "--weights", "random", "--frames", "1",
            "--dataset", str(demo / "manifest.csv"), "--split", "train", "--device", "cpu", "--precision", "fp32",
            "--out", str(out), *extra]


def _frames(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        return pd.read_sql_query("SELECT sample_id, cell, frame, status, score FROM frames ORDER BY 1, 2, 3", con)


def _tasks(db: Path) -> set[tuple[int, str, str]]:
    """The task rows of a store, or none while the run has not created the store or its tables yet."""
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db) as con:
            return set(con.execute("SELECT rowid, sample_id, cell FROM tasks").fetchall())
    except sqlite3.OperationalError as exc:   # the run is creating the file: no table yet, or the schema locked
        if "no such table" in str(exc) or "locked" in str(exc):
            return set()
        raise


@pytest.fixture(scope="module")
def reference(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """An uninterrupted run: the rows every interrupted run must end up with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_args(small_demo, out), check=True, stdout=subprocess.DEVNULL, timeout=900)
    return _frames(out / "scores.sqlite")


@pytest.mark.slow
def test_same_command_twice_gives_identical_scores(small_demo: Path, reference: pd.DataFrame, tmp_path: Path):
    subprocess.run(_args(small_demo, tmp_path / "again"), check=True, stdout=subprocess.DEVNULL, timeout=900)
    pd.testing.assert_frame_equal(_frames(tmp_path / "again" / "scores.sqlite"), reference, check_exact=True)
    with sqlite3.connect(tmp_path / "again" / "scores.sqlite") as con:
        seeds = con.execute("SELECT COUNT(DISTINCT seed) FROM tasks WHERE cell = 'noise_t-20'").fetchone()[0]
    assert seeds == 6  # one derived seed per sample for the stochastic op, recorded


def _wait_for_rows(proc: subprocess.Popen, db: Path, rows: int, seconds: float) -> None:
    """Return once the store holds `rows` task rows, `seconds` have passed or `proc` has exited."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline and len(_tasks(db)) < rows:
        time.sleep(0.02)


def _kill_trials(demo: Path, reference: pd.DataFrame, out: Path, trials: int, seed: int) -> dict[str, int]:
    """Start, SIGKILL at a random moment and resume, `trials` times; then finish and compare with `reference`.

    The moment follows the run's own progress, not a wall-clock guess, so a faster or slower machine still kills
    mid-run: each trial draws how many more samples to let the run commit (a sample's cells are committed
    together, `CELLS` task rows), then kills at a random moment of the next one (at the latest when it commits).
    """
    rng = np.random.default_rng(seed)
    db = out / "scores.sqlite"
    kills = rewritten = 0
    for _ in range(trials):
        before = _tasks(db)
        committed = int(rng.integers(len(before) // CELLS, 6)) * CELLS
        proc = subprocess.Popen(_args(demo, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_rows(proc, db, committed, 600.0)
        _wait_for_rows(proc, db, committed + 1, float(rng.uniform(0.2, 4.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=120)
        rewritten += len(before - _tasks(db))
        if len(_tasks(db)) == 6 * CELLS:
            shutil.rmtree(out)  # killed after the last commit: start over so every trial interrupts real work
    subprocess.run(_args(demo, out), check=True, stdout=subprocess.DEVNULL, timeout=900)
    final, frames = _tasks(db), _frames(db)
    merged = frames.merge(reference, on=["sample_id", "cell", "frame"], how="outer", suffixes=("", "_ref"),
                          indicator=True)
    both = merged["_merge"] == "both"
    changed = both & (merged["score"].fillna(-1) != merged["score_ref"].fillna(-1))
    report = {"trials": trials, "kills": kills, "rewritten": rewritten,
              "duplicates": len(final) - len({(s, c) for _, s, c in final}),
              "lost": int((merged["_merge"] == "right_only").sum()),
              "extra": int((merged["_merge"] == "left_only").sum()), "changed": int(changed.sum())}
    print(f"\nkill trials: {report}")
    return report


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_recomputes_nothing(small_demo: Path, reference: pd.DataFrame,
                                                                 tmp_path: Path):
    report = _kill_trials(small_demo, reference, tmp_path / "killed", trials=3, seed=2026)
    assert report["kills"] == 3
    assert report["rewritten"] == report["duplicates"] == report["lost"] == report["extra"] == report["changed"] == 0
    pd.testing.assert_frame_equal(_frames(tmp_path / "killed" / "scores.sqlite"), reference, check_exact=True)


@pytest.mark.slow
def test_twenty_kills_at_random_moments_lose_and_recompute_nothing(small_demo: Path, reference: pd.DataFrame,
                                                                   tmp_path: Path):
    report = _kill_trials(small_demo, reference, tmp_path / "killed", trials=20, seed=7)
    assert report["kills"] == 20
    assert report["rewritten"] == report["duplicates"] == report["lost"] == report["extra"] == report["changed"] == 0


def _ffmpeg_processes_under(folder: Path) -> list[int]:
    """Pids of live ffmpeg processes whose command line names a path below `folder`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ffmpeg" in cmdline and str(folder) in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow   # three runs of 13 cells; in make test-slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_says_where_to_resume_and_the_resumed_run_completes(
        small_demo: Path, reference: pd.DataFrame, tmp_path: Path, signum: int, code: int):
    out = tmp_path / "interrupted"
    # No race with the run: its second sample's ffmpeg waits for a gate that opens only after the signal is sent,
    # so the run is always stopped inside that sample, after the first sample's rows are committed (what the loop
    # waits for). (The gate must open: a signal reaches Python code only when the frame reader's blocking read
    # returns, and the signal goes to dfbench alone, not to its ffmpeg as a terminal's Ctrl-C would.)
    script = _fake_ffmpeg(tmp_path, f'case "$*" in *fake/clip_000*) while [ ! -e "{tmp_path}/gate" ]; do sleep 0.05; '
                                    'done ;; esac')
    # A background shell starts children with SIGINT ignored; give the run the default disposition a terminal has.
    proc = subprocess.Popen(_args(small_demo, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DFBENCH_FFMPEG": str(script)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and len(_tasks(out / "scores.sqlite")) < CELLS and proc.poll() is None:
        time.sleep(0.2)
    assert len(_tasks(out / "scores.sqlite")) == CELLS and proc.poll() is None   # one sample done, the next held
    proc.send_signal(signum)
    time.sleep(0.5)
    (tmp_path / "gate").touch()
    _, err = proc.communicate(timeout=120)
    flat = " ".join(err.split())
    assert proc.returncode == code and "Run the same command again to resume" in flat and "Traceback" not in err
    assert not (out / ".work").exists() and _ffmpeg_processes_under(out) == []
    subprocess.run(_args(small_demo, out), check=True, stdout=subprocess.DEVNULL, timeout=900)
    pd.testing.assert_frame_equal(_frames(out / "scores.sqlite"), reference, check_exact=True)


def _fake_ffmpeg(tmp_path: Path, body: str) -> Path:
    from dfbench.video.ffmpeg import ffmpeg_exe

    script = tmp_path / "ffmpeg"
    script.write_text(f"#!/bin/sh\nREAL='{ffmpeg_exe()}'\n{body}\nexec \"$REAL\" \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.slow
def test_ffmpeg_dying_on_one_sample_is_a_status_and_the_run_completes(small_demo: Path, tmp_path: Path):
    script = _fake_ffmpeg(tmp_path, 'case "$*" in *real/clip_001*) kill -9 $$ ;; esac')
    env = {**os.environ, "DFBENCH_FFMPEG": str(script)}
    out = tmp_path / "run"
    result = subprocess.run(_args(small_demo, out), env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(out / "scores.sqlite") as con:
        statuses = dict(con.execute("SELECT sample_id, GROUP_CONCAT(DISTINCT status) FROM tasks GROUP BY 1"))
    assert statuses.pop("real/clip_001") == "ffmpeg_error"
    assert set(statuses.values()) == {"ok"}


@pytest.mark.slow
def test_a_full_disk_stops_cleanly_and_the_run_resumes(small_demo: Path, reference: pd.DataFrame, tmp_path: Path):
    script = _fake_ffmpeg(tmp_path, 'case "$*" in *libx264*) echo "Error: No space left on device" >&2; exit 1 ;; esac')
    out = tmp_path / "run"
    env = {**os.environ, "DFBENCH_FFMPEG": str(script)}
    result = subprocess.run(_args(small_demo, out), env=env, capture_output=True, text=True, timeout=900)
    flat = " ".join(result.stderr.split())
    assert result.returncode == 1 and "disk is full" in flat and "Traceback" not in result.stderr
    assert _tasks(out / "scores.sqlite") == set()
    subprocess.run(_args(small_demo, out), check=True, stdout=subprocess.DEVNULL, timeout=900)
    pd.testing.assert_frame_equal(_frames(out / "scores.sqlite"), reference, check_exact=True)


@pytest.mark.slow
def test_work_limit_stops_cleanly_and_a_larger_limit_resumes(small_demo: Path, reference: pd.DataFrame,
                                                              tmp_path: Path):
    out = tmp_path / "run"
    result = subprocess.run(_args(small_demo, out, "--work-limit", "1K"), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 1 and "--work-limit" in result.stderr and "Traceback" not in result.stderr
    subprocess.run(_args(small_demo, out, "--work-limit", "1G"), check=True, stdout=subprocess.DEVNULL, timeout=900)
    pd.testing.assert_frame_equal(_frames(out / "scores.sqlite"), reference, check_exact=True)


def test_too_little_free_disk_stops_before_any_sample(small_demo: Path, tmp_path: Path):
    config = RunConfig(detector="effb2", weights="random", frames=1, dataset=str(small_demo / "manifest.csv"),
                       out=tmp_path / "run", device="cpu", precision="fp32", min_free_bytes=10**18)
    with pytest.raises(DiskSpaceError, match="Free space, then run the same command again"):
        run(config)


def test_nan_and_infinite_scores_become_bad_score_rows(small_demo: Path, tmp_path: Path, monkeypatch):
    original = pipeline.get_detector

    def broken(key: str):
        adapter = original(key)
        predict_all = adapter.predict_all

        def poisoned(faces: torch.Tensor, **options):
            scores, probs = predict_all(faces, **options)
            scores = scores.clone()
            scores[::3] = float("nan")
            scores[1::3] = float("inf")
            return scores, probs

        adapter.predict_all = poisoned  # type: ignore[method-assign]
        return adapter

    monkeypatch.setattr(pipeline, "get_detector", broken)
    config = RunConfig(detector="effb2", weights="random", frames=1, dataset=str(small_demo / "manifest.csv"),
                       out=tmp_path / "run", device="cpu", precision="fp32", batch_size=64)
    summary = run(config)
    frames = _frames(tmp_path / "run" / "scores.sqlite")
    assert set(frames["status"]) >= {"ok", "bad_score"}
    assert frames.loc[frames["status"] == "bad_score", "score"].isna().all()
    assert (summary.results.metrics()["n_errors"] > 0).any()


def test_two_processes_writing_one_store_never_corrupt_it(tmp_path: Path):
    db = tmp_path / "scores.sqlite"
    code = """
import sys
import pandas as pd
from dfbench.store import FrameRow, ScoreStore, TaskRow
run = sys.argv[1]
store = ScoreStore(sys.argv[2])
store.register_run(run, {}, {"identity": {}}, pd.DataFrame(columns=["sample_id", "label", "path", "split", "method",
                   "group"]), [])
for i in range(150):
    store.write_sample(run, [FrameRow(f"s{i}", "c", f, "ok", f / 10, 1) for f in range(8)],
                       [TaskRow(f"s{i}", "c", "ok", "", 8, 0.0)])
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, name, str(db)]) for name in ("a", "b")]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(con.execute("SELECT run_id, COUNT(*) FROM frames GROUP BY run_id"))
    assert counts == {"a": 1200, "b": 1200}
