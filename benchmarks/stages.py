"""`make bench`: dfbench against a naive pipeline and against the machine's limits, on the video-ops suite.

    python benchmarks/stages.py [--videos 24] [--seconds 10] [--frames 32] [--skip-naive] [--scaling]

1. Builds a seeded benchmark set: demo clips (faces present; half real, half fake) looped to `seconds` and
   scaled to 1280x720, H.264. Building it is not timed.
2. dfbench: `dfbench run --suite video-ops` in a child process (wall time, its stage times from run.json, peak
   RSS), with `--faces redetect` (the suite's protocol) and `--faces clean`.
3. The naive pipeline (`benchmarks/naive.py`), as researchers script it: ffmpeg writes every perturbed copy.
4. The limits: decode-only time of the sources, the two compression encodes and the decodes of their output,
   face finding on the sampled frames (dfbench's finder settings), and model-only inference on pre-made crops at
   the best batch size and precision. Their sum is the unavoidable work.
5. `speedup_vs_naive`, `ratio_to_unavoidable`, the finder's per-frame cost and its recall against the
   full-resolution finder; with `--scaling`, peak memory and time at half the videos (1x vs 2x) and at fewer
   cells, with slopes and intercepts.

Everything is printed and written to benchmarks/results/stages-<videos>x<seconds>s.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

CHILD = """
import json, resource, sys, time
from pathlib import Path
from dfbench.api import run
from dfbench.pipeline import RunConfig
options = json.loads(sys.argv[1])
options["out"] = Path(options["out"])
started = time.perf_counter()
summary = run(RunConfig(**options))
seconds = time.perf_counter() - started
peak_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
auc = summary.results.matrix("auc")
print(json.dumps({"seconds": seconds, "stages": summary.stages, "peak_rss_mb": peak_kb / 1024,
                  "auc_clean": float(auc["none-0"].iloc[0]), "auc_avg": float(auc["avg"].iloc[0])}))
"""


def build_set(folder: Path, videos: int, seconds: float) -> Path:
    """`videos` 720p videos of `seconds` each (real and fake twins of demo clips) and their manifest."""
    from dfbench.data import load_dataset
    from dfbench.video.ffmpeg import base_command

    table = load_dataset("demo").table.sort_values(["group", "label"])
    groups = table["group"].drop_duplicates().tolist()[: (videos + 1) // 2]
    rows = []
    for row in table[table["group"].isin(groups)].head(videos).itertuples():
        out = folder / f"{'fake' if row.label else 'real'}_{row.group}.mp4"
        cmd = [*base_command(), "-stream_loop", "-1", "-i", str(row.path), "-t", str(seconds),
               "-vf", "scale=1280:720:flags=bicubic", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
               "-pix_fmt", "yuv420p", "-an", str(out)]
        subprocess.run(cmd, check=True, capture_output=True)
        rows.append({"sample_id": out.stem, "path": str(out), "label": row.label, "group": row.group})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def dfbench_run(manifest: Path, out: Path, frames: int, faces: str, suite: str = "video-ops") -> dict:
    options = {"detector": "effb2", "weights": "random", "suite": suite, "dataset": str(manifest), "out": str(out),
               "frames": frames, "device": "cpu", "precision": "auto", "batch_size": 64, "faces": faces}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(options)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def limits(manifest: Path, frames: int, folder: Path) -> dict:
    """The unavoidable work, each part measured alone."""
    import torch

    from dfbench.config import load_suite
    from dfbench.detectors import get_detector
    from dfbench.faces import crop_face, make_finder, select_faces
    from dfbench.perturbations.base import EncodeStep
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames
    from dfbench.video.ffmpeg import base_command
    from dfbench.video.probe import probe_video, sample_indices

    paths = pd.read_csv(manifest)["path"].tolist()
    suite = load_suite("video-ops")
    encodes = [s for c in suite.cells for s in c.steps(0, "x") if isinstance(s, EncodeStep)]
    out: dict[str, float] = {"decode": 0.0, "encode": 0.0, "decode_encoded": 0.0, "faces": 0.0, "inference": 0.0}
    finder = make_finder("mtcnn")
    adapter = get_detector("effb2")
    clean_frames = []
    for path in paths:
        out["decode"] += timed([*base_command(), "-i", path, "-f", "null", "-"])
        for i, step in enumerate(encodes):
            target = folder / f"enc{i}.mp4"
            out["encode"] += timed([*base_command(), "-y", "-i", path, *step.args, "-an", str(target)])
            out["decode_encoded"] += timed([*base_command(), "-i", str(target), "-f", "null", "-"])
        indices = sample_indices(probe_video(Path(path)).frame_count, frames)
        clean_frames += [e.image for e in sample_frames(Path(path), [CellPlan("none-0", ())], indices)
                         if isinstance(e, SampledFrame)]
    started = time.perf_counter()
    crops = []
    for image in clean_frames:
        crops += [crop_face(image, f, adapter.card.crop) for f in select_faces(finder.find(image), adapter.card.crop)]
    finder_per_frame = (time.perf_counter() - started) / len(clean_frames)
    n_cell_frames = len(clean_frames) * len(suite.cells)
    out["faces"] = finder_per_frame * n_cell_frames            # redetect: every sampled frame of every cell
    out["faces_clean_mode"] = finder_per_frame * len(clean_frames)
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
    best = (0.0, 0, "")
    for precision in ("fp32", "bf16"):
        adapter.load("random", device="cpu", precision=precision)
        for size in (16, 32, 64):
            chunk = batch[:size].repeat((size + len(batch) - 1) // len(batch), 1, 1, 1)[:size]
            adapter.predict(chunk)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                adapter.predict(chunk)
                times.append(time.perf_counter() - t0)
            rate = size / float(np.median(times))
            if rate > best[0]:
                best = (rate, size, precision)
    out["inference"] = n_cell_frames / best[0]               # one crop per frame (largest face)
    unavoidable = out["decode"] + out["encode"] + out["decode_encoded"] + out["faces"] + out["inference"]
    return {**{k: round(v, 2) for k, v in out.items()}, "unavoidable": round(unavoidable, 2),
            "unavoidable_clean_mode": round(unavoidable - out["faces"] + out["faces_clean_mode"], 2),
            "finder_ms_per_frame": round(1000 * finder_per_frame, 1), "model_img_s": round(best[0], 1),
            "model_batch": best[1], "model_precision": best[2], "sampled_frames": len(clean_frames),
            "frame_size": list(clean_frames[0].shape[1::-1])}


def finder_recall(manifest: Path, frames: int) -> dict:
    """Faces found by dfbench's finder (downscaled) against MTCNN at full resolution, on the clean frames."""
    from dfbench.faces import MTCNNFinder, make_finder
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames
    from dfbench.video.probe import probe_video, sample_indices

    fast, full = make_finder("mtcnn"), MTCNNFinder(max_side=100_000, min_face_px=20)
    hits = total = 0
    full_seconds = 0.0
    for path in pd.read_csv(manifest)["path"]:
        indices = sample_indices(probe_video(Path(path)).frame_count, min(frames, 8))
        for event in sample_frames(Path(path), [CellPlan("none-0", ())], indices):
            if not isinstance(event, SampledFrame):
                raise RuntimeError(f"{path}: {event.message}")
            t0 = time.perf_counter()
            reference = full.find(event.image)
            full_seconds += time.perf_counter() - t0
            found = fast.find(event.image)
            for ref in reference:
                total += 1
                hits += any(_iou(ref, f) >= 0.5 for f in found)
    return {"recall_vs_full_resolution": round(hits / max(total, 1), 4), "reference_faces": total,
            "full_resolution_ms_per_frame": round(1000 * full_seconds / max(1, total), 1)}


def _iou(a, b) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return ix * iy / (a.area + b.area - ix * iy)


def fewer_cells_suite(folder: Path, n_cells: int) -> Path:
    """video-ops with only its first `n_cells` cells (for the cost-per-cell slope)."""
    from importlib import resources

    import yaml

    data = yaml.safe_load((resources.files("dfbench") / "suites" / "video-ops.yaml").read_text())
    data["cells"] = data["cells"][:n_cells]
    data["name"] = f"video-ops-first{n_cells}"
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    report: dict = {"videos": args.videos, "seconds_per_video": args.seconds, "frames": args.frames,
                    "suite": "video-ops", "detector": "effb2"}
    with tempfile.TemporaryDirectory(prefix="dfbench-bench-") as tmp:
        folder = Path(tmp)
        (folder / "set").mkdir()
        manifest = build_set(folder / "set", args.videos, args.seconds)
        print(f"benchmark set: {args.videos} videos, {args.seconds:g} s, 1280x720", flush=True)
        report["dfbench"] = dfbench_run(manifest, folder / "run", args.frames, "redetect")
        print(f"dfbench (faces redetect): {report['dfbench']['seconds']:.1f} s", flush=True)
        report["dfbench_faces_clean"] = dfbench_run(manifest, folder / "run_clean", args.frames, "clean")
        print(f"dfbench (faces clean): {report['dfbench_faces_clean']['seconds']:.1f} s", flush=True)
        report["limits"] = limits(manifest, args.frames, folder)
        print(f"unavoidable work: {report['limits']['unavoidable']:.1f} s", flush=True)
        report["finder"] = finder_recall(manifest, args.frames)
        if not args.skip_naive:
            from naive import naive_run

            report["naive"] = naive_run(manifest, args.frames, folder / "naive")
            print(f"naive pipeline: {report['naive']['seconds']:.1f} s", flush=True)
            report["speedup_vs_naive"] = round(report["naive"]["seconds"] / report["dfbench"]["seconds"], 2)
        report["ratio_to_unavoidable"] = round(report["dfbench"]["seconds"] / report["limits"]["unavoidable"], 3)
        report["ratio_to_unavoidable_faces_clean"] = round(
            report["dfbench_faces_clean"]["seconds"] / report["limits"]["unavoidable_clean_mode"], 3)
        if args.scaling and args.videos < 4:
            print("--scaling needs --videos 4 or more (it compares half the videos with all of them)")
        elif args.scaling:
            half = folder / "half.csv"
            table = pd.read_csv(manifest)
            table.head(max(2, len(table) // 2)).to_csv(half, index=False)
            small = dfbench_run(half, folder / "run_half", args.frames, "redetect")
            n1, n2 = max(2, len(table) // 2), len(table)
            slope = (report["dfbench"]["seconds"] - small["seconds"]) / (n2 - n1)
            few = dfbench_run(manifest, folder / "run_few", args.frames, "redetect",
                              str(fewer_cells_suite(folder, 5)))
            cell_slope = (report["dfbench"]["seconds"] - few["seconds"]) / (13 - 5)
            report["scaling"] = {
                "videos": {"n": [n1, n2],
                           "seconds": [round(small["seconds"], 1), round(report["dfbench"]["seconds"], 1)],
                           "peak_rss_mb": [round(small["peak_rss_mb"]), round(report["dfbench"]["peak_rss_mb"])],
                           "slope_s_per_video": round(slope, 2),
                           "intercept_s": round(small["seconds"] - slope * n1, 2)},
                "cells": {"n": [5, 13], "seconds": [round(few["seconds"], 1), round(report["dfbench"]["seconds"], 1)],
                          "slope_s_per_cell": round(cell_slope, 2),
                          "intercept_s": round(few["seconds"] - cell_slope * 5, 2)},
            }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"stages-{args.videos}x{args.seconds:g}s.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
