"""Files and tables derived from the store: a run's CSV files, leaderboards, predictions, terminal tables.

Nothing here is written by hand: every number comes from `dfbench.results.Results`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench.metrics import METRICS
from dfbench.results import CLEAN, Results, spread

# results.csv, in the order README.md ("Outputs") documents.
RESULT_COLUMNS = ["detector", "weights", "weights_sha256", "dataset", "cell", "op", "level", "category", "metric",
                  "aggregation", "value", "change", "n_videos", "n_frames", "n_no_face", "n_errors", "n_fallback",
                  "finder", "no_face", "flag", "subgroup", "calibrate_on", "cal_threshold"]
RESULT_METRICS = tuple(METRICS)         # every metric, in the table's order

# The leaderboard's long schema (documented in README.md, "Leaderboards"); columns are only ever added at the end.
LEADERBOARD_COLUMNS = [
    "detector", "weights", "weights_sha256", "dataset", "dataset_hash", "suite", "suite_version", "suite_hash",
    "cell", "op", "level", "category", "aggregation", "metric", "value", "change", "ci_low", "ci_high",
    "n_videos", "n_frames", "n_no_face", "n_errors", "threshold", "calibration", "dfbench_version", "run_id",
    "n_fallback", "finder", "no_face", "precision", "flag", "subgroup", "calibrate_on", "cal_threshold"]


def with_protocol(table: pd.DataFrame, results: Results) -> pd.DataFrame:
    """`table` (with run_id) plus each run's finder, no-face rule and precision."""
    runs = results.runs.set_index("run_id")
    return table.assign(finder=table["run_id"].map(runs["finder"]), no_face=table["run_id"].map(runs["no_face"]),
                        precision=table["run_id"].map(lambda r: runs.loc[r, "provenance"]["identity"].get(
                            "precision", "")))


def with_subgroups(results: Results, by: str | None) -> list[tuple[str, Results]]:
    """(``''``, `results`) for the pooled rows, then (value, that subgroup's results) per subgroup of column `by`
    (`Results.subgroups`)."""
    pooled = [("", results)]
    return pooled if by is None else pooled + [(value, results.subset(keep))
                                               for value, keep in results.subgroups(by).items()]


def results_table(results: Results, by: str | None = None) -> pd.DataFrame:
    """A run's results.csv: every metric per cell, at frame level and with the suite's video rule; with `by`, the
    rows of every subgroup follow the pooled ones (``subgroup`` names it, '' for all samples)."""
    tables = []
    for value, part in with_subgroups(results, by):
        table = part.metrics(("frame", "suite"))
        table = table[table["metric"].isin(RESULT_METRICS)]
        sha = part.runs.set_index("run_id")["weights_sha256"]
        tables.append(with_protocol(table.assign(weights_sha256=table["run_id"].map(sha), subgroup=value), part))
    return pd.concat(tables, ignore_index=True)[RESULT_COLUMNS]


def matrix_table(results: Results, metric: str) -> pd.DataFrame:
    """matrix_<metric>.csv: video-level values per cell, category and overall averages, no-face counts per cell."""
    wide = results.matrix(metric)
    table = results.metrics(("suite",))
    table = table[table["metric"] == metric]
    for (detector, weights, dataset), group in table.groupby(["detector", "weights", "dataset"], sort=False):
        rows = (wide["detector"] == detector) & (wide["weights"] == weights) & (wide["dataset"] == dataset)
        for cell, n in zip(group["cell"], group["n_no_face"], strict=True):
            wide.loc[rows, f"n_no_face[{cell}]"] = int(n)
    return wide


def write_outputs(results: Results, out: Path, by: str | None = None) -> dict[str, Path]:
    """Write results.csv (with `by`, also per subgroup), matrix_auc.csv and matrix_acc.csv into `out`."""
    paths = {"results": out / "results.csv", "matrix_auc": out / "matrix_auc.csv",
             "matrix_acc": out / "matrix_acc.csv"}
    results_table(results, by).to_csv(paths["results"], index=False, float_format="%.6f")
    matrix_table(results, "auc").to_csv(paths["matrix_auc"], index=False, float_format="%.6f")
    matrix_table(results, "acc").to_csv(paths["matrix_acc"], index=False, float_format="%.6f")
    return paths


def leaderboard(results: Results, metrics: Sequence[str] = RESULT_METRICS, threshold: float = 0.5,
                calibration: str = "eer", ci: int = 0, seed: int = 0,
                aggregations: Sequence[str] = ("frame", "suite"), by: str | None = None,
                calibrate_on: str | None = None) -> pd.DataFrame:
    """The long leaderboard: every run, cell, aggregation (frame and video) and metric, with provenance.

    Args:
        ci: bootstrap resamples for 95 % intervals of auc and acc (0: no intervals, the columns stay empty).
        aggregations: ``frame`` and ``suite`` (each run's video rule); predictions without frame rows have only
            ``suite``.
        by: a sample column (``method``, a manifest's own): the rows of each subgroup follow the pooled rows,
            named in ``subgroup`` (`Results.subgroups`).
        calibrate_on: where acc_cal's threshold is found (`Results.metrics`); None: each run's own choice.
    """
    return pd.concat([_leaderboard(part, metrics, threshold, calibration, ci, seed, aggregations, calibrate_on).assign(
        subgroup=value) for value, part in with_subgroups(results, by)], ignore_index=True)[LEADERBOARD_COLUMNS]


def _leaderboard(results: Results, metrics: Sequence[str], threshold: float, calibration: str, ci: int, seed: int,
                 aggregations: Sequence[str], calibrate_on: str | None) -> pd.DataFrame:
    table = results.metrics(aggregations, threshold=threshold, calibration=calibration, calibrate_on=calibrate_on)
    table = table[table["metric"].isin(metrics)].copy()
    runs = results.runs.set_index("run_id")
    prov = runs["provenance"]
    table["weights_sha256"] = table["run_id"].map(runs["weights_sha256"])
    table["dataset_hash"] = table["run_id"].map(lambda r: prov[r]["identity"]["dataset_hash"])
    table["suite"] = table["run_id"].map(lambda r: prov[r]["suite"]["name"])
    table["suite_version"] = table["run_id"].map(lambda r: prov[r]["suite"]["version"])
    table["suite_hash"] = table["run_id"].map(lambda r: prov[r]["suite_hash"])
    table["dfbench_version"] = table["run_id"].map(lambda r: prov[r]["dfbench_version"])
    table["threshold"], table["calibration"] = threshold, calibration
    table["ci_low"], table["ci_high"] = np.nan, np.nan
    if ci:
        for metric in ("auc", "acc"):
            for agg in aggregations:
                _fill_ci(table, results.with_ci(metric, agg, n=ci, seed=seed, threshold=threshold), metric)
    return with_protocol(table, results)[[c for c in LEADERBOARD_COLUMNS if c != "subgroup"]].reset_index(drop=True)


def _fill_ci(table: pd.DataFrame, ci: pd.DataFrame, metric: str) -> None:
    for row in ci.itertuples():
        hit = (table["run_id"] == row.run_id) & (table["cell"] == row.cell) & (table["metric"] == metric) & (
            table["aggregation"] == row.aggregation)
        table.loc[hit, ["ci_low", "ci_high"]] = row.ci_low, row.ci_high


def leaderboard_wide(long: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """The wide matrix of a leaderboard: one row per (detector, weights, dataset, suite), video level."""
    video = long[(long["metric"] == metric) & (long["aggregation"] != "frame")]
    order = video.drop_duplicates("cell")["cell"].tolist()
    keys = ["detector", "weights", "dataset", "suite"]
    wide = spread(video, keys, "cell").reindex(columns=order)
    perturbed = video[video["category"] != CLEAN]
    wide["avg"] = perturbed.groupby(keys)["value"].mean()
    return wide.reset_index()


# -- terminal tables ------------------------------------------------------------------------------------------

def _labels(cells: pd.DataFrame) -> dict[str, str]:
    from dfbench.perturbations import OPERATIONS

    return {c: OPERATIONS.get(op).label(level) if op in OPERATIONS else c
            for c, op, level in zip(cells["cell"], cells["op"], cells["level"], strict=True)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def table_one(results: Results, metric: str = "auc"):
    """A rich Table shaped like Lu & Ebrahimi's Table I: one row per run, cells grouped by category, in %."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table_rows = results.metrics(("suite",))
    table_rows = table_rows[table_rows["metric"] == metric]
    cells = table_rows.drop_duplicates("cell").sort_values("position")
    labels = _labels(cells)
    table = Table(title=f"{metric.upper()} (%), video level", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column(escape("detector [weights]"), no_wrap=True)
    previous = None
    for cell, category in zip(cells["cell"], cells["category"], strict=True):
        table.add_column(f"{category if category not in (previous, CLEAN) else ''}\n{labels[cell]}", justify="right",
                         no_wrap=True)
        previous = category
    table.add_column("\navg", justify="right", style="bold")
    for (detector, weights), group in table_rows.groupby(["detector", "weights"], sort=False):
        values = group.set_index("cell")
        perturbed = values[values["category"] != CLEAN]["value"]
        table.add_row(escape(f"{detector} [{weights}]"), *[_pct(values["value"].get(c)) for c in cells["cell"]],
                      _pct(perturbed.mean()))
        table.add_row("  no-face frames", *[str(int(values["n_no_face"].get(c, 0))) for c in cells["cell"]],
                      str(int(values["n_no_face"].sum())), style="dim")
        table.add_row("  fallback videos", *[str(int(values["n_fallback"].get(c, 0))) for c in cells["cell"]],
                      str(int(values["n_fallback"].sum())), style="dim")
    return table


def cell_table(results: Results):
    """A rich Table with one row per cell of one run: AUC (video, frame), accuracy, counts; narrow terminals."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    m = results.metrics(("frame", "suite"))
    video = m[m["aggregation"] != "frame"]
    run = results.runs.iloc[0]
    pick = {k: v.set_index("cell")["value"] for k, v in video.groupby("metric")}
    frame_auc = m[(m["aggregation"] == "frame") & (m["metric"] == "auc")].set_index("cell")["value"]
    counts = video[video["metric"] == "auc"].set_index("cell")
    cells = counts.sort_values("position")
    labels = _labels(cells.reset_index())
    table = Table(title=escape(f"{run['detector']} [{run['weights']}] on {run['dataset']} (%)"), header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("category", "cell", "AUC(v)", "AUC(f)", "ACC(v)", "videos", "fallback", "no face", "errors"):
        table.add_column(col, justify="left" if col in ("category", "cell") else "right", no_wrap=True)
    previous = None
    for cell, row in cells.iterrows():
        table.add_row(row["category"] if row["category"] != previous else "", labels[cell], _pct(pick["auc"][cell]),
                      _pct(frame_auc[cell]), _pct(pick["acc"][cell]), str(int(row["n_videos"])),
                      str(int(row["n_fallback"])), str(int(row["n_no_face"])), str(int(row["n_errors"])),
                      end_section=row["category"] == CLEAN)
        previous = row["category"]
    perturbed = cells["category"] != CLEAN
    table.add_row("average", "perturbed", _pct(pick["auc"][cells.index[perturbed]].mean()),
                  _pct(frame_auc[cells.index[perturbed]].mean()), _pct(pick["acc"][cells.index[perturbed]].mean()),
                  "", "", "", "", style="bold")
    return table
