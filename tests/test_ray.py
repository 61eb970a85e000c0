"""The Ray backend on a real two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): the same rows as
a local run, a worker node killed mid-run, the driver killed with SIGKILL, an undecodable sample, the face cache
across nodes, and `dfbench perturb --backend ray`.

Each node is a raylet of its own with 2 logical CPUs; the driver is `dfbench run --backend ray --address ...` in a
child process, as a user runs it. The cluster tests are ``slow`` (``make test-slow``, also in ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from dfbench.cluster import default_actors, physical_cores
from dfbench.config import RunConfig
from dfbench.errors import ConfigError

ray = pytest.importorskip("ray", reason="the Ray backend's tests need ray (pip install -e '.[dev]')")
CELLS = 13                                     # video-ops
NODE = {"num_cpus": 2, "object_store_memory": 300 * 1024 * 1024}
# Node deaths are noticed within a few seconds (Ray's defaults wait about 30 s).
FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
               "health_check_failure_threshold": 4}


def _args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dfbench", "run", "--detector", "effb2", "--weights", "demo", "--frames", "2",
            "--dataset", str(dataset / "manifest.csv"), "--split", "train", "--device", "cpu", "--out", str(out),
            "--no-face-cache", *extra]


def _frames(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        return pd.read_sql_query("SELECT sample_id, cell, frame, status, score, n_faces FROM frames ORDER BY 1, 2, 3",
                                 con)


def _tasks(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        return pd.read_sql_query("SELECT rowid, sample_id, cell, status, message FROM tasks ORDER BY 2, 3", con)


def _committed(db: Path) -> int:
    """Task rows in a store that a run may be writing (0 until its tables exist)."""
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _wait_for(proc: subprocess.Popen, db: Path, rows: int, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline and _committed(db) < rows:
        time.sleep(0.05)


def _gathering_on(node) -> bool:
    """Whether a process under `node`'s raylet is running a sample's gathering task (Ray titles a worker process
    ``ray::gather_task`` while it runs one)."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            titles[int(proc.name)] = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    raylet = node.all_processes["raylet"][0].process.pid

    def under(pid: int) -> bool:
        while pid > 1:
            if pid == raylet:
                return True
            pid = parents.get(pid, 0)
        return False

    return any(title.startswith("ray::gather_task") and under(pid) for pid, title in titles.items())


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    """A head and one worker node, both on this machine."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    made = Cluster(initialize_head=True, head_node_args={**NODE, "_system_config": FAST_HEALTH})
    made.add_node(**NODE)
    made.wait_for_nodes()
    yield made
    made.shutdown()


def _two_nodes(cluster) -> None:
    """Give the cluster its worker node back where a test removed it."""
    if not cluster.worker_nodes:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()


@pytest.fixture(scope="module")
def local_rows(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """The local backend's frame rows of the small demo's train split (6 videos x 13 cells x 2 frames)."""
    out = tmp_path_factory.mktemp("local") / "run"
    _run(_args(small_demo, out))
    return _frames(out / "scores.sqlite"), out


def test_actor_count_follows_the_cluster_and_the_options():
    assert default_actors(64, 4, None, "auto") == (4, "cuda")
    assert default_actors(64, 4, None, "cpu") == (12, "cpu")      # --device cpu leaves the GPUs alone
    assert default_actors(4, 0, None, "auto") == (1, "cpu")
    assert default_actors(40, 0, 7, "auto") == (7, "cpu")
    with pytest.raises(ConfigError, match="no GPU"):
        default_actors(8, 0, None, "cuda")
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_backend_options_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="--backend must be one of local, ray"):
        RunConfig(detector="effb2", backend="spark")
    with pytest.raises(ConfigError, match="--address .* needs --backend ray"):
        RunConfig(detector="effb2", address="auto")


def test_an_unreachable_cluster_is_one_line(small_demo: Path, tmp_path: Path):
    result = subprocess.run(_args(small_demo, tmp_path / "run", "--backend", "ray", "--address", "127.0.0.1:9"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Could not join the Ray cluster at '127.0.0.1:9'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ray_gives_the_local_backends_rows_bit_for_bit(cluster, small_demo: Path, local_rows, tmp_path: Path):
    _two_nodes(cluster)
    expected, local_out = local_rows
    out = tmp_path / "ray"
    _run(_args(small_demo, out, "--backend", "ray", "--address", cluster.address))
    got = _frames(out / "scores.sqlite")
    assert len(got) == 6 * CELLS * 2 and (got["status"] == "ok").sum() > len(got) // 2
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    for name in ("matrix_auc.csv", "matrix_acc.csv", "results.csv"):
        assert (out / name).read_text() == (local_out / name).read_text(), name
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["backend"] == "ray" and run["timing"]["stages"]["wait_for_ray"]["items"] == 6
    assert run["run_id"] == json.loads((local_out / "run.json").read_text())["run_id"]   # the same run


@pytest.mark.slow
def test_a_worker_node_killed_mid_run_changes_nothing(cluster, small_demo: Path, local_rows, tmp_path: Path):
    _two_nodes(cluster)
    out = tmp_path / "ray"
    db = out / "scores.sqlite"
    log = (tmp_path / "stderr.txt").open("w+")      # a file: a full pipe would stall the run while it is watched
    proc = subprocess.Popen(_args(small_demo, out, "--backend", "ray", "--address", cluster.address),
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        worker = next(iter(cluster.worker_nodes))
        deadline = time.monotonic() + 300      # gathering tasks are spread over the nodes: the worker gets some
        seen = False                           # a sample being decoded there, seen just now
        while not seen and proc.poll() is None and time.monotonic() < deadline:
            seen = _gathering_on(worker)
            time.sleep(0 if seen else 0.05)
        assert seen and proc.poll() is None and _committed(db) < 6 * CELLS
        cluster.remove_node(worker, allow_graceful=False)    # SIGKILL: its tasks, objects (and actor) are lost
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    pd.testing.assert_frame_equal(_frames(db), local_rows[0], check_exact=True)
    tasks = _tasks(db)
    assert len(tasks) == 6 * CELLS and not tasks.duplicated(["sample_id", "cell"]).any()


@pytest.mark.slow
def test_the_driver_killed_with_sigkill_resumes_without_recomputing(cluster, small_demo: Path, local_rows,
                                                                     tmp_path: Path):
    _two_nodes(cluster)
    out = tmp_path / "ray"
    db = out / "scores.sqlite"
    args = _args(small_demo, out, "--backend", "ray", "--address", cluster.address)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(proc, db, 2 * CELLS)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = _tasks(db)
    finished = before["sample_id"].nunique()
    assert 2 <= finished < 6 and len(before) == finished * CELLS      # whole samples only
    result = _run(args)
    assert f"Resumed: {finished} samples were already scored" in result.stdout
    after = _tasks(db)
    kept = after.merge(before, on=["sample_id", "cell"], suffixes=("", "_before"))
    assert (kept["rowid"] == kept["rowid_before"]).all()              # nothing finished was written again
    assert len(after) == 6 * CELLS and not after.duplicated(["sample_id", "cell"]).any()
    run = json.loads((out / "run.json").read_text())
    assert run["timing"]["stages"]["wait_for_ray"]["items"] == 6 - finished   # only the rest was gathered
    pd.testing.assert_frame_equal(_frames(db), local_rows[0], check_exact=True)


@pytest.mark.slow
def test_an_undecodable_sample_is_a_status_row_as_locally(cluster, small_demo: Path, tmp_path: Path):
    _two_nodes(cluster)
    data = tmp_path / "data"
    shutil.copytree(small_demo, data)
    manifest = pd.read_csv(data / "manifest.csv")
    broken = manifest[manifest["split"] == "train"].iloc[1]
    (data / broken["path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    _run(_args(data, tmp_path / "local"))
    started = time.monotonic()
    _run(_args(data, tmp_path / "ray", "--backend", "ray", "--address", cluster.address))
    assert time.monotonic() - started < 600       # a status, not a crash retried again and again
    local, remote = _tasks(tmp_path / "local" / "scores.sqlite"), _tasks(tmp_path / "ray" / "scores.sqlite")
    pd.testing.assert_frame_equal(remote.drop(columns="rowid"), local.drop(columns="rowid"))
    statuses = remote.groupby("sample_id")["status"].agg(set)
    assert statuses[broken["sample_id"]] == {"decode_error"}
    assert all(s == {"ok"} for k, s in statuses.items() if k != broken["sample_id"])


@pytest.mark.slow
def test_kept_crops_in_a_shared_cache_serve_the_next_run_on_the_cluster(cluster, small_demo: Path, local_rows,
                                                                        tmp_path: Path):
    _two_nodes(cluster)
    cache = os.environ["DFBENCH_CACHE_DIR"]          # the nodes run on this machine: the folder is shared
    args = [a for a in _args(small_demo, tmp_path / "first", "--backend", "ray", "--address", cluster.address)
            if a != "--no-face-cache"]
    _run([*args, "--keep-crops"])
    second = [a if a != str(tmp_path / "first") else str(tmp_path / "second") for a in args]
    _run(second)
    stages = json.loads((tmp_path / "second" / "run.json").read_text())["timing"]["stages"]
    assert stages["cached_crops"]["items"] > 0 and "faces" not in stages and "decode_perturb" not in stages
    pd.testing.assert_frame_equal(_frames(tmp_path / "second" / "scores.sqlite"), local_rows[0], check_exact=True)
    assert Path(cache, "faces").is_dir()


@pytest.mark.slow
def test_perturb_on_the_cluster_writes_the_local_copies(cluster, small_demo: Path, tmp_path: Path):
    _two_nodes(cluster)
    base = [sys.executable, "-m", "dfbench", "perturb", "--suite", "video-ops", "--dataset",
            str(small_demo / "manifest.csv"), "--split", "train", "--limit", "4"]
    _run([*base, "--out", str(tmp_path / "local")])
    _run([*base, "--out", str(tmp_path / "ray"), "--backend", "ray", "--address", cluster.address])
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    remote = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*") if p.is_file())
    assert local == remote and len(local) == 4 * CELLS + CELLS + 1      # the copies, a manifest per cell, cells.csv
    for rel in local:
        if rel.suffix == ".csv":
            assert (tmp_path / "ray" / rel).read_text() == (tmp_path / "local" / rel).read_text(), rel
