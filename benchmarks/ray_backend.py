"""The Ray backend against the local one, and what a cluster would take for the big test sets (README "Speed").

    python benchmarks/ray_backend.py [--videos 12] [--seconds 4] [--frames 8] [--repeats 3]
                                     [--cost-videos 2] [--cost-seconds 10] [--no-all] [--nodes 1,8,32,128]

1. **Overhead**: `dfbench run --suite video-ops` on one set with ``--backend local`` and ``--backend ray`` (a Ray
   instance started by the run itself, so Ray's start-up is in its time), alternating, `repeats` times each, in
   child processes; medians and their ratio (target: at most 1.15). The two backends' scores must be equal.
2. **Costs**: a local run of `video-ops` (and of `all`) on 720p videos of `cost-seconds`, the suites' own 32
   frames, with its crops kept, then a second run from those crops (the model only). The child's CPU time
   (user + system, ffmpeg included) gives the core-seconds of gathering per (video, cell), and of inference per
   crop; the stage table says where the gathering time went.
3. **The driver**: the store's write time per sample for each suite's row shape (synthetic rows, the first and the
   last 50 of `store-samples`), and Ray's own cost per sample on the driver (a gathering task and an actor call
   that do nothing, submitted as `dfbench.cluster` does), and the time to start Ray and load an actor.
4. **Projection** of `video-ops` and `all` on FaceForensics++ test (840 videos), DFDC test (5,000) and 100,000
   videos for N nodes of `--node-cores` cores (cores like this machine's), CPU-only or with one GPU each: each of
   CPU gathering, model work, driver (store writes + Ray's per-sample cost) and object transfer is the total work
   divided by what runs it in parallel; the wall time is the largest of them plus the measured start-up, and that
   largest one is the bottleneck. Only step 1-3 are measured; the table is a projection from them.

Printed, and written to benchmarks/results/ray_backend.json; ``--project-only ray_backend.json --node-cores 64``
projects an earlier measurement onto other nodes without measuring again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from stages import build_set, dfbench_run, save_report  # noqa: E402

# The child (`stages.dfbench_run` runs it): one run, its wall and CPU time (this process and its ffmpeg and Ray-less
# children; with --backend ray the Ray workers' CPU time is not in it), stages, crops and every frame's score.
CHILD = """
import json, resource, sqlite3, sys, time
from pathlib import Path
from dfbench.api import run
from dfbench.config import RunConfig
options = json.loads(sys.argv[1])
options["out"] = Path(options["out"])
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
started, cpu_started = time.perf_counter(), cpu()
summary = run(RunConfig(**options))
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
with sqlite3.connect(options["out"] / "scores.sqlite") as con:
    frames = con.execute("SELECT sample_id, cell, frame, status, score FROM frames ORDER BY 1, 2, 3").fetchall()
crops = sum(1 for f in frames if f[3] == "ok")
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "stages": summary.stages, "crops": crops,
                  "frames": frames}))
"""

DATASETS = {"FaceForensics++ test": 840, "DFDC test": 5000, "100k videos": 100_000}   # FF++: 140 x 6 test videos
# The GPU's model rate for projection: 9448 crops of effb2 in 1.4 % busy time of a 130.6 s H100 run (issue 24,
# README "Speed"), about 5,170 crops/s; a lower bound on the GPU's rate (it waited for crops).
GPU_CROPS_PER_S = 9448 / (0.014 * 130.6)
NETWORK_BYTES_PER_S = 10e9 / 8       # ours, assumed: 10 Gbit/s between nodes (not measured here)


def _set(folder: Path, videos: int, seconds: float) -> Path:
    folder.mkdir(parents=True)
    return build_set(folder, videos, seconds)


def _run(manifest: Path, out: Path, frames: int, **overrides) -> dict:
    return dfbench_run(manifest, out, frames, "redetect", detector="effb2", child=CHILD, **overrides)


def overhead(folder: Path, args: argparse.Namespace) -> dict:
    """Local against Ray on the same set, alternating; medians and the ratio."""
    manifest = _set(folder / "set", args.videos, args.seconds)
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    last: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for backend in ("local", "ray"):
            result = _run(manifest, folder / f"{backend}-{repeat}", args.frames, backend=backend)
            walls[backend].append(result["seconds"])
            last[backend] = result
            print(f"  {backend} #{repeat + 1}: {result['seconds']:.1f} s", flush=True)
    medians = {k: statistics.median(v) for k, v in walls.items()}
    equal = last["local"]["frames"] == last["ray"]["frames"]
    ray_stages = last["ray"]["stages"]
    return {"videos": args.videos, "seconds_per_video": args.seconds, "frames": args.frames, "suite": "video-ops",
            "wall_s": walls, "median_s": medians, "ratio": medians["ray"] / medians["local"],
            "target_ratio": 1.15, "scores_identical": equal, "crops": last["ray"]["crops"],
            "ray_stages": ray_stages, "local_stages": last["local"]["stages"]}


def costs(folder: Path, suite: str, videos: int, seconds: float) -> dict:
    """Core-seconds per (video, cell) of gathering and per crop of inference, from a run and its rerun from kept
    crops."""
    from dfbench.config import load_suite

    cells = len(load_suite(suite).cells)
    manifest = _set(folder / f"cost-{suite}", videos, seconds)
    cache = folder / f"cost-{suite}-cache"
    full = _run(manifest, folder / f"cost-{suite}-full", 32, suite=suite, cache=cache, keep_crops=True)
    model = _run(manifest, folder / f"cost-{suite}-model", 32, suite=suite, cache=cache)
    crops = max(full["crops"], 1)
    gather_cpu = full["cpu_seconds"] - model["cpu_seconds"]
    print(f"  {suite}: {full['seconds']:.1f} s wall, {full['cpu_seconds']:.1f} core-s; model only "
          f"{model['cpu_seconds']:.1f} core-s for {crops} crops", flush=True)
    return {"suite": suite, "cells": cells, "videos": videos, "seconds_per_video": seconds, "frames": 32,
            "wall_s": full["seconds"], "cpu_s": full["cpu_seconds"], "model_run_cpu_s": model["cpu_seconds"],
            "crops": crops, "crops_per_video": crops / videos,
            "gather_core_s_per_video_cell": gather_cpu / (videos * cells),
            "inference_core_s_per_crop": model["cpu_seconds"] / crops,   # the rerun's start-up is in it: an upper bound
            "stages": {k: v["seconds"] for k, v in full["stages"].items()}}


def store_cost(folder: Path, cells: int, frames: int, samples: int) -> dict:
    """Milliseconds per sample of `ScoreStore.write_sample` for `cells` x `frames` rows; first and last 50."""
    import pandas as pd

    from dfbench.store import FrameRow, ScoreStore, TaskRow

    store = ScoreStore(folder / f"store-{cells}.sqlite")
    table = pd.DataFrame(columns=["sample_id", "label", "path", "split", "method", "group"])
    store.register_run("bench", {}, {}, table, [])
    times = []
    rng = np.random.default_rng(0)
    for s in range(samples):
        sample = f"video_{s:06d}"
        rows = [FrameRow(sample, f"cell-{c}", f, "ok", float(x), 1)
                for c in range(cells) for f, x in enumerate(rng.random(frames))]
        tasks = [TaskRow(sample, f"cell-{c}", "ok", "", frames, 1.0) for c in range(cells)]
        started = time.perf_counter()
        store.write_sample("bench", rows, tasks)
        times.append(time.perf_counter() - started)
    store.close()
    return {"cells": cells, "frames": frames, "samples": samples,
            "first_50_ms": 1000 * statistics.median(times[:50]), "last_50_ms": 1000 * statistics.median(times[-50:])}


def _noop_gather(i: int) -> bytes:
    return bytes(16)


class _NoopActor:
    def score(self, gathered: bytes) -> tuple[list, list, dict]:
        return [], [], {}


def ray_driver_cost(samples: int) -> dict:
    """Ray's own time per sample on the driver, and its start-up (init + one actor ready)."""
    import ray

    from dfbench.cluster import TASK_OPTIONS

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actor = ray.remote(_NoopActor).options(num_cpus=0).remote()
    gather = ray.remote(_noop_gather).options(**TASK_OPTIONS)
    ray.get(actor.score.remote(gather.remote(0)))
    startup = time.perf_counter() - started
    started = time.perf_counter()
    pending, queue = [], iter(range(samples))
    for i in queue:
        pending.append(actor.score.remote(gather.remote(i)))
        if len(pending) >= 8:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready[0])
    ray.get(pending)
    per_sample = (time.perf_counter() - started) / samples
    ray.shutdown()
    return {"startup_s": startup, "ms_per_sample": 1000 * per_sample, "samples": samples}


def project(cost: dict, store_ms: float, ray_ms: float, startup_s: float, crop_bytes: int, nodes: list[int],
            node_cores: int) -> list[dict]:
    """Each dataset x node kind x N: the wall time, every term, and the bottleneck (the largest term)."""
    rows = []
    for dataset, videos in DATASETS.items():
        work_cells = videos * cost["cells"]
        crops = videos * cost["crops_per_video"]
        for kind in ("cpu", "gpu"):
            for n in nodes:
                gather = work_cells * cost["gather_core_s_per_video_cell"]
                infer = crops * cost["inference_core_s_per_crop"]
                if kind == "cpu":     # gathering and the model actors share every core
                    terms = {"cpu gathering (decode, encodes, faces)": (gather + infer) / (n * node_cores)}
                else:                 # one core feeds the GPU; the model runs there
                    terms = {"cpu gathering (decode, encodes, faces)": gather / (n * (node_cores - 1)),
                             "gpu model": crops / (n * GPU_CROPS_PER_S)}
                terms["driver (store writes, ray calls)"] = videos * (store_ms + ray_ms) / 1000
                terms["object transfer"] = crops * crop_bytes * (n - 1) / n / (n * NETWORK_BYTES_PER_S)
                bottleneck = max(terms, key=terms.__getitem__)
                rows.append({"suite": cost["suite"], "dataset": dataset, "videos": videos, "node": kind,
                             "nodes": n, "wall_h": (terms[bottleneck] + startup_s) / 3600,
                             "bottleneck": bottleneck, "terms_s": terms})
    return rows


def driver_limit(cost: dict, store_ms: float, ray_ms: float, node_cores: int) -> float:
    """The number of CPU-only nodes past which the driver (store writes and Ray calls per video) is slower than
    the gathering it feeds."""
    per_video_core_s = cost["cells"] * cost["gather_core_s_per_video_cell"] \
        + cost["crops_per_video"] * cost["inference_core_s_per_crop"]
    return per_video_core_s / node_cores / ((store_ms + ray_ms) / 1000)


def projections(report: dict, nodes: list[int], node_cores: int) -> None:
    """Add the projection table and each suite's driver limit to `report` (from its measured parts)."""
    ray_ms, startup = report["ray_driver"]["ms_per_sample"], report["ray_driver"]["startup_s"]
    crop_bytes = report["crop_size"] ** 2 * 3
    report["assumed"]["node_cores"] = node_cores
    report["projection"] = [row for s, c in report["costs"].items()
                            for row in project(c, report["store"][s]["last_50_ms"], ray_ms, startup, crop_bytes,
                                               nodes, node_cores)]
    report["driver_limit_nodes"] = {s: driver_limit(c, report["store"][s]["last_50_ms"], ray_ms, node_cores)
                                    for s, c in report["costs"].items()}
    for row in report["projection"]:
        print(f"{row['suite']:9s} {row['dataset']:21s} {row['node']} x{row['nodes']:<4d} {row['wall_h']:9.2f} h  "
              f"{row['bottleneck']}")
    for suite, n in report["driver_limit_nodes"].items():
        print(f"{suite}: the driver becomes the bottleneck past about {n:.0f} CPU-only nodes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cost-videos", type=int, default=2)
    parser.add_argument("--cost-seconds", type=float, default=10)
    parser.add_argument("--no-all", action="store_true", help="project video-ops only (the all suite's cost run "
                                                              "takes several minutes)")
    parser.add_argument("--nodes", default="1,8,32,128")
    parser.add_argument("--node-cores", type=int, default=16)
    parser.add_argument("--store-samples", type=int, default=500)
    parser.add_argument("--project-only", type=Path, metavar="JSON",
                        help="measure nothing: recompute the projection of an earlier ray_backend.json for "
                             "other --nodes / --node-cores")
    args = parser.parse_args()
    nodes = [int(n) for n in args.nodes.split(",")]
    if args.project_only:
        report = json.loads(args.project_only.read_text())
        projections(report, nodes, args.node_cores)
        save_report(report, f"ray_backend-projection-{args.node_cores}c")
        return
    from dfbench.detectors import get_detector

    report = {"machine": "this machine", "detector": "effb2 (random weights)",
              "crop_size": get_detector("effb2").card.crop.size,
              "assumed": {"network_bytes_per_s": NETWORK_BYTES_PER_S, "gpu_crops_per_s": GPU_CROPS_PER_S}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("overhead (local vs ray):", flush=True)
        report["overhead"] = overhead(folder, args)
        print("costs:", flush=True)
        suites = ["video-ops"] if args.no_all else ["video-ops", "all"]
        report["costs"] = {s: costs(folder, s, max(2, args.cost_videos), args.cost_seconds)
                           for s in suites}
        report["store"] = {s: store_cost(folder, c["cells"], 32, args.store_samples)
                           for s, c in report["costs"].items()}
        report["ray_driver"] = ray_driver_cost(2000)
    projections(report, nodes, args.node_cores)
    save_report(report, "ray_backend")


if __name__ == "__main__":
    main()
