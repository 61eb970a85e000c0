"""Cost of the adversarial cells per face crop: scoring alone, FGSM then scoring, PGD-10 then scoring.

    python benchmarks/attacks.py [--detectors effb2,meso4] [--crops 16] [--repeats 3] [--device cpu]

Each detector (its demo weights where it ships some, else random ones: the cost does not depend on the weights)
gets `crops` random crops at its input size in one batch; every figure is the median over `repeats` of seconds
per crop, and the attacks' figures include the scoring pass after the attack, as a run spends them. Prints a
table and writes benchmarks/results/attacks.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def per_crop(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / n


def measure(key: str, n: int, repeats: int, device: str) -> dict:
    """Seconds per crop of one detector: scoring, FGSM + scoring, PGD-10 + scoring."""
    import torch

    from dfbench.detectors import get_detector
    from dfbench.perturbations import OPERATIONS
    from dfbench.perturbations.adversarial import perturb

    adapter = get_detector(key)
    adapter.load("demo" if adapter.card.demo_weights else "random", device, "fp32")
    size = adapter.card.input_size
    crops = torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(0)).to(adapter.device)
    start = torch.rand(crops.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    adapter.predict(crops)      # warm-up
    row = {"detector": key, "device": adapter.device, "input_size": size, "crops": n,
           "score_s_per_crop": per_crop(lambda: adapter.predict(crops), n, repeats)}
    for op in ("fgsm", "pgd"):
        attack = OPERATIONS.get(op).attack(4)      # the budget does not change the cost
        row[f"{op}_s_per_crop"] = per_crop(lambda a=attack: adapter.predict(perturb(adapter, crops, 1, a, start)),
                                           n, repeats)
    row["fgsm_x_score"] = row["fgsm_s_per_crop"] / row["score_s_per_crop"]
    row["pgd_x_score"] = row["pgd_s_per_crop"] / row["score_s_per_crop"]
    row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
    print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default="effb2")
    parser.add_argument("--crops", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = [measure(key, args.crops, args.repeats, args.device) for key in args.detectors.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attacks.json").write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
