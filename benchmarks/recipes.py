"""Every training recipe on the demo set: time per epoch and the clean AUC it reaches on the demo test split.

    python benchmarks/recipes.py [--frames 4] [--epochs 3] [--eval-frames 8] [--recipes sbi,cutout] [--batch-size N]

Each recipe trains its detector with `--epochs` epochs at most (the recipe's own values otherwise) on `frames`
frames per training video, then the kept checkpoint is scored with the `clean` suite on the demo test split
(`eval-frames` per video). Short runs on a CPU: the AUCs say what that budget reaches, not what the full
recipe reaches. `--batch-size` replaces every recipe's batch size (cutout's 1000 for the residual CNN is one
step per epoch on the demo set). Writes benchmarks/results/recipes.json (recipes-b<N>.json with --batch-size).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from dfbench.api import run
from dfbench.config import RunConfig
from dfbench.training import Overrides, TrainConfig, train_detector

RESULTS = Path(__file__).parent / "results"
RECIPES = {  # recipe: (detector, init, class map)
    "trueface-effb2": ("effb2", None, None),
    "cutout": ("resnet68", None, None),
    "sbi": ("efficientnet_lite0", "imagenet", None),
    "deepfeaturex": ("deepfeaturex", None, "sbi_blur=DM,sbi_sharpen=GAN"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eval-frames", type=int, default=8)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--batch-size", type=int, default=None, help="replaces the recipes' batch sizes")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfbench-recipes-") as tmp:
        for recipe in args.recipes.split(","):
            detector, init, class_map = RECIPES[recipe]
            out = Path(tmp) / f"{recipe}.pt"
            config = TrainConfig(detector=detector, dataset="demo", out=out, recipe=recipe, frames=args.frames,
                                 device="cpu", init=init, class_map=class_map,
                                 overrides=Overrides(epochs=args.epochs, batch_size=args.batch_size))
            result = train_detector(config, log=print)
            summary = run(RunConfig(detector=detector, suite="clean", dataset="demo", weights=str(out),
                                    frames=args.eval_frames, out=Path(tmp) / f"run-{recipe}", device="cpu"))
            auc = float(summary.results.matrix("auc")["none-0"].iloc[0])
            row = {"recipe": recipe, "detector": detector, "init": init or "random", "epochs_run": result.epochs_run,
                   "kept_epoch": result.best_epoch, "val_auc": round(result.best_val_auc, 4),
                   "test_clean_auc": round(auc, 4), "seconds_per_epoch": round(result.seconds_per_epoch, 1),
                   "stages": result.stages}
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("recipes.json" if args.batch_size is None else f"recipes-b{args.batch_size}.json")
    out.write_text(json.dumps({"frames": args.frames, "max_epochs": args.epochs, "eval_frames": args.eval_frames,
                               "batch_size": args.batch_size, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
