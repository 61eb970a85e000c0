"""Format-leak audit: do the real and the fake files of a test set differ in how they are stored?

When the classes differ in codec, resolution, bitrate, frame rate or JPEG quality, a detector can separate them
without looking at a face, and a cell that re-encodes both classes "breaks" it for the wrong reason. The audit
reads each file's metadata (the container and stream headers, the JPEG quantisation tables; no frame is decoded),
tabulates it per class, and fits a small classifier on those features alone: its cross-validated AUC (groups kept
together) is the format-only baseline. Above `LEAK_AUC` format alone separates the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench.data.manifest import Dataset
from dfbench.video.probe import media_of

# Our choice: a format-only AUC above this says the classes can be told apart by how they are stored.
LEAK_AUC = 0.65
FOLDS = 5
CATEGORICAL = ("container", "codec", "profile", "pix_fmt", "image_format", "chroma", "mode", "exif", "icc", "xmp")
NUMERIC = ("width", "height", "fps", "duration", "bitrate", "jpeg_quality", "file_kb")

# The IJG (libjpeg) luminance quantisation table at quality 50 (ITU-T T.81, Annex K, Table K.1). A libjpeg
# encoder scales it by 5000 / quality (quality < 50) or 200 - 2 * quality (percent); its sum, unlike its order,
# does not depend on how a reader lists the table.
_IJG_LUMA_SUM = float(sum((16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
                           69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
                           81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)))


def jpeg_quality(luma_table: list[int] | np.ndarray) -> float:
    """The libjpeg quality (1-100) whose scaled luminance table is closest to `luma_table` in sum: an estimate
    for files from other encoders (their tables are not scaled IJG ones).

    Example:
        >>> jpeg_quality([2 * v for v in range(1, 65)]) > 0
        True
    """
    scale = 100.0 * float(np.sum(luma_table)) / _IJG_LUMA_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))


def describe(path: str | Path) -> dict[str, object]:
    """A file's storage features, from its headers only: container, codec, profile, pixel format, size, frame
    rate, duration and bitrate for a video; format, size, colour mode, chroma subsampling, estimated JPEG quality
    and whether EXIF, ICC or XMP metadata is present for an image. A file that cannot be read gets ``error``."""
    path = Path(path)
    row: dict[str, object] = {"media": media_of(path), "file_kb": _size_kb(path)}
    try:
        row.update(_image(path) if row["media"] == "image" else _video(path) if row["media"] == "video" else
                   _frames(path))
    except Exception as exc:   # noqa: BLE001 - any unreadable header is a recorded feature, not a crash
        row["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return row


def _size_kb(path: Path) -> float:
    try:
        return (sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size) / 1024
    except OSError:
        return float("nan")


def _video(path: Path) -> dict[str, object]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
            container.duration / 1e6 if container.duration else float("nan"))
        bitrate = ctx.bit_rate or container.bit_rate or (
            _size_kb(path) * 8192 / duration if duration and np.isfinite(duration) else float("nan"))
        return {"container": container.format.name, "codec": ctx.name, "profile": ctx.profile or "",
                "pix_fmt": ctx.format.name if ctx.format else "", "width": ctx.width, "height": ctx.height,
                "fps": float(stream.average_rate) if stream.average_rate else float("nan"),
                "duration": duration, "bitrate": float(bitrate) / 1000}


def _image(path: Path) -> dict[str, object]:
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as image:   # lazy: reads the headers, not the pixels
        row: dict[str, object] = {"image_format": image.format or "", "width": image.width, "height": image.height,
                                  "mode": image.mode, "exif": "exif" in image.info or bool(image.getexif()),
                                  "icc": "icc_profile" in image.info,
                                  "xmp": "xmp" in image.info or "XML:com.adobe.xmp" in image.info}
        if image.format == "JPEG":
            sampling = JpegImagePlugin.get_sampling(image)
            row["chroma"] = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(sampling, "other")
            tables = getattr(image, "quantization", None) or {}
            if 0 in tables:
                row["jpeg_quality"] = jpeg_quality(list(tables[0]))
    return row


def _frames(path: Path) -> dict[str, object]:
    from dfbench.video.probe import IMAGE_SUFFIXES

    first = next(p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    return {**_image(first), "container": "frames"}


@dataclass
class Audit:
    """What `audit` found.

    Attributes:
        features: one row per sample: sample_id, label, group and its `describe` features.
        summary: per feature and class: the most common values with their share (categorical features) or the
            median, min and max (numeric ones).
        baseline_auc: the cross-validated AUC of a classifier on the features alone (NaN when it cannot be fit:
            one class, or fewer than two groups per class).
        leak: `baseline_auc` above `LEAK_AUC`.
        strongest: the features that separate the classes most (by the classifier's importance), for the warning.
        folds: the cross-validation folds (groups kept together); 0 when the baseline could not be fit.
    """

    dataset: str
    features: pd.DataFrame
    summary: pd.DataFrame
    baseline_auc: float
    leak: bool
    strongest: list[str] = field(default_factory=list)
    folds: int = 0

    def warning(self) -> str:
        """One line for `run` and `data audit` when format alone separates the classes, else ''."""
        if not self.leak:
            return ""
        return (f"format leak in {self.dataset}: a classifier on file format alone ({', '.join(self.strongest)}) "
                f"separates real from fake with AUC {self.baseline_auc:.2f} (above {LEAK_AUC}); a detector may score "
                "well without looking at faces, and cells that re-encode both classes can hide or fake a drop. "
                "'dfbench data audit' shows the per-class formats.")

    def record(self) -> dict[str, object]:
        """What run.json keeps of it."""
        return {"baseline_auc": None if np.isnan(self.baseline_auc) else round(self.baseline_auc, 4),
                "leak": self.leak, "threshold": LEAK_AUC, "strongest": self.strongest,
                "n_samples": len(self.features)}


def audit(dataset: Dataset, seed: int = 0) -> Audit:
    """Read every sample's storage features and fit the format-only baseline (`Audit`)."""
    table = dataset.table
    rows = [describe(p) for p in table["path"]]
    features = pd.concat([table[["sample_id", "label", "group"]].reset_index(drop=True), pd.DataFrame(rows)],
                         axis=1)
    auc, strongest, folds = _baseline(features, seed)
    return Audit(dataset.name, features, _summary(features), auc, bool(np.isfinite(auc) and auc > LEAK_AUC),
                 strongest, folds)


def _design(features: pd.DataFrame) -> pd.DataFrame:
    """The classifier's inputs: numeric features as they are (missing: -1), categorical ones one-hot."""
    numeric = features[[c for c in NUMERIC if c in features]].apply(pd.to_numeric, errors="coerce").fillna(-1.0)
    categorical = features[[c for c in CATEGORICAL if c in features]].astype(str)
    return pd.concat([numeric, pd.get_dummies(categorical, prefix_sep="=", dtype=float)], axis=1)


def _baseline(features: pd.DataFrame, seed: int) -> tuple[float, list[str], int]:
    """Out-of-fold AUC of a shallow random forest on `_design`, folds by group (a source video's real and fakes
    stay together), and the three most important inputs."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    y = features["label"].to_numpy()
    groups = features["group"].where(features["group"] != "", features["sample_id"]).to_numpy()
    per_class = min(len(set(groups[y == 0])), len(set(groups[y == 1])))
    if per_class < 2:
        return float("nan"), [], 0
    x = _design(features)
    n_folds = min(FOLDS, per_class)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = np.full(len(y), np.nan)
    importance = np.zeros(x.shape[1])
    for train, test in folds.split(x, y, groups):
        if len(set(y[train])) < 2:
            continue
        model = RandomForestClassifier(n_estimators=100, max_depth=3, random_state=seed)
        model.fit(x.iloc[train], y[train])
        scores[test] = model.predict_proba(x.iloc[test])[:, 1]
        importance += model.feature_importances_
    known = np.isfinite(scores)
    if len(set(y[known])) < 2:
        return float("nan"), [], 0
    top = [x.columns[i] for i in np.argsort(-importance)[:3] if importance[i] > 0]
    return float(roc_auc_score(y[known], scores[known])), top, n_folds


def _summary(features: pd.DataFrame) -> pd.DataFrame:
    """Per feature and class (real, fake): the three most common values with their share, or median [min, max]."""
    out = []
    for column in [c for c in (*CATEGORICAL, *NUMERIC) if c in features]:
        row: dict[str, object] = {"feature": column}
        for label, name in ((0, "real"), (1, "fake")):
            values = features.loc[features["label"] == label, column]
            if column in NUMERIC:
                v = pd.to_numeric(values, errors="coerce").dropna()
                row[name] = f"{v.median():.4g} [{v.min():.4g}, {v.max():.4g}]" if len(v) else "-"
            else:
                shares = values.astype(str).value_counts(normalize=True).head(3)
                row[name] = ", ".join(f"{k} {100 * share:.0f} %" for k, share in shares.items()) or "-"
        out.append(row)
    return pd.DataFrame(out, columns=["feature", "real", "fake"])
