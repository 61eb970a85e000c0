"""`dfbench data check`: validate a dataset and summarise it without running a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfbench.data.manifest import Dataset
from dfbench.data.sources import load_dataset
from dfbench.errors import MediaError, TooLargeError
from dfbench.video.image import read_image
from dfbench.video.probe import media_of, probe_video


@dataclass
class CheckReport:
    """What `check_dataset` found: the valid samples, counts, and every problem (one line each)."""

    dataset: Dataset
    counts: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unreadable


def readable(path: str) -> str | None:
    """None when the file decodes (a video's container and frames, an image, a frame folder), else why not."""
    try:
        if media_of(path) == "image":
            read_image(Path(path))
        else:
            probe_video(Path(path))
    except TooLargeError as exc:
        return f"too_large: {exc}"
    except MediaError as exc:
        return str(exc)
    return None


def check_dataset(spec: str, probe: bool = True, on_progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Load `spec` collecting every row problem, count samples per label, split and method, and (with `probe`)
    try to read every file."""
    problems: list[str] = []
    dataset = load_dataset(spec, problems=problems)
    table = dataset.table.assign(label=dataset.table["label"].map({0: "real", 1: "fake"}),
                                 media=dataset.table["path"].map(media_of))
    counts = table.groupby(["split", "method", "label", "media"], dropna=False).size().rename("samples").reset_index()
    report = CheckReport(dataset, counts, problems)
    if probe:
        reasons: dict[str, str | None] = {}    # a file named by several rows is read once
        for i, path in enumerate(dataset.table["path"], start=1):
            if path not in reasons:
                reasons[path] = readable(path)
                if reasons[path]:
                    report.unreadable.append(str(reasons[path]))
            if on_progress:
                on_progress(i, len(dataset))
    return report
