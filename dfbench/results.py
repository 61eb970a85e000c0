"""The results API: every number of one or many runs, recomputed from their score stores (no model needed).

Example:
    >>> import dfbench
    >>> res = dfbench.load_results(["runs/effb2", "runs/sbi"])        # doctest: +SKIP
    >>> res.matrix("auc")                                               # doctest: +SKIP
    >>> res.with_ci("auc").head()                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench import metrics
from dfbench.errors import ConfigError, StoreError
from dfbench.metrics import METRICS
from dfbench.scoring import sample_rule, video_score
from dfbench.store import DAMAGED_HINT, STORE_NAME, ScoreStore
from dfbench.video.probe import media_of

CLEAN = "clean"
THREE_CLASSES = ("DM", "GAN", "REAL")
RUN_KEYS = ["run_id", "detector", "weights"]


@dataclass(frozen=True)
class Calibration:
    """How the frozen threshold of ``acc_cal`` is chosen on the clean cell: at the EER point, or at the
    lowest threshold with FPR <= `max_fpr`."""

    rule: str = "eer"
    max_fpr: float = 0.05

    @classmethod
    def parse(cls, text: str) -> Calibration:
        """``eer`` or ``fpr:0.05``."""
        if text == "eer":
            return cls()
        if text.startswith("fpr:"):
            return cls("fpr", float(text[4:]))
        raise ConfigError(f"Unknown calibration {text!r}; use 'eer' or 'fpr:<rate>' (e.g. fpr:0.05).")

    def threshold(self, labels: np.ndarray, scores: np.ndarray) -> float:
        if self.rule == "eer":
            return metrics.eer(labels, scores)[1]
        return metrics.threshold_at_fpr(labels, scores, self.max_fpr)


class Results:
    """Frame rows of one or more runs with their provenance; every table below derives from them.

    Attributes:
        frames: one row per (run, sample, cell, frame): run_id, detector, weights, dataset, suite, cell, op,
            level, category, position, sample_id, label, method, group, frame, status, score, probs.
        tasks: one row per (run, sample, cell) with its status and message.
        runs: one row per run: run_id, detector, weights, weights_sha256, dataset, suite, provenance (dict), and
            its scoring protocol: aggregation (video rule), finder, no_face (``fallback`` or ``drop``),
            fallback_score, decision (``threshold`` or ``argmax``); calibrate_on (``clean``, ``val`` or
            ``split:NAME``), and for a validation run the run it calibrates (``calibrates``, else '').
        cells: one row per (run, cell) of its suite, in suite order: run_id, detector, weights, dataset, cell,
            op, level, category, position.
    """

    def __init__(self, frames: pd.DataFrame, tasks: pd.DataFrame, runs: pd.DataFrame, cells: pd.DataFrame,
                 videos: pd.DataFrame | None = None, calibration: Results | None = None) -> None:
        """`videos`: the video table of each run's own rule when it is given rather than computed from `frames`
        (predictions scored by `dfbench.predictions`), with the columns `videos` returns. `calibration`: the
        validation runs of runs made with ``--calibrate-on val`` (their ``calibrates`` column names the run)."""
        self.frames, self.tasks, self.runs, self.cells = frames, tasks, runs, cells
        self.calibration = calibration
        self._tables: dict[tuple, pd.DataFrame] = {}                    # each metric table is computed once
        self._videos: dict[str | None, pd.DataFrame] = {} if videos is None else {None: videos}   # and each video table
        self._given_videos = videos is not None

    def incomplete(self) -> list[str]:
        """One line per unfinished run (a (sample, cell) task without its row): its metrics rest on part of it."""
        done = self.tasks.groupby("run_id").size()
        lines = []
        for run in self.runs.itertuples():
            finished = int(done.get(run.run_id, 0))
            if finished < run.n_tasks:
                lines.append(f"incomplete run: {finished} of {run.n_tasks} tasks ({run.detector} on {run.dataset}, "
                             f"run {run.run_id}); its metrics rest on the finished part. Run the same command "
                             "again to finish it.")
        return lines

    # -- videos ---------------------------------------------------------------------------------------------
    def videos(self, aggregation: str | None = None, dropped: bool = False) -> pd.DataFrame:
        """One score per (run, sample, cell) task: the video rule over its frames with status ok (None: each run's
        own rule).

        The set of videos is the same in every cell of a run: a task with no scored frame (no face, a decode
        error, a bad score) gets its run's fallback score (SBI's 0.5) and ``fallback`` True, unless the run was
        made with ``--no-face drop``, which leaves it out. ``decision`` is 1.0 (fake) or 0.0 for runs whose card
        decides by argmax (the most probable of the mean class probabilities is not REAL), else NaN (the score
        at the threshold decides).

        Args:
            dropped: also the tasks that ``--no-face drop`` leaves out, with a NaN score (the predictions file).
        """
        if aggregation not in self._videos:
            self._videos[aggregation] = self._video_table(aggregation)
        table = self._videos[aggregation]
        return (table if dropped else table[table["score"].notna()]).reset_index(drop=True)

    def _video_table(self, aggregation: str | None) -> pd.DataFrame:
        ok = self.frames[self.frames["status"] == "ok"]
        runs = self.runs.set_index("run_id")
        keys = ["run_id", "sample_id", "cell"]
        parts = []
        media = self._media()
        for run_id, group in ok.groupby("run_id", sort=False):
            how = aggregation or runs.loc[run_id, "aggregation"]
            by = group.groupby(keys, sort=False)
            scores = {key: video_score(s.to_numpy(), sample_rule(how, media.get(key[:2], "video")))
                      for key, s in by["score"]}
            part = pd.concat([pd.Series(scores, name="score", dtype=float).rename_axis(keys),
                              by.size().rename("n_frames")], axis=1)
            if _protocol(runs, run_id, "decision") == "argmax":
                part["decision"] = by["probs"].agg(_argmax_decision)
            parts.append(part.reset_index())
        scored = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keys, "score", "n_frames"])
        if "decision" not in scored:
            scored["decision"] = np.nan
        videos = self._task_meta().merge(scored, on=keys, how="left")
        missing = videos["score"].isna()
        policy = videos["run_id"].map(lambda r: _protocol(runs, r, "no_face"))
        fallback = videos["run_id"].map(lambda r: _protocol(runs, r, "fallback_score"))
        videos = videos.assign(fallback=missing & (policy == "fallback"),
                               score=videos["score"].where(~missing | (policy != "fallback"), fallback),
                               n_frames=videos["n_frames"].fillna(0).astype(int),
                               aggregation=videos["run_id"].map(
                                   lambda r: aggregation or runs.loc[r, "aggregation"]))
        return videos[VIDEO_COLUMNS]

    def _media(self) -> dict[tuple[str, str], str]:
        """(run, sample) -> ``video`` or ``image``, where the tasks know the sample's path."""
        if "path" not in self.tasks:
            return {}
        rows = self.tasks.drop_duplicates(["run_id", "sample_id"])
        return {(r, s): media_of(Path(p)) for r, s, p in zip(rows["run_id"], rows["sample_id"], rows["path"],
                                                              strict=True)}

    def _task_meta(self) -> pd.DataFrame:
        """Every (run, sample, cell) task with its cell's and sample's columns."""
        tasks = self.tasks[["run_id", "sample_id", "cell"]].drop_duplicates()
        samples = (self.tasks if "label" in self.tasks else self.frames)[["run_id", "sample_id", "label", "method"]]
        tasks = tasks.merge(samples.drop_duplicates(["run_id", "sample_id"]), on=["run_id", "sample_id"], how="left")
        return tasks.merge(self.cells[CELL_KEYS], on=["run_id", "cell"], how="inner")

    # -- metrics --------------------------------------------------------------------------------------------
    def metrics(self, aggregations: Sequence[str] = ("frame", "suite"), threshold: float = 0.5,
                calibration: str = "eer", calibrate_on: str | None = None) -> pd.DataFrame:
        """Every metric per (run, cell, aggregation), long format.

        Args:
            aggregations: ``frame`` (every scored frame), ``suite`` (each run's video rule), or a video rule
                (``mean``, ``median``, ``max``, ``vote``).
            threshold: the fixed threshold of acc, precision, recall, specificity, fpr and f1.
            calibration: the rule for ``acc_cal``'s threshold (``eer`` or ``fpr:<rate>``), found at the same
                aggregation and then frozen for every cell.
            calibrate_on: where it is found: ``clean`` (the run's clean cell), ``val`` (the clean cell of the
                validation split the run scored with ``--calibrate-on val``), or None: each run's own choice.

        Returns:
            columns run_id, detector, weights, dataset, cell, op, level, category, position, aggregation,
            metric, value, change (value minus the clean cell's), calibrate_on and cal_threshold (where
            ``acc_cal``'s threshold was found, and its value), flag (why the cell's scores say little about
            the detector, `metrics.degenerate`, else ''), n_videos (every video of the run's test set, unless it
            was made with ``--no-face drop``), n_fallback (videos scored with the fallback score: no scored frame
            in the cell), n_frames, n_no_face, n_errors.
        """
        rule = Calibration.parse(calibration)
        tables = []
        for agg in aggregations:
            key = (agg, float(threshold), calibration, calibrate_on)
            if key not in self._tables:
                rows = self._rows(agg)
                self._tables[key] = _metric_table(rows, self.cells[CELL_KEYS], agg, threshold,
                                                  self._thresholds(rows, agg, rule, calibrate_on))
            tables.append(self._tables[key])
        long = pd.concat(tables, ignore_index=True)
        counts = self._counts()
        long = long.merge(counts, on=["run_id", "cell"], how="left")
        clean = long[long["category"] == CLEAN].set_index(["run_id", "aggregation", "metric"])["value"]
        keys = pd.MultiIndex.from_frame(long[["run_id", "aggregation", "metric"]])
        long["change"] = long["value"].to_numpy() - clean.reindex(keys).to_numpy()
        return long.sort_values(["run_id", "aggregation", "position", "metric"], kind="stable").reset_index(drop=True)

    def _thresholds(self, rows: pd.DataFrame, aggregation: str, rule: Calibration,
                    calibrate_on: str | None) -> dict[str, tuple[str, float]]:
        """run_id -> (where acc_cal's threshold was found, the threshold) at one aggregation; NaN where that
        cell has no two classes."""
        out = {}
        runs = self.runs.set_index("run_id")
        for run in self.runs.itertuples():
            own = str(_protocol(runs, run.run_id, "calibrate_on"))
            source = calibrate_on or own
            if source == "clean":
                clean = rows[(rows["run_id"] == run.run_id) & (rows["category"] == CLEAN)]
            else:
                val = self.calibration
                mine = val.runs[val.runs["calibrates"] == run.run_id] if val is not None else pd.DataFrame()
                if val is None or not len(mine):
                    raise ConfigError(f"Run {run.run_id} ({run.detector}) has no validation scores to calibrate on; "
                                      "make it with --calibrate-on val (the scores it has stay).")
                val_rows = val._rows(aggregation)
                clean = val_rows[(val_rows["run_id"] == mine["run_id"].iloc[0]) & (val_rows["category"] == CLEAN)]
                source = own if own != "clean" else "val"
            value = _safe(rule.threshold, clean["label"].to_numpy(), clean["score"].to_numpy()) if len(clean) \
                else float("nan")
            out[run.run_id] = (source, value)
        return out

    def _rows(self, aggregation: str) -> pd.DataFrame:
        if aggregation == "frame":
            rows = self.frames[self.frames["status"] == "ok"].copy()
            runs = self.runs.set_index("run_id")
            argmax = rows["run_id"].map(lambda r: _protocol(runs, r, "decision")) == "argmax"
            decision = pd.Series(np.nan, index=rows.index)
            if argmax.any():
                decision[argmax] = rows.loc[argmax, "probs"].map(lambda p: _argmax_decision(pd.Series([p])))
            return rows.assign(aggregation="frame", n=1, decision=decision)
        videos = self.videos(None if aggregation == "suite" else aggregation)
        return videos.assign(n=videos["n_frames"])

    def _counts(self) -> pd.DataFrame:
        f = self.frames
        by = ["run_id", "cell"]
        videos = self.videos()
        counts = pd.DataFrame({
            "n_videos": videos.groupby(by).size(),
            "n_fallback": videos[videos["fallback"]].groupby(by).size(),
            "n_frames": f[f["status"] == "ok"].groupby(by).size(),
            "n_no_face": f[f["status"] == "no_face"].groupby(by).size(),
            "n_errors": f[~f["status"].isin(["ok", "no_face"])].groupby(by).size(),
        })
        failed = self.tasks[self.tasks["status"] != "ok"].groupby(by).size()
        counts["n_errors"] = counts["n_errors"].add(failed, fill_value=0)
        cells = self.cells[by].set_index(by)
        counts = counts.reindex(cells.index.union(counts.index).union(failed.index)).fillna(0).astype(int)
        return counts.reset_index()

    def flags(self, aggregation: str = "suite") -> pd.DataFrame:
        """The flagged cells (`metrics.degenerate`) at one level: run_id, detector, weights, dataset, cell, category,
        position, aggregation, flag; empty when no cell is flagged."""
        table = self.metrics([aggregation])
        table = table[table["flag"] != ""].drop_duplicates(["run_id", "cell", "aggregation"])
        return table[["run_id", "detector", "weights", "dataset", "cell", "category", "position", "aggregation",
                      "flag"]].reset_index(drop=True)

    def flag_lines(self, aggregation: str = "suite") -> list[str]:
        """One warning line per run with flagged cells, naming them and why (the CLI prints them)."""
        flags = self.flags(aggregation)
        level = "frame" if aggregation == "frame" else "video"
        lines = []
        for (detector, weights, run_id), group in flags.groupby(["detector", "weights", "run_id"], sort=False):
            n_cells = int((self.cells["run_id"] == run_id).sum())
            kinds = group["flag"].map(lambda f: "constant scores" if f.startswith("constant") else
                                      f"calls {metrics.ONE_SIDED:.0%} or more of both classes {f.rsplit(' ', 1)[1]}")
            reasons = "; ".join(f"{kind}: {', '.join(g['cell'])}" for kind, g in group.groupby(kinds, sort=False))
            lines.append(f"{detector} [{weights}]: {len(group)} of {n_cells} cells flagged degenerate at {level} "
                         f"level, their AUC and accuracy say little ({reasons}); see the flag column.")
        return lines

    # -- subgroups ------------------------------------------------------------------------------------------
    def subset(self, keep: pd.DataFrame) -> Results:
        """These results restricted to the (run_id, sample_id) pairs of `keep`: every table, count and flag then
        rests on those samples only."""
        pairs = pd.MultiIndex.from_frame(keep[["run_id", "sample_id"]].drop_duplicates())

        def rows(table: pd.DataFrame) -> pd.DataFrame:
            return table[pd.MultiIndex.from_frame(table[["run_id", "sample_id"]]).isin(pairs)].reset_index(drop=True)

        given = self._videos[None] if self._given_videos else None
        runs = self.runs.assign(n_tasks=self.runs["run_id"].map(
            lambda r: int((keep["run_id"] == r).sum()) * int((self.cells["run_id"] == r).sum())))
        return Results(rows(self.frames), rows(self.tasks), runs, self.cells,
                       videos=rows(given) if given is not None else None, calibration=self.calibration)

    def subgroups(self, column: str) -> dict[str, pd.DataFrame]:
        """The (run_id, sample_id) pairs of each subgroup of `column` (`method`, `group`, `split` or a manifest's
        own column): the fakes with that value, with the reals of the same value where there are some, else with
        every real (FaceForensics++'s reals have no manipulation method: each method's AUC is real vs that method's
        fakes, as its papers report it). A value that only reals hold is no subgroup (no AUC without fakes)."""
        samples = self.tasks.drop_duplicates(["run_id", "sample_id"])
        if column not in samples:
            known = [c for c in samples.columns if c not in ("run_id", "sample_id", "cell", "status", "message",
                                                             "n_frames", "seconds", "seed", "path", "label")]
            raise ConfigError(f"No sample column {column!r} to break results down by; these runs' samples have "
                              f"{', '.join(known)}.")
        samples = samples.assign(_value=samples[column].fillna("").astype(str))
        groups: dict[str, list[pd.DataFrame]] = {}
        for _, run in samples.groupby("run_id", sort=False):     # each run's fakes against that run's reals
            fakes, reals = run[run["label"] == 1], run[run["label"] == 0]
            for value in sorted(set(fakes["_value"]) - {""}):
                same = reals[reals["_value"] == value]
                groups.setdefault(value, []).extend([fakes[fakes["_value"] == value], same if len(same) else reals])
        return {value: pd.concat(parts)[["run_id", "sample_id"]] for value, parts in sorted(groups.items())}

    def by(self, column: str, aggregations: Sequence[str] = ("suite",), threshold: float = 0.5,
           calibration: str = "eer") -> pd.DataFrame:
        """`metrics` per subgroup of `column` (`subgroups`), with a ``subgroup`` column; every count, change and
        flag is the subgroup's own.

        Example:
            >>> res.by("method").query("metric == 'auc'")      # doctest: +SKIP
        """
        parts = [self.subset(keep).metrics(aggregations, threshold, calibration).assign(subgroup=value)
                 for value, keep in self.subgroups(column).items()]
        if not parts:
            raise ConfigError(f"No fake sample has a value in column {column!r}: nothing to break down.")
        return pd.concat(parts, ignore_index=True)

    # -- views ----------------------------------------------------------------------------------------------
    def matrix(self, metric: str = "auc", aggregation: str = "suite", percent: bool = False) -> pd.DataFrame:
        """Table-I layout: one row per (detector, weights, dataset), one column per cell, then the mean per
        category and ``avg`` over all perturbed cells."""
        table = self.metrics([aggregation])
        table = table[table["metric"] == metric]
        order = table.drop_duplicates("cell").sort_values("position")["cell"].tolist()
        wide = spread(table, ["detector", "weights", "dataset"], "cell").reindex(columns=order)
        cats = self.by_category(metric, aggregation)
        wide = wide.join(cats.set_index(["detector", "weights", "dataset"]))
        return (wide * 100 if percent else wide).reset_index()

    def by_category(self, metric: str = "auc", aggregation: str = "suite") -> pd.DataFrame:
        """Mean of `metric` over the cells of each category (``avg_<category>``) and over all perturbed cells."""
        table = self.metrics([aggregation])
        table = table[(table["metric"] == metric) & (table["category"] != CLEAN)]
        keys = ["detector", "weights", "dataset"]
        per_cat = spread(table, keys, "category", "mean")
        per_cat.columns = [f"avg_{c}" for c in per_cat.columns]
        per_cat["avg"] = table.groupby(keys)["value"].mean()
        return per_cat.reset_index()

    def with_ci(self, metric: str = "auc", aggregation: str = "suite", n: int = 1000, alpha: float = 0.05,
                seed: int = 0, threshold: float = 0.5) -> pd.DataFrame:
        """`metric` per (run, cell) with a percentile bootstrap interval that resamples videos, not frames
        (metrics at the fixed threshold use `threshold`)."""
        entry = metrics.metric(metric)
        if entry.score is None:
            supported = ", ".join(m.name for m in METRICS.values() if m.score is not None)
            raise ConfigError(f"with_ci supports {supported}; got {metric!r}.")
        score = entry.score
        fn = (lambda y, s: score(y, s, threshold=threshold)) if entry.threshold == "fixed" else score
        rows = self._rows(aggregation)
        out = []
        for (run_id, cell), g in rows.groupby(["run_id", "cell"], sort=False):
            y, s = g["label"].to_numpy(), g["score"].to_numpy()
            lo, hi = metrics.bootstrap_ci(fn, y, s, groups=g["sample_id"].to_numpy(), n=n, alpha=alpha, seed=seed)
            value = _safe(fn, y, s)
            out.append({"run_id": run_id, "detector": g["detector"].iloc[0], "weights": g["weights"].iloc[0],
                        "cell": cell, "category": g["category"].iloc[0], "position": g["position"].iloc[0],
                        "metric": metric, "aggregation": g["aggregation"].iloc[0], "value": value,
                        "ci_low": lo, "ci_high": hi, "n_videos": g["sample_id"].nunique()})
        return pd.DataFrame(out).sort_values(["run_id", "position"]).reset_index(drop=True)

    def mce(self, reference: str, metric: str = "auc", aggregation: str = "suite") -> pd.DataFrame:
        """Mean corruption error of each run against the run of detector `reference`; the error is 1 - metric
        for metrics where higher is better (AUC) and the metric itself for error rates (EER)."""
        entry = metrics.metric(metric)
        table = self.metrics([aggregation])
        table = table[(table["metric"] == metric) & (table["category"] != CLEAN)]
        errors = table["value"].map(entry.error).groupby([table["run_id"], table["op"]]).sum()
        ref_runs = self.runs[self.runs["detector"] == reference]["run_id"]
        if ref_runs.empty:
            raise ConfigError(f"No run of reference detector {reference!r}; runs: {', '.join(self.runs['detector'])}.")
        ref = errors.loc[ref_runs.iloc[0]].to_dict()
        rows = [{"run_id": run_id, "detector": detector, "weights": weights,
                 "mce": metrics.corruption_error(errors.loc[run_id].to_dict(), ref)}
                for run_id, detector, weights in self.runs[RUN_KEYS].itertuples(index=False)]
        return pd.DataFrame(rows)


def spread(table: pd.DataFrame, keys: list[str], column: str, how: str = "first") -> pd.DataFrame:
    """`table`'s ``value`` as one row per existing combination of `keys` and one column per `column` value.

    Unlike ``pivot_table(dropna=False)``, which crosses every detector with every weights label (rows that no
    run has), only the combinations present are rows; a metric that is NaN stays NaN.
    """
    grouped = table.groupby([*keys, column], sort=False, dropna=False)["value"]
    return (grouped.first() if how == "first" else grouped.mean()).unstack(column)


def _safe(fn, y: np.ndarray, s: np.ndarray) -> float:
    try:
        return float(fn(y, s))
    except ConfigError:
        return float("nan")


CELL_KEYS = ["run_id", "detector", "weights", "dataset", "cell", "op", "level", "category", "position"]
VIDEO_COLUMNS = ["run_id", "sample_id", "cell", "score", "n_frames", "aggregation", "fallback", "decision", "detector",
                 "weights", "dataset", "op", "level", "category", "position", "label", "method"]


def _metric_table(rows: pd.DataFrame, cells: pd.DataFrame, aggregation: str, threshold: float,
                  thresholds: dict[str, tuple[str, float]]) -> pd.DataFrame:
    """All metrics of every cell of `cells` (one row per run and cell) over `rows` (frame or video rows with
    label and score), acc_cal at each run's frozen threshold (`thresholds`: run_id -> (source, value)); a cell
    without scored rows gets NaN values, so every cell appears in every table."""
    out: list[dict] = []
    groups = {key: g for key, g in rows.groupby(["run_id", "cell"], sort=False)}
    for run_id, run_cells in cells.groupby("run_id", sort=False):
        source, cal = thresholds[run_id]
        for cell in run_cells.itertuples(index=False):
            g = groups.get((run_id, cell.cell), rows.iloc[0:0])
            y, s = g["label"].to_numpy(), g["score"].to_numpy()
            decided = g["decision"].to_numpy(dtype=float) if "decision" in g else np.full(len(g), np.nan)
            values = _all_metrics(y, s, threshold, cal, decided)
            values.update(_three_class(g))
            agg = "frame" if aggregation == "frame" else (g["aggregation"].iloc[0] if len(g) else aggregation)
            base = {**cell._asdict(), "aggregation": agg, "flag": metrics.degenerate(y, s, threshold, decided),
                    "calibrate_on": source, "cal_threshold": cal}
            out.extend({**base, "metric": k, "value": v} for k, v in values.items())
    return pd.DataFrame(out)


def _all_metrics(y: np.ndarray, s: np.ndarray, threshold: float, calibrated: float,
                 decided: np.ndarray | None = None) -> dict[str, float]:
    """Every two-class metric of `METRICS` over one cell's labels and scores (NaN where undefined).

    `decided` holds the card's own decision (1 fake, 0 real) where it decides by argmax, NaN elsewhere: the
    fixed-threshold metrics use it in place of ``score >= threshold``."""
    nan = float("nan")
    if decided is not None and np.isfinite(decided).any():
        s_fixed, t_fixed = np.where(np.isfinite(decided), decided, (s >= threshold).astype(float)), 0.5
    else:
        s_fixed, t_fixed = s, threshold
    fixed = metrics.threshold_metrics(y, s_fixed, t_fixed) if len(y) else {}
    values: dict[str, float] = {}
    for entry in METRICS.values():
        if entry.classes:
            continue
        if entry.threshold == "fixed":
            values[entry.name] = fixed.get(entry.name, nan)
        elif entry.threshold == "calibrated":
            values[entry.name] = metrics.accuracy(y, s, calibrated) if len(y) and np.isfinite(calibrated) else nan
        elif entry.score is not None:
            values[entry.name] = _safe(entry.score, y, s)
    return values


def _three_class(rows: pd.DataFrame) -> dict[str, float]:
    """3-class accuracy and macro F1 where frames carry DM/GAN/REAL probabilities and samples a DM/GAN method."""
    if "probs" not in rows or rows["probs"].isna().all():
        return {}
    target = np.where(rows["label"] == 0, "REAL", rows["method"].astype(str).str.upper())
    known = np.isin(target, THREE_CLASSES) & rows["probs"].notna().to_numpy()
    if not known.any():
        return {}
    probs = np.stack([np.asarray(json.loads(p)) if isinstance(p, str) else np.asarray(p)
                      for p in rows["probs"][known]])
    labels = np.array([THREE_CLASSES.index(t) for t in target[known]])
    return metrics.multiclass_metrics(labels, probs)


PROTOCOL_DEFAULTS = {"no_face": "drop", "fallback_score": 0.5, "decision": "threshold",   # stores before 0.9
                     "calibrate_on": "clean"}


def _protocol(runs: pd.DataFrame, run_id: str, key: str) -> object:
    """One setting of a run's scoring protocol (`runs` indexed by run id); older stores get their old rule."""
    value = runs.loc[run_id, key] if key in runs.columns else None
    return PROTOCOL_DEFAULTS[key] if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _argmax_decision(probs: pd.Series) -> float:
    """1.0 when the most probable of the mean class probabilities is not the last class (REAL), else 0.0; NaN
    without probabilities."""
    rows = [json.loads(p) if isinstance(p, str) else p for p in probs if p is not None and not
            (isinstance(p, float) and np.isnan(p))]
    if not rows:
        return float("nan")
    mean = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
    return float(int(np.argmax(mean)) != len(mean) - 1)


def load_results(run_dirs: str | Path | Sequence[str | Path]) -> Results:
    """The results of the runs stored in `run_dirs` (one folder or several), from their score stores."""
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    parts: list[tuple] = []
    for folder in dirs:
        store = ScoreStore(Path(folder) / STORE_NAME, readonly=True)
        try:
            ids = store.run_ids()
            if not ids:
                raise StoreError(f"{str(folder)!r} holds no run.")
            parts.extend(_read_run(store, run_id) for run_id in ids)
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:   # damage quick_check missed, foreign JSON
            raise StoreError(f"Cannot read the score store of {str(folder)!r} ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}). {DAMAGED_HINT}") from None
        finally:
            store.close()
    # the validation runs of --calibrate-on val are read as thresholds, never as results
    val = [p for p in parts if p[2]["calibrates"]]
    calibration = Results(*_concat(val)) if val else None
    return Results(*_concat([p for p in parts if not p[2]["calibrates"]]), calibration=calibration)


def _concat(parts: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The frames, tasks, runs and cells tables of `_read_run` parts, each concatenated."""
    return (pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True),
            pd.DataFrame([p[2] for p in parts]), pd.concat([p[3] for p in parts], ignore_index=True))


def _read_run(store: ScoreStore, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    _, prov = store.run_info(run_id)
    cells = store.table("cells", run_id)
    samples = store.table("samples", run_id).rename(columns={"grp": "group"})
    frames = store.table("frames", run_id)
    frames = frames.merge(cells[["cell", "op", "level", "category", "position"]], on="cell", how="left")
    frames = frames.merge(samples[["sample_id", "label", "method", "group"]], on="sample_id", how="left")
    protocol = {**PROTOCOL_DEFAULTS, "aggregation": prov["suite"]["aggregation"], "finder": prov["identity"].get(
        "finder", {}).get("finder", ""), **prov.get("protocol", {})}
    run = {"run_id": run_id, "detector": prov["detector"], "weights": prov["weights"],
           "weights_sha256": prov["weights_sha256"], "dataset": prov["identity"]["dataset"],
           "suite": prov["suite"]["name"], "provenance": prov, "n_tasks": len(samples) * len(cells),
           **{k: protocol[k] for k in ("aggregation", "finder", "no_face", "fallback_score", "decision")},
           "calibrate_on": prov.get("calibration", {}).get("on", "clean"), "calibrates": prov.get("calibrates", "")}
    frames = frames.assign(**{k: run[k] for k in ("detector", "weights", "dataset", "suite")})
    cells = cells.sort_values("position").assign(**{k: run[k] for k in ("detector", "weights", "dataset")})
    tasks = store.table("tasks", run_id)
    return frames, tasks.merge(_sample_columns(samples, set(tasks.columns)), on="sample_id", how="left"), run, cells


def _sample_columns(samples: pd.DataFrame, taken: set[str]) -> pd.DataFrame:
    """Each sample's label, method, group, split, path and its manifest's own columns (stored as JSON), for the
    tasks table; a manifest column named like a column of `taken` is left out."""
    table = samples[["sample_id", "label", "method", "group", "split", "path"]]
    if "extra" in samples and samples["extra"].notna().any():
        extra = pd.DataFrame([json.loads(e) if isinstance(e, str) else {} for e in samples["extra"]],
                             index=samples.index).fillna("").astype(str)
        table = table.join(extra[[c for c in extra.columns if c not in taken and c not in table.columns]])
    return table
