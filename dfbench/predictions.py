"""Predictions files: what ``dfbench leaderboard --predictions`` writes, and how ``dfbench score`` reads one back.

A predictions file holds video rows, one per (sample, cell) of a run (``sample_id, cell, score`` and the columns
of `VIDEO_COLUMNS`), and may hold frame rows, one per (sample, cell, frame) (`FRAME_COLUMNS`: a ``frame`` number
and the frame's ``status``). Scores are written at full precision (Python's shortest round-trip repr), so a file
read back gives the very numbers the leaderboard was computed from, ties included.

`score_predictions` turns such a file, made by dfbench or by anyone else, into the `Results` a dfbench run of the
same dataset and suite would have: it checks first that every (sample, cell) is there exactly once.

Example:
    >>> from dfbench.predictions import read_predictions                     # doctest: +SKIP
    >>> videos, frames, sha = read_predictions(["predictions.csv"])        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench.config import DEMO, NO_FACE_RULES, SuiteConfig, load_suite
from dfbench.data import Dataset, load_dataset, scored_samples
from dfbench.errors import ConfigError, DatasetError
from dfbench.metrics import AGGREGATIONS
from dfbench.reports import with_protocol
from dfbench.results import PROTOCOL_DEFAULTS, VIDEO_COLUMNS, Results
from dfbench.version import __version__

# The exported schemas (README.md, "Predictions"); columns are only ever added at the end.
PREDICTION_COLUMNS = ["sample_id", "label", "detector", "weights", "op", "level", "cell", "aggregation", "score",
                      "n_frames", "run_id", "fallback", "decision", "status", "method", "finder", "no_face",
                      "precision"]
FRAME_PREDICTION_COLUMNS = ["sample_id", "label", "detector", "weights", "op", "level", "cell", "frame", "status",
                            "score", "probs", "run_id"]
REQUIRED = ("sample_id", "cell", "score")
# What a file may say that the dataset and suite decide: labels, methods and cell names come from them.
FROM_DATASET_AND_SUITE = ("label", "method", "op", "level", "category", "position", "dataset")
SHOWN = 5          # how many missing or extra (sample, cell) pairs an error names


# -- export ---------------------------------------------------------------------------------------------------

def video_predictions(results: Results, aggregation: str | None = None) -> pd.DataFrame:
    """One row per (run, sample, cell) task: its video score (`Results.videos`), empty where the run dropped the
    video (``--no-face drop``), with the task's status and the run's protocol."""
    videos = results.videos(aggregation, dropped=True)
    status = results.tasks.drop_duplicates(["run_id", "sample_id", "cell"]).set_index(
        ["run_id", "sample_id", "cell"])["status"]
    videos["status"] = status.reindex(pd.MultiIndex.from_frame(videos[["run_id", "sample_id", "cell"]])).to_numpy()
    table = with_protocol(videos, results)[PREDICTION_COLUMNS]
    return table.sort_values(["run_id", "cell", "sample_id"], kind="stable").reset_index(drop=True)


def frame_predictions(results: Results) -> pd.DataFrame:
    """One row per (run, sample, cell, frame): the frame's status (``ok``, ``no_face`` or why not), its score
    (empty unless ok) and class probabilities where the detector gives them."""
    frames = results.frames
    return frames[FRAME_PREDICTION_COLUMNS].sort_values(["run_id", "cell", "sample_id", "frame"],
                                                        kind="stable").reset_index(drop=True)


def write_predictions(table: pd.DataFrame, path: Path) -> None:
    """`table` as CSV with every float at full precision (it reads back to the same numbers)."""
    table.to_csv(path, index=False)


# -- import ---------------------------------------------------------------------------------------------------

def read_predictions(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The video rows and the frame rows of predictions files, and the sha256 of their bytes.

    A row with a ``frame`` number is a frame row; every other row is a video row. Scores may be empty (no score:
    the no-face rule decides) and are otherwise finite numbers in [0, 1].

    Raises:
        ConfigError: a file that cannot be read, lacks ``sample_id``, ``cell`` or ``score``, or holds a score
            that is not a probability; one line naming the file, row and value.
    """
    digest = hashlib.sha256()
    videos, frames = [], []
    for path in map(Path, paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"Cannot read predictions file {str(path)!r}: {exc.strerror or exc}.") from None
        digest.update(data)
        table = _parse(path)
        is_frame = table["frame"].notna() if "frame" in table else pd.Series(False, index=table.index)
        videos.append(table[~is_frame])
        frames.append(table[is_frame])
    video_rows = pd.concat(videos, ignore_index=True)
    frame_rows = pd.concat(frames, ignore_index=True)
    if "frame" in frame_rows:
        frame_rows["frame"] = frame_rows["frame"].astype(int)
    return video_rows, frame_rows, digest.hexdigest()


def _parse(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Predictions file {str(path)!r} is not a CSV table ({str(exc).splitlines()[0]}).") \
            from None
    lacking = [c for c in REQUIRED if c not in table.columns]
    if lacking:
        raise ConfigError(f"Predictions file {str(path)!r} lacks column {lacking[0]!r}; required: "
                          f"{', '.join(REQUIRED)} (README.md, Predictions).")
    table["score"] = _numbers(table, "score", path)
    bad = table["score"].notna() & ~table["score"].between(0.0, 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"Score {table['score'].iloc[row]!r} in row {row + 2} of {str(path)!r} is not a probability "
                          "in [0, 1] (dfbench scores are P(fake)).")
    if "frame" in table:
        table["frame"] = _numbers(table, "frame", path)
    for column in ("label", "n_frames", "decision"):
        if column in table:
            table[column] = _numbers(table, column, path)
    if "fallback" in table:
        table["fallback"] = table["fallback"].str.lower().isin(("true", "1"))
    return table


def _numbers(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """`column` as floats, empty text as NaN; a value that is not a finite number is an error naming its row."""
    text = table[column].str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (text != "") & ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"{column} {table[column].iloc[row]!r} in row {row + 2} of {str(path)!r} is not a number.")
    return values.astype(float)


# -- scoring --------------------------------------------------------------------------------------------------

def score(predictions: str | Path | Sequence[str | Path], dataset: str = DEMO, suite: str = "video-ops", *,
          split: str | None = None, limit: int | None = None, frames: int | None = None, faces: str | None = None,
          no_face: str | None = None, fallback_score: float | None = None, detector: str | None = None,
          weights: str | None = None) -> Results:
    """The results of predictions files on a dataset and suite, named as `dfbench run` takes them.

    `split`, `limit`, `frames` and `faces` select the samples and the suite as `run` does (the same dataset and
    suite hashes); the other arguments are `score_predictions`'.

    Example:
        >>> res = dfbench.score("predictions.csv", dataset="demo", suite="video-ops", frames=8)   # doctest: +SKIP
        >>> res.matrix("auc")                                                                   # doctest: +SKIP
    """
    paths = [predictions] if isinstance(predictions, (str, Path)) else list(predictions)
    return score_predictions(paths, scored_samples(load_dataset(dataset), split, limit, []),
                             load_suite(suite).with_frames(frames).with_faces(faces), no_face=no_face,
                             fallback_score=fallback_score, detector=detector, weights=weights)


def score_predictions(paths: Sequence[str | Path], dataset: Dataset, suite: SuiteConfig, *,
                      no_face: str | None = None, fallback_score: float | None = None,
                      detector: str | None = None, weights: str | None = None) -> Results:
    """The `Results` of predictions files for `dataset` under `suite`, as a dfbench run would have them.

    The files may hold several runs (a ``run_id`` column, as ``dfbench leaderboard --predictions`` writes for
    several run folders); each must cover every (sample, cell) of the dataset and suite exactly once.

    Args:
        no_face: what a video row without a score counts as: ``fallback`` (`fallback_score`) or ``drop`` (left
            out); None takes the file's ``no_face`` column, else ``fallback``.
        fallback_score: None takes 0.5 (SBI's, dfbench's default).
        detector, weights: labels for files without ``detector`` and ``weights`` columns (default: ``predictions``
            and the first file's name).

    Raises:
        DatasetError: a missing, repeated or unknown (sample, cell), or a label that disagrees with the dataset.
    """
    videos, frames, sha = read_predictions(paths)
    if no_face is not None and no_face not in NO_FACE_RULES:
        raise ConfigError(f"--no-face must be one of {', '.join(NO_FACE_RULES)}; got {no_face!r}.")
    names = {"detector": detector or "predictions", "weights": weights or Path(paths[0]).name}
    for column, default in names.items():
        if column not in videos or (videos[column] == "").all():
            videos[column] = default
    if "run_id" not in videos or (videos["run_id"] == "").all():
        videos["run_id"] = sha[:16]
    cells = pd.DataFrame(suite.cell_rows()).assign(position=lambda t: range(len(t)))
    samples = dataset.table.set_index("sample_id")
    parts = [_one_run(run_id, group, frames, samples, cells, dataset, suite, sha, no_face, fallback_score)
             for run_id, group in videos.groupby("run_id", sort=False)]
    frames, tasks, runs, cell_tables, scored = (pd.concat([p[k] for p in parts], ignore_index=True) for k in range(5))
    return Results(frames, tasks, runs, cell_tables, videos=scored)


def _one_run(run_id: str, videos: pd.DataFrame, frames: pd.DataFrame, samples: pd.DataFrame, cells: pd.DataFrame,
             dataset: Dataset, suite: SuiteConfig, sha: str, no_face: str | None, fallback_score: float | None):
    """frames, tasks, runs, cells and videos tables of one run's rows."""
    labels = {"run_id": run_id, "detector": videos["detector"].iloc[0], "weights": videos["weights"].iloc[0],
              "dataset": dataset.name}
    _check_coverage(videos, samples, cells, run_id)
    meta = samples[["label", "method", "group", "path"]]
    first = videos.iloc[0]
    rule = no_face or (first.get("no_face") or "fallback")
    if rule not in NO_FACE_RULES:
        raise ConfigError(f"no_face {rule!r} of run {run_id!r} is not one of {', '.join(NO_FACE_RULES)}.")
    fallback = PROTOCOL_DEFAULTS["fallback_score"] if fallback_score is None else float(fallback_score)
    aggregation = first.get("aggregation") or "mean"
    if aggregation not in AGGREGATIONS:
        aggregation = "mean"
    decided = videos["decision"] if "decision" in videos else pd.Series(np.nan, index=videos.index)
    run = {**labels, "weights_sha256": sha, "suite": suite.name, "n_tasks": len(samples) * len(cells),
           "aggregation": aggregation, "finder": first.get("finder", ""), "no_face": rule, "fallback_score": fallback,
           "decision": "argmax" if decided.notna().any() else "threshold",
           "provenance": {"dfbench_version": __version__, "suite": suite.to_dict(), "suite_hash": suite.hash,
                          "identity": {"dataset_hash": dataset.hash, "precision": first.get("precision", "")},
                          "predictions_sha256": sha}}
    cell_table = cells.drop(columns="op_version").assign(**{k: labels[k] for k in ("run_id", "detector", "weights",
                                                                                   "dataset")})
    keyed = videos.drop(columns=[c for c in FROM_DATASET_AND_SUITE if c in videos.columns])
    keyed = keyed.merge(cell_table[["cell", "op", "level", "category", "position"]], on="cell", how="left")
    keyed = keyed.join(meta[["label", "method"]], on="sample_id")
    status = keyed["status"].replace("", "ok") if "status" in keyed else pd.Series("ok", index=keyed.index)
    columns = [c for c in samples.columns if c not in ("status", "message", "cell", "run_id")]
    tasks = keyed[["sample_id", "cell"]].assign(run_id=run_id, status=status.to_numpy(), message="").join(
        samples[columns], on="sample_id")
    frame_rows = _frames(frames, run_id, labels, cell_table, meta, suite.name)
    scored = frame_rows[frame_rows["status"] == "ok"].groupby(["sample_id", "cell"]).size()
    n_frames = keyed["n_frames"] if "n_frames" in keyed else pd.Series(np.nan, index=keyed.index)
    counted = scored.reindex(pd.MultiIndex.from_frame(keyed[["sample_id", "cell"]])).to_numpy()
    n_frames = n_frames.fillna(pd.Series(counted, index=keyed.index)).fillna(0).astype(int)
    missing = keyed["score"].isna()
    given = keyed["fallback"] if "fallback" in keyed else pd.Series(False, index=keyed.index)
    video_rows = keyed.assign(run_id=run_id, detector=labels["detector"], weights=labels["weights"],
                              dataset=dataset.name, aggregation=aggregation, n_frames=n_frames,
                              fallback=given | (missing & (rule == "fallback")),
                              score=keyed["score"].where(~missing | (rule != "fallback"), fallback),
                              decision=decided.to_numpy())
    return frame_rows, tasks, pd.DataFrame([run]), cell_table, video_rows[VIDEO_COLUMNS]


def _frames(frames: pd.DataFrame, run_id: str, labels: dict, cells: pd.DataFrame, meta: pd.DataFrame,
            suite: str) -> pd.DataFrame:
    """The frame rows of one run with the columns `Results.frames` has (none when the files hold none)."""
    columns = ["run_id", "sample_id", "cell", "frame", "status", "score", "n_faces", "probs"]
    rows = frames[frames["run_id"] == run_id] if "run_id" in frames and len(frames) else frames
    rows = rows.copy()
    for column, default in (("status", ""), ("probs", None), ("n_faces", 0)):
        if column not in rows:
            rows[column] = default
    rows["status"] = rows["status"].where(rows["status"] != "", np.where(rows["score"].notna(), "ok", "no_score"))
    rows["probs"] = rows["probs"].where(rows["probs"] != "", None)
    rows = rows.assign(run_id=run_id)[columns] if len(rows) else pd.DataFrame(columns=columns)
    known = rows["sample_id"].isin(meta.index) & rows["cell"].isin(cells["cell"])
    if not known.all():
        first = rows[~known].iloc[0]
        raise DatasetError(f"Frame row ({first['sample_id']!r}, {first['cell']!r}) of run {run_id!r} is not a "
                           "(sample, cell) of the dataset and suite.")
    rows = rows.merge(cells[["cell", "op", "level", "category", "position"]], on="cell", how="left")
    rows = rows.join(meta[["label", "method", "group"]], on="sample_id")
    return rows.assign(**{k: labels[k] for k in ("detector", "weights", "dataset")}, suite=suite)


def _check_coverage(videos: pd.DataFrame, samples: pd.DataFrame, cells: pd.DataFrame, run_id: str) -> None:
    """Every (sample, cell) of the dataset and suite exactly once, and labels as the dataset's."""
    keys = list(zip(videos["sample_id"], videos["cell"], strict=True))
    expected = {(s, c) for s in samples.index for c in cells["cell"]}
    seen: set[tuple[str, str]] = set()
    repeated = [k for k in keys if k in seen or seen.add(k)]     # type: ignore[func-returns-value]
    missing = sorted(expected - seen)
    extra = sorted(seen - expected)
    problems = []
    for what, pairs in (("missing", missing), ("repeated", sorted(set(repeated))), ("not in the dataset and suite",
                                                                                   extra)):
        if pairs:
            shown = ", ".join(f"({s}, {c})" for s, c in pairs[:SHOWN])
            problems.append(f"{len(pairs)} {what} (e.g. {shown})")
    if problems:
        raise DatasetError(f"Predictions of run {run_id!r} must hold every (sample, cell) of the dataset "
                           f"({len(samples)} samples) and suite ({len(cells)} cells) exactly once: "
                           f"{'; '.join(problems)}.")
    if "label" in videos:
        truth = videos["sample_id"].map(samples["label"])
        wrong = videos["label"].notna() & (videos["label"] != truth)
        if wrong.any():
            row = videos[wrong].iloc[0]
            raise DatasetError(f"Sample {row['sample_id']!r} has label {int(row['label'])} in the predictions and "
                               f"{int(truth[wrong].iloc[0])} in the dataset; labels come from the dataset.")
