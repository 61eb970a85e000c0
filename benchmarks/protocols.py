"""The old protocol against the authors' protocol, per cell: video AUC and the number of videos it rests on.

    python benchmarks/protocols.py [--detectors effb2,meso4] [--frames 8] [--suite video-ops]
        [--meso-weights ../shared/reference/mesonet/weights/Meso4_DF.h5] [--meso-finder face_recognition_hog]

"old" is what dfbench did before the authors' protocols: mtcnn for every detector, videos without a scored
frame dropped from a cell, the mean of frame scores, ``--precision auto``. "new" is today's default: each card's
finder, every video in every cell (fallback 0.5), the card's video rule, fp32. Both run on the demo set's test
split (effb2 with its demo weights, meso4 with the weights file given). Prints a table per detector and writes
benchmarks/results/protocols.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

import dfbench
from dfbench.config import load_suite

RESULTS = Path(__file__).parent / "results"


def _mean_suite(name: str, folder: Path) -> str:
    """The suite with ``aggregation: mean`` and ``finder: mtcnn``, as every suite was before card rules."""
    suite = load_suite(name)
    data = {"name": f"{suite.name}-old", "version": suite.version, "aggregation": "mean", "finder": "mtcnn",
            "faces": suite.faces, "media": list(suite.media), "frames": {"per_video": suite.frames.per_video},
            "seed": suite.seed, "cells": [{"op": c.op, "level": c.level} for c in suite.cells]}
    path = folder / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="effb2,meso4")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--suite", default="video-ops")
    parser.add_argument("--meso-weights", default=str(Path(__file__).parents[2] / "shared/reference/mesonet/weights/"
                                                                                "Meso4_DF.h5"))
    parser.add_argument("--meso-finder", default=None, help="finder for meso4 under 'new' (default: its card's)")
    args = parser.parse_args()
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_suite = _mean_suite(args.suite, Path(tmp))
        for detector in args.detectors.split(","):
            weights = args.meso_weights if detector.startswith("meso") else "demo"
            tables = {}
            for name, options in (("old", {"suite": old_suite, "no_face": "drop", "precision": "auto"}),
                                  ("new", {"suite": args.suite, "finder": args.meso_finder if detector.startswith(
                                      "meso") else None})):
                started = time.perf_counter()
                summary = dfbench.run(detector=detector, dataset="demo", weights=weights, frames=args.frames,
                                      out=Path(tmp) / f"{detector}-{name}", device="cpu", face_cache=False,
                                      **options)
                seconds = time.perf_counter() - started
                table = summary.results.metrics(("suite",))
                auc = table[table["metric"] == "auc"].set_index("cell")
                run = summary.results.runs.iloc[0]
                tables[name] = auc[["value", "n_videos", "n_fallback"]].rename(columns={"value": "auc"})
                report.setdefault(detector, {})[name] = {
                    "seconds": round(seconds, 1), "finder": run["finder"], "rule": run["aggregation"],
                    "no_face": run["no_face"], "precision": summary.results.runs.iloc[0]["provenance"]["precision"],
                    "cells": {c: {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
                              for c, row in tables[name].iterrows()}}
            both = tables["old"].add_suffix("_old").join(tables["new"].add_suffix("_new"))
            print(f"\n{detector}: old = {report[detector]['old']['finder']}, drop, mean, "
                  f"{report[detector]['old']['precision']}; new = {report[detector]['new']['finder']}, fallback, "
                  f"{report[detector]['new']['rule']}, {report[detector]['new']['precision']}")
            print(both.round(3).to_string())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "protocols.json").write_text(json.dumps({"frames": args.frames, "suite": args.suite,
                                                        "runs": report}, indent=1))


if __name__ == "__main__":
    main()
