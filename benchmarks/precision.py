"""How far bf16 and fp16 move each adapter's scores from fp32: the largest |delta P(fake)| and the AUC change.

    python benchmarks/precision.py [--frames 4] [--keys effb2,meso4] [--device cpu]

Clean crops of the demo set's test split (each card's finder; meso4's through face_recognition_hog, which gives
the same crop rule much faster on a CPU) are scored under fp32, bf16 and fp16 autocast. effb2 uses its demo
weights, meso4 and mesoinception4 the authors' released ``*_DF.h5`` files, every other adapter random weights (its
deltas say how the arithmetic moves, not what trained weights would do). MesoNet is also scored on the authors'
own test crops (``shared/reference/mesonet/test_images``, whole crops). AUC is over videos (the card's video
rule), or over images for the MesoNet test crops. Writes benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dfbench import metrics
from dfbench.data import load_dataset
from dfbench.detectors import DETECTORS, get_detector
from dfbench.gather import Gatherer, choose_finder, clean_suite, make_finder
from dfbench.scoring import to_model_input, video_score

RESULTS = Path(__file__).parent / "results"
MESONET = Path(__file__).parents[2] / "shared" / "reference" / "mesonet"
PRECISIONS = ("fp32", "bf16", "fp16")


def _weights(key: str) -> str:
    if key == "effb2":
        return "demo"
    if key in ("meso4", "mesoinception4"):
        return str(MESONET / "weights" / ("Meso4_DF.h5" if key == "meso4" else "MesoInception_DF.h5"))
    return "random"


def _crops(key: str, frames: int, cache: dict) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Crops of the demo test split for `key`'s crop spec, their videos and the videos' labels."""
    card = get_detector(key).card
    choice = "face_recognition_hog" if card.finder == "face_recognition" else "card"
    finder, _ = choose_finder(choice, card.finder, key, card.crop.whole_frame)
    ident = (repr(card.crop), repr(finder.describe()))
    if ident not in cache:
        data = load_dataset("demo").select("test", None)
        gatherer = Gatherer(clean_suite(frames), finder, card.crop)
        crops, owners, labels = [], [], {}
        for sample in data.table.itertuples():
            got = gatherer.gather_all(str(sample.sample_id), Path(sample.path))
            crops.append(got.crops)
            owners += [str(sample.sample_id)] * len(got.crops)
            labels[str(sample.sample_id)] = int(sample.label)
        cache[ident] = (np.concatenate(crops), owners, labels)
    return cache[ident]


def _scores(key: str, images: np.ndarray, precision: str, device: str) -> np.ndarray:
    adapter = get_detector(key)
    adapter.load(_weights(key), device=device, precision=precision)
    out = [adapter.predict(to_model_input(images[i:i + 16], device)).cpu().numpy()
           for i in range(0, len(images), 16)]
    return np.concatenate(out).astype(np.float64)


def _video_auc(scores: np.ndarray, owners: list[str], labels: dict[str, int], rule: str) -> float:
    videos = sorted(set(owners))
    owner = np.asarray(owners)
    values = [video_score(scores[owner == v], rule) for v in videos]
    return metrics.auc([labels[v] for v in videos], values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--keys", default=",".join(k for k in DETECTORS.names()))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cache: dict = {}
    report = {}
    for key in args.keys.split(","):
        started = time.perf_counter()
        images, owners, labels = _crops(key, args.frames, cache)
        card = get_detector(key).card
        by = {p: _scores(key, images, p, args.device) for p in PRECISIONS}
        row = {"weights": Path(_weights(key)).name, "crops": len(images), "videos": len(labels)}
        for p in PRECISIONS:
            row[f"auc_{p}"] = _video_auc(by[p], owners, labels, card.aggregation)
        for p in PRECISIONS[1:]:
            row[f"max_delta_{p}"] = float(np.abs(by[p] - by["fp32"]).max())
            row[f"auc_change_{p}"] = row[f"auc_{p}"] - row["auc_fp32"]
        row["seconds"] = round(time.perf_counter() - started, 1)
        report[key] = row
        print(key, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    for key in ("meso4", "mesoinception4"):
        files = sorted((MESONET / "test_images").glob("*/*"))
        if key not in args.keys.split(",") or not files:
            continue
        spec = get_detector(key).card.crop
        gatherer = Gatherer(clean_suite(1), make_finder("none"), spec)
        images = np.concatenate([gatherer.gather_all(f.name, f).crops for f in files])
        labels = [0 if f.parent.name == "real" else 1 for f in files]
        by = {p: _scores(key, images, p, args.device) for p in PRECISIONS}
        row = {"images": len(files)}
        for p in PRECISIONS:
            row[f"auc_{p}"] = metrics.auc(labels, by[p])
        for p in PRECISIONS[1:]:
            row[f"max_delta_{p}"] = float(np.abs(by[p] - by["fp32"]).max())
            row[f"auc_change_{p}"] = row[f"auc_{p}"] - row["auc_fp32"]
        report[f"{key} (authors' test crops)"] = row
        print(key, "authors' test crops", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"precision-{args.device.split(':')[0]}.json").write_text(json.dumps(
        {"frames": args.frames, "device": args.device, "adapters": report}, indent=1))


if __name__ == "__main__":
    main()
