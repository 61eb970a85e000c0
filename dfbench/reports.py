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
                  "n_videos", "n_frames", "n_no_face", "n_errors", "weights_sha256"]
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
        category=metrics["cell"].map(meta["category"]), n_errors=metrics["cell"].map(errors).fillna(0).astype(int),
        weights_sha256=prov["weights_sha256"])
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


def _video(run: RunResults, metric: str) -> pd.DataFrame:
    res = run.results
    return res[(res["metric"] == metric) & (res["aggregation"] == run.aggregation)].set_index("cell")


def _labels(run: RunResults) -> dict[str, str]:
    from dfbench.perturbations import OPERATIONS

    return {c: OPERATIONS.get(op).label(level) if op in OPERATIONS else c
            for c, op, level in zip(run.cells["cell"], run.cells["op"], run.cells["level"], strict=True)}


def table_one(runs: list[RunResults], metric: str = "auc"):
    """A rich Table shaped like Lu & Ebrahimi's Table I: one row per run, cells grouped by category, in %."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    first = runs[0]
    labels = _labels(first)
    table = Table(title=f"{metric.upper()} (%), video level", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column(escape("detector [weights]"), no_wrap=True)
    previous = None
    for cell, category in zip(first.cells["cell"], first.cells["category"], strict=True):
        header = f"{category if category not in (previous, CLEAN) else ''}\n{labels[cell]}"
        table.add_column(header, justify="right", no_wrap=True)
        previous = category
    table.add_column("\navg", justify="right", style="bold")
    for run in runs:
        values = _video(run, metric)
        perturbed = values[values["category"] != CLEAN]["value"]
        name = escape(f"{run.provenance['detector']} [{run.provenance['weights']}]")
        table.add_row(name, *[_pct(values["value"].get(c)) for c in first.cells["cell"]], _pct(_mean(perturbed)))
        table.add_row("  no-face frames", *[str(int(values["n_no_face"].get(c, 0))) for c in first.cells["cell"]],
                      str(int(values["n_no_face"].sum())), style="dim")
    return table


def cell_table(run: RunResults):
    """A rich Table with one row per cell: video and frame AUC, video accuracy, counts; narrow terminals."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    auc_v, acc_v = _video(run, "auc"), _video(run, "acc")
    res = run.results
    auc_f = res[(res["metric"] == "auc") & (res["aggregation"] == "frame")].set_index("cell")
    labels = _labels(run)
    title = escape(f"{run.provenance['detector']} [{run.provenance['weights']}] on "
                   f"{run.provenance['identity']['dataset']} (%)")
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD)
    for col in ("category", "cell", "AUC(v)", "AUC(f)", "ACC(v)", "videos", "no face", "errors"):
        table.add_column(col, justify="left" if col in ("category", "cell") else "right", no_wrap=True)
    previous = None
    for cell, category in zip(run.cells["cell"], run.cells["category"], strict=True):
        table.add_row(category if category != previous else "", labels[cell], _pct(auc_v["value"][cell]),
                      _pct(auc_f["value"][cell]), _pct(acc_v["value"][cell]), str(int(auc_v["n_videos"][cell])),
                      str(int(auc_v["n_no_face"][cell])), str(int(auc_v["n_errors"][cell])),
                      end_section=category == CLEAN)
        previous = category
    perturbed = auc_v["category"] != CLEAN
    table.add_row("average", "perturbed", _pct(_mean(auc_v["value"][perturbed])),
                  _pct(_mean(auc_f["value"][perturbed])), _pct(_mean(acc_v["value"][perturbed])), "", "", "",
                  style="bold")
    return table


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"
