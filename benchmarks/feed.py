"""How fast dfbench can hand cached crops to a model that costs nothing: the ceiling the host side puts on a GPU.

    python benchmarks/feed.py [--videos 4] [--seconds 3] [--device cpu] [--workers 0,2] [--repeats 3]
    python benchmarks/feed.py --device cuda --workers 0,4,12            # on a GPU

Once a first detector has kept its crops (`--keep-crops`), a second one with the same crop spec only reads them and
runs its model. On an H100 a model scores 10^3-10^4 crops per second (`benchmarks/adapters.py`), so what dfbench
does around the model (reading the cache, moving crops between processes, batching, copying to the device, turning
scores into rows, writing the store) can set the pace instead, and the GPU then idles.

1. Builds the benchmark set of `stages.py` and runs effb2 on it once, keeping its crops (not timed here).
2. For each `--workers` value, `--repeats` times: `dfbench run` of `--detector` from those crops, in a child
   process, with the adapter's network replaced by a null one (a linear map of each crop's mean colour, same output
   shape). The time from the end of `prepare` to the end of the run, over the crops scored, is the feed rate.
3. The real network's model-only rate on the same device (`stages.model_only`). Their ratio bounds the device's
   busy share from the host side alone: `host_bound_utilisation` = min(1, feed rate / model rate).

Printed and written to benchmarks/results/feed-<device>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from stages import RUN, build_set, dfbench_run, machine, model_only, save_report  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
import torch
from dfbench.api import run
from dfbench.config import RunConfig

class NullNet(torch.nn.Module):
    # a crop's mean colour through one linear layer, shaped like the real network's output
    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.linear = torch.nn.Linear(3, int(torch.tensor(shape).prod()))

    def forward(self, x):
        return self.linear(x.float().mean((2, 3))).reshape(len(x), *self.shape)

marks = {}

def swap(prep):
    adapter = prep.adapter
    side = adapter.card.crop.size
    shape = tuple(adapter.forward(torch.zeros(1, 3, side, side)).shape[1:])
    adapter.model = NullNet(shape).to(adapter.device)
    marks["prepared"] = time.perf_counter()

options = json.loads(sys.argv[1])
options["out"] = Path(options["out"])
summary = run(RunConfig(**options), on_prepared=swap)
seconds = time.perf_counter() - marks["prepared"]
print(json.dumps({"seconds": seconds, "stages": summary.stages}))
"""


def feed_run(manifest: Path, out: Path, frames: int, detector: str, cache: Path, workers: int) -> dict:
    """One run of `detector` from the kept crops with a null network; its time after `prepare` and stages."""
    result = dfbench_run(manifest, out, frames, "redetect", detector=detector, cache=cache, child=CHILD,
                         workers=workers)
    if "cached_crops" not in result["stages"]:
        raise RuntimeError(f"{detector} did not read the kept crops (another crop spec than effb2's?)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--detector", default="efficientnet_lite0",
                        help="a detector with effb2's crop spec (efficientnet_lite0, effb2, resnet68)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", default="0,2", help="comma-separated --workers values to compare")
    parser.add_argument("--batch-size", type=int, default=None, help="dfbench's --batch-size (default: its own)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per --workers value (the median is reported)")
    args = parser.parse_args()
    RUN.update(device=args.device, batch_size=args.batch_size)
    report: dict = {"videos": args.videos, "seconds_per_video": args.seconds, "frames": args.frames,
                    "detector": args.detector, "run": dict(RUN), "machine": machine(), "feed": {}}
    with tempfile.TemporaryDirectory(prefix="dfbench-feed-") as tmp:
        folder = Path(tmp)
        (folder / "set").mkdir()
        manifest = build_set(folder / "set", args.videos, args.seconds)
        cache = folder / "cache"
        first = dfbench_run(manifest, folder / "keep", args.frames, "redetect", cache=cache, keep_crops=True)
        print(f"effb2 kept its crops: {first['seconds']:.1f} s", flush=True)
        for workers in [int(w) for w in args.workers.split(",")]:
            runs = [feed_run(manifest, folder / f"feed-{workers}-{i}", args.frames, args.detector, cache, workers)
                    for i in range(args.repeats)]
            crops = runs[0]["stages"]["inference"]["items"]
            seconds = float(np.median([r["seconds"] for r in runs]))
            middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            report["feed"][str(workers)] = {"crops": crops, "seconds": round(seconds, 3),
                                            "crops_per_s": round(crops / seconds, 1),
                                            "all_seconds": [round(r["seconds"], 3) for r in runs],
                                            "stages_of_median_run": middle["stages"]}
            print(f"--workers {workers}: {crops} crops in {seconds:.2f} s after prepare "
                  f"({crops / seconds:.0f} crops/s, median of {args.repeats})", flush=True)
        model = model_only(args.detector, crops)
        report["model_only"] = model
        best = max(v["crops_per_s"] for v in report["feed"].values())
        report["host_bound_utilisation"] = round(min(1.0, best / model["img_s"]), 3)
        print(f"model alone: {model['img_s']:.0f} img/s ({model['precision']}, batch {model['batch']}); "
              f"host-bound utilisation at the best feed rate: {report['host_bound_utilisation']:.3f}")
    save_report(report, f"feed-{args.device.split(':')[0]}")


if __name__ == "__main__":
    main()
