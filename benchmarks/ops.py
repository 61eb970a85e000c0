"""Cost of every operation per 720p frame, through the real engine.

    python benchmarks/ops.py [--frames 50] [--repeats 3] [--ops jpeg,blur]

A demo clip scaled to 1280x720 (H.264, `frames` frames) is run through `video.engine.sample_frames` once per
operation, at the middle one of its default levels (`--strongest`: the last), with every frame sampled. The
clean cell (decode only) is timed the same way; an operation's cost is its median time minus the clean cell's,
per frame. Encoder operations (H.264 CRF, platform video profiles, DeeperForensics VC, the codecs) include the
encode and the decode of their output; the face edits include their face search (its memory is emptied before
each repeat). Prints a table and writes benchmarks/results/ops.json (ops-strongest.json with `--strongest`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dfbench.config import Cell
from dfbench.data import load_dataset
from dfbench.perturbations import OPERATIONS, facezone
from dfbench.video.engine import CellPlan, sample_frames
from dfbench.video.ffmpeg import base_command

RESULTS = Path(__file__).parent / "results"


def make_source(folder: Path, frames: int) -> Path:
    """The first demo test video, scaled to 1280x720 and looped to `frames` frames (H.264 CRF 18)."""
    table = load_dataset("demo").table
    clip = table[table["split"] == "test"]["path"].iloc[0]
    out = folder / "source_720p.mp4"
    cmd = [*base_command(), "-stream_loop", "-1", "-i", str(clip), "-frames:v", str(frames),
           "-vf", "scale=1280:720:flags=bicubic", "-c:v", "libx264", "-preset", "medium", "-crf", "18",
           "-pix_fmt", "yuv420p", "-an", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def seconds(source: Path, cell: Cell, frames: int, repeats: int, workdir: Path) -> float:
    times = []
    for _ in range(repeats):
        facezone.forget()          # face edits: time the face search too, not the memory of the last repeat
        plan = CellPlan(cell.id, cell.steps(0, "bench"))
        started = time.perf_counter()
        received = sum(1 for _ in sample_frames(source, [plan], list(range(frames)), workdir, "video", None, 25.0))
        times.append(time.perf_counter() - started)
        if received != frames:
            raise RuntimeError(f"{cell.id}: {received} frames came back, expected {frames}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", default="")
    parser.add_argument("--strongest", action="store_true", help="time each op's strongest level, not its middle one")
    args = parser.parse_args()
    keys = args.ops.split(",") if args.ops else [k for k in OPERATIONS.names() if k != "none"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = make_source(folder, args.frames)
        base = seconds(source, Cell("none", 0), args.frames, args.repeats, folder)
        print(f"clean decode: {1000 * base / args.frames:.1f} ms per 720p frame", flush=True)
        for key in keys:
            op = OPERATIONS.get(key)
            if "video" not in op.media or op.attack is not None:    # attacks: benchmarks/attacks.py
                continue
            level = op.levels[-1] if args.strongest else op.levels[len(op.levels) // 2]
            total = seconds(source, Cell(key, level), args.frames, args.repeats, folder)
            row = {"op": key, "level": level, "category": op.category,
                   "ms_per_frame": round(1000 * (total - base) / args.frames, 2),
                   "ms_per_frame_with_decode": round(1000 * total / args.frames, 2)}
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("ops-strongest.json" if args.strongest else "ops.json")
    out.write_text(json.dumps({"frames": args.frames, "size": "1280x720", "repeats": args.repeats,
                               "clean_ms_per_frame": round(1000 * base / args.frames, 2), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
