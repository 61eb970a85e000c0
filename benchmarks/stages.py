"""`make bench`: dfbench against a naive pipeline and against the machine's limits, on the video-ops suite.

    python benchmarks/stages.py [--videos 24] [--seconds 10] [--frames 32] [--skip-naive] [--scaling]
    python benchmarks/stages.py --device cuda --parts e2e,second --second effb2,efficientnet_lite0   # on a GPU

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
import os
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
from dfbench.config import RunConfig
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


# Where dfbench runs (`--device`, `--workers`, `--batch-size`); the model-only limits use the same device.
RUN = {"device": "cpu", "workers": None, "batch_size": None}


def dfbench_run(manifest: Path, out: Path, frames: int, faces: str, suite: str = "video-ops",
                detector: str = "effb2", cache: Path | None = None, keep_crops: bool = False, child: str = CHILD,
                **overrides) -> dict:
    """One `dfbench run` in a child process (`child`: the script that runs it and prints its JSON last).
    `cache`: its face cache (default: a fresh one, so nothing is reused); `overrides`: RunConfig fields over `RUN`.
    On CUDA the GPU's utilisation is sampled every 50 ms while it runs."""
    options = {"detector": detector, "weights": "random", "suite": suite, "dataset": str(manifest),
               "out": str(out), "frames": frames, "precision": "auto", "faces": faces, "keep_crops": keep_crops,
               **RUN, **overrides}
    env = {**os.environ, "DFBENCH_CACHE_DIR": str(cache or out.with_name(out.name + "-cache"))}
    with GpuSampler(enabled=str(RUN["device"]).startswith("cuda")) as gpu:
        done = subprocess.run([sys.executable, "-c", child, json.dumps(options)], capture_output=True, text=True,
                              env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if gpu.enabled:
        result["gpu_utilisation"] = gpu.summary()
    return result


class GpuSampler:
    """GPU utilisation (NVML: the share of each sample period in which a kernel ran) sampled in a thread.

    `summary` gives the mean over the whole run and over its busy window, from the first to the last sample
    with any kernel running (model loading and process start-up fall outside it)."""

    def __init__(self, enabled: bool, period: float = 0.05) -> None:
        self.enabled, self.period, self.samples = enabled, period, []
        self._stop = None

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            import threading

            self._stop = threading.Event()
            try:
                import pynvml

                pynvml.nvmlInit()
                handle = pynvml.nvmlDeviceGetHandleByIndex(0)

                def read() -> int:
                    return int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except ImportError:         # no NVML bindings: nvidia-smi reads the same counter
                def read() -> int:
                    done = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                                           "nounits", "-i", "0"], capture_output=True, text=True, check=True)
                    return int(done.stdout.split()[0])

            def sample() -> None:
                while not self._stop.wait(self.period):
                    self.samples.append(read())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict:
        busy = [i for i, u in enumerate(self.samples) if u > 0]
        window = self.samples[busy[0]:busy[-1] + 1] if busy else []
        return {"mean_pct": round(float(np.mean(self.samples)), 1) if self.samples else None,
                "busy_window_mean_pct": round(float(np.mean(window)), 1) if window else None,
                "busy_window_s": round(len(window) * self.period, 2), "samples": len(self.samples)}


def model_only(key: str, crops: int) -> dict:
    """Model-only time of adapter `key` (random weights) for `crops` pre-made crops on the run's device.

    A short sweep over precisions and batch sizes (median of 3 batches each) picks the fastest setting; then all
    `crops` go through the model at that setting and that whole pass is the time. The sweep's best rate alone
    would overstate the model on a noisy machine (it is the largest of several noisy figures)."""
    import torch

    from dfbench.detectors import get_detector

    device = str(RUN["device"])
    cuda = device.startswith("cuda")
    precisions, sizes = (("bf16", "fp16"), (64, 256)) if cuda else (("fp32", "bf16"), (16, 32, 64))
    adapter = get_detector(key)
    side = adapter.card.crop.size
    pool = torch.rand(max(sizes), 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    sweep: dict[str, float] = {}
    for precision in precisions:
        adapter.load("random", device=device, precision=precision)
        for size in sizes:
            adapter.predict(pool[:size])
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                adapter.predict(pool[:size])
                times.append(time.perf_counter() - t0)
            sweep[f"{precision}/{size}"] = round(size / float(np.median(times)), 1)
    precision, size = max(sweep, key=sweep.__getitem__).split("/")
    batch = int(size)
    adapter.load("random", device=device, precision=precision)
    adapter.predict(pool[:batch])
    started = time.perf_counter()
    for start in range(0, crops, batch):
        adapter.predict(pool[:min(batch, crops - start)])        # returns on the CPU: the device is done
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "img_s": round(crops / seconds, 1), "batch": batch,
            "precision": precision, "sweep_img_s": sweep}


def second_detector(manifest: Path, frames: int, folder: Path, keys: list[str], first: dict | None) -> dict:
    """effb2 keeps its crops (`first`: that run was the main one); each detector of `keys` then reuses them:
    one with effb2's crop spec (efficientnet_lite0, or effb2 itself) only runs its model, one with another
    (xception) reuses the faces. Each against its model-only time on the same number of crops."""
    shared = folder / "shared-cache"
    if first is None:
        first = dfbench_run(manifest, folder / "run_keep", frames, "redetect", cache=shared, keep_crops=True)
    out: dict = {"first_effb2_keep_crops": {"seconds": round(first["seconds"], 1), "stages": first["stages"]}}
    for key in keys:
        second = dfbench_run(manifest, folder / f"run_{key}", frames, "redetect", detector=key, cache=shared)
        name = "same_crop_spec" if "cached_crops" in second["stages"] else "other_crop_spec"
        crops = second["stages"]["inference"]["items"]
        model = model_only(key, crops)
        out[f"{name}_{key}"] = {"detector": key, "seconds": round(second["seconds"], 1), "stages": second["stages"],
                     "crops": crops, "model_only_seconds": model["seconds"], "model_img_s": model["img_s"],
                     "model_batch": model["batch"], "model_precision": model["precision"],
                     "model_sweep_img_s": model["sweep_img_s"],
                     "ratio_to_model_only": round(second["seconds"] / model["seconds"], 3),
                     **({"gpu_utilisation": second["gpu_utilisation"]} if "gpu_utilisation" in second else {})}
    return out


def machine() -> dict:
    import platform

    info = {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    if str(RUN["device"]).startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def limits(manifest: Path, frames: int, folder: Path) -> dict:
    """The unavoidable work, each part measured alone."""
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
    model = model_only("effb2", n_cell_frames)               # one crop per frame (largest face)
    out["inference"] = model["seconds"]
    unavoidable = out["decode"] + out["encode"] + out["decode_encoded"] + out["faces"] + out["inference"]
    return {**{k: round(v, 2) for k, v in out.items()}, "unavoidable": round(unavoidable, 2),
            "unavoidable_clean_mode": round(unavoidable - out["faces"] + out["faces_clean_mode"], 2),
            "finder_ms_per_frame": round(1000 * finder_per_frame, 1), "model_img_s": model["img_s"],
            "model_batch": model["batch"], "model_precision": model["precision"], "sampled_frames": len(clean_frames),
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


PARTS = ("main", "e2e", "naive", "second", "scaling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--parts", default="main,naive,second",
                        help=f"comma-separated subset of {', '.join(PARTS)} (main: dfbench, limits, finder recall; "
                             "e2e: dfbench alone, keeping its crops for 'second'; second: more detectors from the "
                             "face cache; scaling: 1x vs 2x videos, 5 vs 13 cells)")
    parser.add_argument("--second", default="efficientnet_lite0,xception",
                        help="the detectors of 'second' (after effb2, from its cached faces and crops)")
    parser.add_argument("--device", default="cpu", help="dfbench's --device (the limits are measured on a CPU)")
    parser.add_argument("--workers", type=int, default=None, help="dfbench's --workers (default: its own)")
    parser.add_argument("--batch-size", type=int, default=None, help="dfbench's --batch-size (default: its own)")
    parser.add_argument("--skip-naive", action="store_true", help="drop 'naive' from --parts")
    parser.add_argument("--scaling", action="store_true", help="add 'scaling' to --parts")
    args = parser.parse_args()
    parts = set(args.parts.split(",")) - ({"naive"} if args.skip_naive else set()) | (
        {"scaling"} if args.scaling else set())
    if parts - set(PARTS) or ("scaling" in parts and "main" not in parts) or {"main", "e2e"} <= parts:
        parser.error(f"--parts takes {', '.join(PARTS)}; scaling needs main; main and e2e exclude each other")
    RUN.update(device=args.device, workers=args.workers, batch_size=args.batch_size)
    report: dict = {"videos": args.videos, "seconds_per_video": args.seconds, "frames": args.frames,
                    "suite": "video-ops", "detector": "effb2", "parts": sorted(parts), "run": dict(RUN),
                    "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="dfbench-bench-") as tmp:
        folder = Path(tmp)
        (folder / "set").mkdir()
        manifest = build_set(folder / "set", args.videos, args.seconds)
        print(f"benchmark set: {args.videos} videos, {args.seconds:g} s, 1280x720", flush=True)
        if "main" in parts:
            keep = "second" in parts     # then its crops serve 'second' (writing them is part of its time)
            report["dfbench"] = dfbench_run(manifest, folder / "run", args.frames, "redetect",
                                            cache=folder / "shared-cache" if keep else None, keep_crops=keep)
            print(f"dfbench (faces redetect{', keeping crops' if keep else ''}): "
                  f"{report['dfbench']['seconds']:.1f} s", flush=True)
            report["dfbench_faces_clean"] = dfbench_run(manifest, folder / "run_clean", args.frames, "clean")
            print(f"dfbench (faces clean): {report['dfbench_faces_clean']['seconds']:.1f} s", flush=True)
            report["limits"] = limits(manifest, args.frames, folder)
            print(f"unavoidable work: {report['limits']['unavoidable']:.1f} s", flush=True)
            report["finder"] = finder_recall(manifest, args.frames)
            report["ratio_to_unavoidable"] = round(report["dfbench"]["seconds"] / report["limits"]["unavoidable"], 3)
            report["ratio_to_unavoidable_faces_clean"] = round(
                report["dfbench_faces_clean"]["seconds"] / report["limits"]["unavoidable_clean_mode"], 3)
        if "e2e" in parts:
            report["dfbench"] = dfbench_run(manifest, folder / "run", args.frames, "redetect",
                                            cache=folder / "shared-cache", keep_crops=True)
            print(f"dfbench (faces redetect, keeping crops): {report['dfbench']['seconds']:.1f} s", flush=True)
        if "naive" in parts:
            from naive import naive_run

            report["naive"] = naive_run(manifest, args.frames, folder / "naive")
            print(f"naive pipeline: {report['naive']['seconds']:.1f} s", flush=True)
            if "dfbench" in report:
                report["speedup_vs_naive"] = round(report["naive"]["seconds"] / report["dfbench"]["seconds"], 2)
        if "second" in parts:
            report["second_detector"] = second_detector(manifest, args.frames, folder, args.second.split(","),
                                                        report.get("dfbench"))
            print("second detector from the face cache: " + ", ".join(
                f"{v['detector']} {v['ratio_to_model_only']}x model-only"
                for k, v in report["second_detector"].items() if k != "first_effb2_keep_crops"), flush=True)
        if "scaling" in parts and args.videos < 4:
            print("scaling needs --videos 4 or more (it compares half the videos with all of them)")
        elif "scaling" in parts:
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
    device = "" if args.device == "cpu" else f"-{args.device.split(':')[0]}"
    save_report(report, f"stages-{args.videos}x{args.seconds:g}s{device}")


def save_report(report: dict, stem: str) -> Path:
    """Print `report` and write it to benchmarks/results/<stem>.json."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
