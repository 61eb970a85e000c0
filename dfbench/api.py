"""The Python API behind the CLI and notebooks.

Example:
    >>> import dfbench
    >>> summary = dfbench.run(detector="effb2", suite="video-ops", frames=4)   # doctest: +SKIP
    >>> summary.matrix("auc")                                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfbench.cluster import backend_for
from dfbench.config import RunConfig
from dfbench.errors import StoreError
from dfbench.outputs import prepare_folder
from dfbench.pipeline import Prepared, ProgressFn, execute, prepare
from dfbench.reports import write_outputs
from dfbench.results import Results, load_results
from dfbench.store import STORE_NAME, FolderLock, ScoreStore
from dfbench.timing import StageClock


@dataclass
class RunSummary:
    """What a finished run returns: where its files are, its metrics, and how long each stage took."""

    out: Path
    run_id: str
    results: Results
    files: dict[str, Path]
    stages: dict[str, dict[str, float]]
    seconds: float
    n_samples: int
    n_resumed: int
    notes: list[str] = field(default_factory=list)

    def matrix(self, metric: str = "auc") -> pd.DataFrame:
        """The Table-I style matrix (video level) for ``auc`` or ``acc``."""
        return self.results.matrix(metric)


def run(config: RunConfig | None = None, *, on_progress: ProgressFn | None = None,
        on_prepared=None, **options) -> RunSummary:
    """Run a detector over every cell of a suite and write the store, run.json and the CSV files.

    Pass a `RunConfig`, or its fields as keyword arguments (``detector="effb2", dataset="demo"``).
    Running the same configuration into the same folder again resumes: finished work is skipped.
    """
    config = config or RunConfig(**options)
    started = time.perf_counter()
    # Before the model loads: a folder that cannot be written, or a damaged store in it, is one line.
    prepare_folder(Path(config.out), "--out")
    if (Path(config.out) / STORE_NAME).is_file():
        ScoreStore(Path(config.out) / STORE_NAME, readonly=True).close()   # quick_check, once per run
    backend = backend_for(config.backend, config.address)    # Ray installed, the cluster's address answering
    prep = prepare(config)
    if on_prepared is not None:
        on_prepared(prep)
    out = Path(config.out)
    lock = FolderLock(out)
    lock.acquire()
    try:
        store = ScoreStore(out / STORE_NAME, checked=True)   # checked above, or new
        try:
            _check_same_run(store, prep)
            for part in (prep, prep.calibration):
                if part is not None:
                    store.register_run(part.run_id, part.provenance["config"], part.provenance, part.dataset.table,
                                       part.suite.cell_rows())
            n_resumed = len({s for s, _ in store.finished(prep.run_id)})
            (out / "run.json").write_text(json.dumps({"run_id": prep.run_id, **prep.provenance}, indent=2))
            with backend or contextlib.nullcontext():
                clock = StageClock()
                for part in (prep.calibration, prep):
                    if part is not None:
                        clock.merge(execute(part, store, on_progress, backend))
        finally:
            store.close()
        results = load_results(out)
        files = write_outputs(results, out, config.by)
        seconds = time.perf_counter() - started
        record = {"run_id": prep.run_id, **prep.provenance,
                  "timing": {"seconds": round(seconds, 2), "stages": clock.report()}}
        (out / "run.json").write_text(json.dumps(record, indent=2))
        files["run"] = out / "run.json"
        files["store"] = out / STORE_NAME
    finally:
        lock.release()
    return RunSummary(out, prep.run_id, results, files, clock.report(), seconds, len(prep.dataset), n_resumed,
                      prep.notes)


def _check_same_run(store: ScoreStore, prep: Prepared) -> None:
    existing = [r for r in store.run_ids() if store.run_info(r)[1].get("role") != "calibration"]
    if not existing or prep.run_id in existing:
        return
    _, old = store.run_info(existing[-1])
    before, now = old.get("identity", {}), prep.provenance["identity"]
    changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
    raise StoreError(f"Output folder {str(store.path.parent)!r} holds a run with other settings ({detail}); "
                     "use a new --out to keep both.")


__all__ = ["RunSummary", "load_results", "run"]
