"""Model-only throughput of every adapter: images per second on pre-made inputs, fp32 and bf16.

    python benchmarks/adapters.py [--batches 16] [--repeats 3] [--device cpu] [--keys effb2,sbi]
    python benchmarks/adapters.py --device cuda --batches 1,64,256 --precisions fp32,bf16,fp16 --repeats 10

Each adapter is built with random weights (throughput does not depend on the values), given a batch of
random images at its card's input size, warmed up once, then timed `repeats` times; the median is reported.
Prints a table and writes benchmarks/results/adapters.json (adapters-cuda.json on a GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dfbench.detectors import DETECTORS, get_detector

RESULTS = Path(__file__).parent / "results"


def images_per_second(key: str, precision: str, batch: int, repeats: int, device: str) -> float:
    adapter = get_detector(key)
    adapter.load("random", device=device, precision=precision)
    size = adapter.card.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)
    adapter.predict(images)                                   # warm-up: allocation, autotuning
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        adapter.predict(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="16", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--keys", default=",".join(DETECTORS.names()))
    args = parser.parse_args()
    rows = []
    for key in args.keys.split(","):
        row: dict[str, object] = {"adapter": key, "input_px": get_detector(key).card.input_size}
        for precision in args.precisions.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                row[f"img_s_{precision}_b{batch}"] = round(images_per_second(key, precision, batch, args.repeats,
                                                                             args.device), 2)
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    RESULTS.mkdir(exist_ok=True)
    device = "" if args.device == "cpu" else f"-{args.device.split(':')[0]}"
    out = RESULTS / f"adapters{device}.json"
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    out.write_text(json.dumps({"device": args.device, "gpu": gpu, "batches": args.batches, "repeats": args.repeats,
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
