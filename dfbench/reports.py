"""Reports derived from the store: the long results table, the Table-I style matrices, the terminal table.

Nothing here is written by hand: every number comes from `metrics.cell_metrics` over the store's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench.metrics import cell_metrics
from dfbench.store import ScoreStore

RESULT_COLUMNS = ["detector", "weights", "dataset", "op", "level", "category", "metric", "aggregation", "value",
                  "n_videos", "n_frames", "n_no_face", "n_errors"]
CLEAN = "clean"


@dataclass(frozen=True)
class RunResults:
    """Everything a report needs about one run, read from its store."""

    run_id: str
    config: dict
    provenance: dict
    cells: pd.DataFrame      # cell, op, level, category, position
    results: pd.DataFrame    # RESULT_COLUMNS (+ cell)

    @property
    def aggregation(self) -> str:
        return str(self.provenance["suite"]["aggregation"])


def load_run(store: ScoreStore, run_id: str) -> RunResults:
    """Recompute a run's metrics from its store alone (no model needed)."""
    config, prov = store.run_info(run_id)
    cells = store.table("cells", run_id).sort_values("position")
    samples = store.table("samples", run_id)
    frames = store.table("frames", run_id)
    tasks = store.table("tasks", run_id)
    labels = samples.set_index("sample_id")["label"]
    aggregation = prov["suite"]["aggregation"]
    metrics = cell_metrics(frames, labels, list(cells["cell"]), aggregation)
    errors = _error_counts(frames, tasks)
    meta = cells.set_index("cell")
    out = metrics.assign(
        detector=prov["detector"], weights=prov["weights"], dataset=prov["identity"]["dataset"],
        op=metrics["cell"].map(meta["op"]), level=metrics["cell"].map(meta["level"]),
        category=metrics["cell"].map(meta["category"]), n_errors=metrics["cell"].map(errors).fillna(0).astype(int))
    return RunResults(run_id, config, prov, cells, out[["cell"] + RESULT_COLUMNS])


def _error_counts(frames: pd.DataFrame, tasks: pd.DataFrame) -> pd.Series:
    """Per cell: frames that failed for reasons other than no face, plus samples whose cell failed whole."""
    bad_frames = frames[~frames["status"].isin(["ok", "no_face"])].groupby("cell").size()
    bad_tasks = tasks[tasks["status"] != "ok"].groupby("cell").size()
    return bad_frames.add(bad_tasks, fill_value=0)


def matrix(runs: list[RunResults], metric: str) -> pd.DataFrame:
    """One row per (detector, weights), one column per cell, then per-category and overall averages.

    Values are video-level (the suite's aggregation). Averages skip the clean cell; ``avg`` is the mean
    over every perturbed cell, as the "Average" column of Lu & Ebrahimi's Table I. The no-face frame
    count of each cell follows as ``n_no_face[<cell>]``.
    """
    rows = []
    for run in runs:
        table = run.results[(run.results["metric"] == metric) & (run.results["aggregation"] == run.aggregation)]
        row: dict[str, object] = {"detector": table["detector"].iloc[0], "weights": table["weights"].iloc[0],
                                  "dataset": table["dataset"].iloc[0]}
        row.update(dict(zip(table["cell"], table["value"], strict=True)))
        perturbed = table[table["category"] != CLEAN]
        for category, group in perturbed.groupby("category", sort=False):
            row[f"avg_{category}"] = _mean(group["value"])
        row["avg"] = _mean(perturbed["value"])
        row.update({f"n_no_face[{c}]": n for c, n in zip(table["cell"], table["n_no_face"], strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else float("nan")


def write_outputs(run: RunResults, out: Path) -> dict[str, Path]:
    """Write results.csv, matrix_auc.csv and matrix_acc.csv into `out`."""
    paths = {"results": out / "results.csv", "matrix_auc": out / "matrix_auc.csv",
             "matrix_acc": out / "matrix_acc.csv"}
    run.results[RESULT_COLUMNS].to_csv(paths["results"], index=False, float_format="%.6f")
    matrix([run], "auc").to_csv(paths["matrix_auc"], index=False, float_format="%.6f")
    matrix([run], "acc").to_csv(paths["matrix_acc"], index=False, float_format="%.6f")
    return paths


def cell_label(op: str, level: str) -> str:
    """Short column label: the op, with its level when the op has a parameter."""
    if op == "none":
        return CLEAN
    return op if level in ("1",) else f"{op} {level}"


def rich_matrix(run: RunResults, metric: str = "auc"):
    """A rich Table shaped like Table I: columns grouped by category, in percent, with no-face counts."""
    from rich.table import Table

    table = run.results[(run.results["metric"] == metric) & (run.results["aggregation"] == run.aggregation)]
    frame_level = run.results[(run.results["metric"] == metric) & (run.results["aggregation"] == "frame")]
    title = f"{metric.upper()} (%) per operation: {run.provenance['detector']} [{run.provenance['weights']}] " \
            f"on {run.provenance['identity']['dataset']}"
    rich = Table(title=title, show_lines=False, header_style="bold")
    rich.add_column("", style="bold", no_wrap=True)
    for _, cell in run.cells.iterrows():
        rich.add_column(f"{cell['category']}\n{cell_label(cell['op'], cell['level'])}", justify="right")
    rich.add_column("average\nperturbed", justify="right", style="bold")
    perturbed = table[table["category"] != CLEAN]["value"]
    rich.add_row(f"video ({run.aggregation})", *[_pct(v) for v in table["value"]], _pct(_mean(perturbed)))
    fl_perturbed = frame_level[frame_level["category"] != CLEAN]["value"]
    rich.add_row("frame", *[_pct(v) for v in frame_level["value"]], _pct(_mean(fl_perturbed)))
    rich.add_row("no-face frames", *[str(n) for n in table["n_no_face"]], str(int(table["n_no_face"].sum())),
                 style="dim")
    if table["n_errors"].sum():
        rich.add_row("errors", *[str(n) for n in table["n_errors"]], str(int(table["n_errors"].sum())), style="red")
    return rich


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"
