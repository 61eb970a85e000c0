"""Results a reviewer can trust (issue 21): degenerate-detector flags and predictions files that cannot be read
wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from dfbench import metrics
from dfbench.api import run
from dfbench.detectors import DETECTORS, DetectorAdapter, DetectorCard
from dfbench.errors import ConfigError
from dfbench.faces import CropSpec
from dfbench.report_html import write_report


class _Constant(nn.Module):
    """Two logits that do not depend on the input: every crop gets the same P(fake)."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, 0.4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), 2) + 0 * x.mean()


class ConstantDetector(DetectorAdapter):
    card = DetectorCard(key="constant_score", title="a detector that gives every input the same score",
                        reference="tests", input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        crop=CropSpec(size=32, whole_frame=True), output="softmax over 2 logits, index 1 = fake",
                        formats=("none",))

    def build(self) -> nn.Module:
        return _Constant()


DETECTORS.replace("constant_score", ConstantDetector)


THREE_CELLS = """name: three-cells
version: 1
media: [video]
frames: {per_video: 2}
cells: [none, hflip, gray]
"""


@pytest.fixture(scope="module")
def constant_run(small_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("constant")
    (folder / "three.yaml").write_text(THREE_CELLS)
    return run(detector="constant_score", weights="random", suite=str(folder / "three.yaml"),
               dataset=str(small_demo / "manifest.csv"), split="train", limit=4, device="cpu", out=folder / "run")


def test_a_constant_score_detector_is_flagged_in_results_leaderboard_and_report(constant_run, tmp_path: Path):
    from dfbench.reports import leaderboard

    results = pd.read_csv(constant_run.out / "results.csv", keep_default_na=False)
    assert results["flag"].str.startswith("constant scores (sd").all()          # every cell, both levels
    long = leaderboard(constant_run.results)
    assert long["flag"].str.startswith("constant scores").all()
    lines = constant_run.results.flag_lines()
    assert len(lines) == 1 and "3 of 3 cells flagged degenerate at video level" in lines[0]
    page = write_report(constant_run.results, [constant_run.out], tmp_path / "r.md").read_text()
    assert "## Degenerate cells" in page and page.count("constant scores") >= 3


def test_the_cli_warns_in_one_line_per_flagged_run(constant_run, tmp_path: Path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "dfbench", "leaderboard", str(constant_run.out), "-o",
                          str(tmp_path / "lb.csv")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "constant_score [random" in warnings[0] and "constant scores" in warnings[0]


@pytest.mark.parametrize(("labels", "scores", "expected"), [
    ([0, 0, 1, 1], [0.5003, 0.5001, 0.5002, 0.5004], "constant scores (sd 0.00011)"),
    ([0] * 20 + [1] * 20, [0.6 + i / 100 for i in range(40)], "calls 100 % of reals and 100 % of fakes fake"),
    ([0] * 20 + [1] * 20, [0.01 * i for i in range(19)] + [0.9] + [0.01 * i for i in range(20)],
     "calls 95 % of reals and 100 % of fakes real"),
    ([0] * 20 + [1] * 20, [0.01 * i for i in range(18)] + [0.9, 0.9] + [0.01 * i for i in range(20)], ""),
    ([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], ""),
    ([1, 1, 1], [0.5, 0.5, 0.5], ""),                   # one class: nothing to say
])
def test_degenerate_flags_name_their_reason(labels, scores, expected):
    assert metrics.degenerate(labels, scores) == expected


def test_an_argmax_detectors_own_decisions_decide_its_flag():
    decided = [1.0, 1.0, 1.0, 1.0]
    assert metrics.degenerate([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], decided=decided).endswith("fakes fake")
    assert metrics.degenerate([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]).endswith("fakes real")


@pytest.mark.parametrize(("text", "message"), [
    ("sample_id,score\nreal/clip_000,0.5\n", "lacks column 'cell'"),
    ("sample_id,cell,score\nreal/clip_000,none-0,1.5\n", "is not a probability"),
    ("sample_id,cell,score\nreal/clip_000,none-0,high\n", "score 'high' in row 2"),
    ("sample_id,cell,score\nreal/clip_000,none-0,nan\n", "is not a number"),
])
def test_a_bad_predictions_file_is_one_line_naming_the_row(text: str, message: str, tmp_path: Path):
    from dfbench.predictions import read_predictions

    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        read_predictions([tmp_path / "p.csv"])
    assert "\n" not in str(caught.value)


# -- per method, per group --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_methods(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo set with two fake methods (m1, m2) and a manifest column of its own that both classes carry
    (``gender``: f for clips 0 and 1, m for clips 2 and 3)."""
    table = pd.read_csv(small_demo / "manifest.csv", dtype=str, keep_default_na=False)
    clip = table["sample_id"].str[-1].astype(int)
    table = table.assign(path=[str(small_demo / p) for p in table["path"]], split="",
                         method=[("m1" if c < 2 else "m2") if s.startswith("fake") else ""
                                 for s, c in zip(table["sample_id"], clip, strict=True)],
                         gender=["f" if c < 2 else "m" for c in clip])
    path = tmp_path_factory.mktemp("methods") / "manifest.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def method_run(two_methods: Path, tmp_path_factory: pytest.TempPathFactory):
    return run(detector="effb2", weights="demo", suite="clean", dataset=str(two_methods), frames=2,
               device="cpu", out=tmp_path_factory.mktemp("by") / "run", by="method")


def test_per_method_aucs_equal_scikit_learn_on_the_exported_predictions(method_run, two_methods: Path,
                                                                        tmp_path: Path):
    from sklearn.metrics import roc_auc_score

    from dfbench.predictions import video_predictions, write_predictions

    write_predictions(video_predictions(method_run.results), tmp_path / "pred.csv")
    pred = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    by = method_run.results.by("method")
    auc = by[by["metric"] == "auc"].set_index(["subgroup", "cell"])["value"]
    assert sorted(set(by["subgroup"])) == ["m1", "m2"] and auc.notna().all()
    for method in ("m1", "m2"):
        for cell, g in pred.groupby("cell"):
            rows = g[(g["label"] == 0) | (g["method"] == method)]      # every real against this method's fakes
            assert len(rows) == 6
            assert auc[(method, cell)] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-12)
    counts = by[(by["metric"] == "auc") & (by["aggregation"] != "frame")]
    assert (counts["n_videos"] == 6).all()
    written = pd.read_csv(method_run.out / "results.csv", keep_default_na=False)
    assert "subgroup" in written and set(written["subgroup"]) == {"", "m1", "m2"}
    # the same breakdown from the predictions file alone, by a manifest column of its own
    from dfbench import score

    scored = score(tmp_path / "pred.csv", dataset=str(two_methods), suite="clean", frames=2).by("gender")
    stored = method_run.results.by("gender")
    pick = lambda t: t[t["metric"] == "auc"].set_index(["subgroup", "cell"])["value"]   # noqa: E731
    pd.testing.assert_series_equal(pick(scored), pick(stored))
    assert (written[written["subgroup"] == ""]["n_videos"].isin([8])).all()


def test_a_manifest_column_both_classes_carry_keeps_each_groups_own_reals(method_run):
    from sklearn.metrics import roc_auc_score

    videos = method_run.results.videos()
    videos["gender"] = videos["sample_id"].str[-1].astype(int).map(lambda c: "f" if c < 2 else "m")
    by = method_run.results.by("gender")
    auc = by[by["metric"] == "auc"].set_index(["subgroup", "cell"])["value"]
    for gender, g in videos.groupby("gender"):
        assert set(g["label"]) == {0, 1} and len(g) == 4
        for cell, rows in g.groupby("cell"):
            assert auc[(gender, cell)] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-12)


def test_by_on_the_cli_adds_subgroup_rows_and_heatmaps(method_run, tmp_path: Path):
    import subprocess
    import sys

    from dfbench.reports import LEADERBOARD_COLUMNS

    for command in (["leaderboard", str(method_run.out), "-o", str(tmp_path / "lb.csv"), "--by", "gender"],
                    ["report", str(method_run.out), "-o", str(tmp_path / "r.md"), "--by", "method"]):
        out = subprocess.run([sys.executable, "-m", "dfbench", *command], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
    long = pd.read_csv(tmp_path / "lb.csv", keep_default_na=False)
    assert list(long.columns) == LEADERBOARD_COLUMNS and set(long["subgroup"]) == {"", "f", "m"}
    assert len(long[long["subgroup"] == "f"]) == len(long[long["subgroup"] == ""])
    page = (tmp_path / "r.md").read_text()
    assert "## AUC per operation, method = m1" in page and "## AUC per operation, method = m2" in page


def test_by_an_unknown_column_is_one_line(two_methods: Path, tmp_path: Path, method_run):
    with pytest.raises(ConfigError, match="--by 'age' is not a column of .*; its columns: split, method, group, "
                                          "gender"):
        run(detector="effb2", weights="demo", suite="clean", dataset=str(two_methods), frames=2, device="cpu",
            out=tmp_path / "r", by="age")
    assert not (tmp_path / "r" / "scores.sqlite").exists()
    with pytest.raises(ConfigError, match="No sample column 'age' .* have method, group, split, gender"):
        method_run.results.by("age")


# -- thresholds from a validation split -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def val_run(small_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    """effb2 on the small demo set with clips 0-1 as the validation split and 2-3 as the test split."""
    folder = tmp_path_factory.mktemp("val")
    table = pd.read_csv(small_demo / "manifest.csv", dtype=str, keep_default_na=False)
    table = table.assign(path=[str(small_demo / p) for p in table["path"]],
                         split=["val" if int(s[-1]) < 2 else "test" for s in table["sample_id"]])
    table.to_csv(folder / "manifest.csv", index=False)
    (folder / "three.yaml").write_text(THREE_CELLS)
    return run(detector="effb2", weights="demo", suite=str(folder / "three.yaml"), dataset=str(folder / "manifest.csv"),
               device="cpu", out=folder / "run", calibrate_on="val")


def test_a_validation_threshold_is_found_on_val_and_frozen_for_every_cell(val_run):
    from dfbench.results import Calibration, load_results

    res = load_results(val_run.out)
    assert list(res.runs["calibrate_on"]) == ["val"] and len(res.runs) == 1         # the val run is no result
    val_videos = res.calibration.videos()
    assert set(val_videos["sample_id"].str[-1]) == {"0", "1"} and set(val_videos["cell"]) == {"none-0"}
    expected = Calibration().threshold(val_videos["label"].to_numpy(), val_videos["score"].to_numpy())
    table = res.metrics(("suite",))
    cal = table[table["metric"] == "acc_cal"]
    assert (cal["calibrate_on"] == "val").all() and (cal["cal_threshold"] == expected).all()   # one, frozen
    videos = res.videos()
    for cell, g in videos.groupby("cell"):
        accuracy = metrics.accuracy(g["label"].to_numpy(), g["score"].to_numpy(), expected)
        assert cal.set_index("cell")["value"][cell] == pytest.approx(accuracy)
        assert set(g["sample_id"].str[-1]) == {"2", "3"}                                 # only the test split
    # the same store calibrated on its clean cell instead: the threshold moves, the scores do not
    clean = res.metrics(("suite",), calibrate_on="clean")
    on_clean = clean[clean["metric"] == "acc_cal"]
    test_clean = videos[videos["cell"] == "none-0"]
    assert (on_clean["cal_threshold"] == Calibration().threshold(test_clean["label"].to_numpy(),
                                                                 test_clean["score"].to_numpy())).all()
    written = pd.read_csv(val_run.out / "results.csv", keep_default_na=False)
    assert set(written["calibrate_on"]) == {"val"} and written["cal_threshold"].nunique() == 2    # frame, video


def test_calibrating_on_a_split_the_dataset_lacks_is_one_line_before_any_work(small_demo: Path, tmp_path: Path):
    from dfbench.errors import DatasetError

    with pytest.raises(DatasetError, match="has no validation split \\(named val, validation") as caught:
        run(detector="effb2", weights="demo", suite="clean", dataset=str(small_demo / "manifest.csv"),
            device="cpu", out=tmp_path / "r", calibrate_on="val")
    assert "its splits: test, train" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "r" / "scores.sqlite").exists()
    with pytest.raises(DatasetError, match="names the split being scored"):
        run(detector="effb2", weights="demo", suite="clean", dataset=str(small_demo / "manifest.csv"),
            device="cpu", out=tmp_path / "r", calibrate_on="split:test")


# -- format-leak audit ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def leak_set(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo set with every fake re-encoded at CRF 40 (the reals stay as the demo wrote them): format
    alone tells the classes apart."""
    import subprocess

    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("leak")
    table = pd.read_csv(small_demo / "manifest.csv", dtype=str, keep_default_na=False)
    paths = []
    for sample_id, path in zip(table["sample_id"], table["path"], strict=True):
        source = small_demo / path
        if sample_id.startswith("fake/"):
            target = folder / f"{sample_id.replace('/', '_')}.mp4"
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-c:v", "libx264",
                            "-crf", "40", "-preset", "ultrafast", str(target)], check=True, timeout=120)
            paths.append(str(target))
        else:
            paths.append(str(source))
    table.assign(path=paths, split="").to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_the_audit_warns_where_format_alone_separates_the_classes_and_not_on_the_demo_clips(leak_set: Path,
                                                                                            small_demo: Path):
    from dfbench.data import load_dataset
    from dfbench.data.audit import LEAK_AUC, audit

    leaky = audit(load_dataset(str(leak_set)))
    assert leaky.baseline_auc > LEAK_AUC and leaky.leak and leaky.folds == 4
    assert leaky.warning().startswith("format leak in") and "\n" not in leaky.warning()
    bitrate = leaky.summary.set_index("feature").loc["bitrate"]
    assert bitrate["real"] != bitrate["fake"]
    same = audit(load_dataset(str(small_demo / "manifest.csv")))      # the same clips, as the demo wrote them
    assert not same.leak and same.warning() == "" and same.baseline_auc < LEAK_AUC


@pytest.mark.slow   # builds the whole demo set (96 videos)
def test_the_whole_demo_set_has_no_format_leak():
    from dfbench.data import load_dataset
    from dfbench.data.audit import LEAK_AUC, audit

    demo = audit(load_dataset("demo"))
    assert len(demo.features) == 96 and not demo.leak and demo.warning() == ""
    assert demo.baseline_auc < LEAK_AUC
    summary = demo.summary.set_index("feature")
    assert summary.loc["codec", "real"] == summary.loc["codec", "fake"] == "h264 100 %"


def test_a_run_on_a_leaky_set_warns_and_records_the_audit_in_run_json(leak_set: Path, tmp_path: Path):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "dfbench", "run", "--detector", "effb2", "--weights", "demo",
                          "--suite", "clean", "--frames", "1", "--dataset", str(leak_set), "--device", "cpu",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: format leak")]
    assert len(warnings) == 1
    record = json.loads((tmp_path / "r" / "run.json").read_text())["format_audit"]
    assert record["leak"] is True and record["baseline_auc"] > 0.65 and record["n_samples"] == 8


def test_data_audit_prints_the_per_class_formats_and_the_baseline(leak_set: Path, tmp_path: Path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "dfbench", "data", "audit", str(leak_set), "--out",
                          str(tmp_path / "features.csv")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    flat = " ".join(out.stdout.split())
    assert "format-only baseline AUC" in flat and "bitrate" in flat and "warning: format leak" in out.stderr
    features = pd.read_csv(tmp_path / "features.csv")
    assert len(features) == 8 and {"codec", "bitrate", "width", "fps", "duration"} <= set(features.columns)


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality: int, tmp_path: Path):
    import numpy as np
    from PIL import Image

    from dfbench.data.audit import describe

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    image.save(tmp_path / "a.jpg", quality=quality, subsampling=2)
    row = describe(tmp_path / "a.jpg")
    assert row["jpeg_quality"] == quality and row["chroma"] == "4:2:0" and row["exif"] is False
    assert (row["image_format"], row["width"], row["height"]) == ("JPEG", 64, 48)
