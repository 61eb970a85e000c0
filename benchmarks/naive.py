"""The naive reference pipeline, as researchers script robustness tests today (for benchmarks/stages.py).

Per video and per operation: ffmpeg writes the whole perturbed video to disk (the operation's filter, then
libx264 at ffmpeg's defaults, or the operation's own encoder settings for compression cells); OpenCV decodes
every frame of that file; 32 frames are kept; MTCNN finds faces in each at full resolution (its default minimum
face size, 20 px); the crops of one video are scored as one batch. The model, crop and weights are dfbench's,
so only the way the work is organised differs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd


def naive_run(manifest: Path, frames: int, folder: Path) -> dict:
    """Time the naive pipeline on every (video, video-ops cell); returns seconds per phase."""
    import cv2
    import torch

    from dfbench.config import load_suite
    from dfbench.detectors import get_detector
    from dfbench.faces import MTCNNFinder, crop_face, select_faces
    from dfbench.perturbations.base import EncodeStep, FilterStep
    from dfbench.video.ffmpeg import base_command
    from dfbench.video.probe import sample_indices

    folder.mkdir(parents=True, exist_ok=True)
    suite = load_suite("video-ops")
    adapter = get_detector("effb2")
    adapter.load("random", device="cpu", precision="auto")
    finder = MTCNNFinder(max_side=100_000, min_face_px=20)
    phases = {"write_copies": 0.0, "decode": 0.0, "faces": 0.0, "inference": 0.0}
    started = time.perf_counter()
    for path in pd.read_csv(manifest)["path"]:
        for cell in suite.cells:
            steps = cell.steps(suite.seed, Path(path).stem)
            t0 = time.perf_counter()
            if steps:
                filters = ",".join(s.expr for s in steps if isinstance(s, FilterStep))
                encode = next((s.args for s in steps if isinstance(s, EncodeStep)), ("-c:v", "libx264"))
                copy = folder / f"{cell.id}.mp4"
                cmd = [*base_command(), "-y", "-i", str(path), *(("-vf", filters) if filters else ()), *encode,
                       "-an", str(copy)]
                subprocess.run(cmd, check=True, capture_output=True)
            else:
                copy = Path(path)
            t1 = time.perf_counter()
            capture = cv2.VideoCapture(str(copy))
            decoded = []
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                decoded.append(frame)
            capture.release()
            kept = [cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in sample_indices(len(decoded), frames)]
            t2 = time.perf_counter()
            crops = [crop_face(image, face, adapter.card.crop)
                     for image in kept for face in select_faces(finder.find(image), adapter.card.crop)]
            t3 = time.perf_counter()
            if crops:
                batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
                adapter.predict(batch)
            t4 = time.perf_counter()
            for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key] += seconds
    return {"seconds": time.perf_counter() - started, **{k: round(v, 2) for k, v in phases.items()}}
