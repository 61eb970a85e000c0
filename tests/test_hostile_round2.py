"""Hostile inputs, round 2 (issue 18): each case ends in one line or a status row, nothing is written outside the
folders the user named, and nothing already computed is lost."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfbench.config import MAX_CELLS, load_suite
from dfbench.data import load_dataset
from dfbench.errors import ConfigError, DatasetError, OutputPathError, StoreError
from dfbench.paths import safe_part, safe_relative, sample_id_problem
from dfbench.store import ScoreStore
from tests.media import make_video


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dfbench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, **(env or {})})


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The single 'Error:' line of a command that failed cleanly; asserts exit 1 and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset with one real and one fake 160x120 clip (no faces: rows become no_face)."""
    root = tmp_path_factory.mktemp("tiny") / "videos"
    make_video(root / "real" / "a.mp4")
    make_video(root / "fake" / "a.mp4", source="smptebars")
    return root


@pytest.fixture(scope="module")
def tiny_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tinyrun") / "run"
    result = _cli("run", "--detector", "effb2", "--weights", "random", "--suite", "clean", "--frames", "2",
                  "--dataset", str(tiny), "--out", str(out), "--device", "cpu", "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    return out


# -- case 1: ids that would write outside --out ----------------------------------------------------------------

ESCAPING_IDS = ["fake/../../../../escaped", "/tmp/dfbench-absolute-escape", "fake//double", "fake/./dot",
                "fake/trailing/", "..\\..\\escaped"]


@pytest.mark.parametrize("sample_id", ESCAPING_IDS)
def test_an_id_that_would_leave_the_output_folder_is_refused_by_perturb_run_and_data_check(
        tiny: Path, tmp_path: Path, sample_id: str):
    outside = tmp_path / "elsewhere"            # the file lies outside the manifest's folder: the id names the copy
    outside.mkdir()
    shutil.copy(tiny / "real" / "a.mp4", outside / "clip.mp4")
    work = tmp_path / "work"
    work.mkdir()
    manifest = work / "m.csv"
    pd.DataFrame({"sample_id": [sample_id, "real/ok"], "path": [str(outside / "clip.mp4")] * 2,
                  "label": [1, 0]}).to_csv(manifest, index=False)
    before = _files(tmp_path)
    for args in (["perturb", "--suite", "clean", "--dataset", str(manifest), "--out", str(work / "out")],
                 ["run", "--detector", "effb2", "--weights", "random", "--suite", "clean", "--dataset",
                  str(manifest), "--out", str(work / "run"), "--device", "cpu"]):
        _one_line_error(_cli(*args, cwd=work), "Sample id", "relative paths")
    check = _cli("data", "check", str(manifest))
    assert check.returncode == 1 and "Traceback" not in check.stderr and "Sample id" in check.stderr
    assert _files(tmp_path) == before and not Path("/tmp/dfbench-absolute-escape.mp4").exists()


def test_ids_are_checked_once_at_load_with_every_problem_listed():
    assert sample_id_problem("Deepfakes/000_003") is None
    assert sample_id_problem("ünïcödé 名前; $(x)") is None
    assert sample_id_problem("a/../b") == "has a '..' part"
    assert sample_id_problem("/abs") == "is an absolute path"
    assert sample_id_problem("a//b") == "has an empty part"
    assert sample_id_problem("a\0b") == "holds a NUL character"
    table = pd.DataFrame({"sample_id": ["../x", "/y", "ok"], "path": [__file__] * 3, "label": [0, 1, 1]})
    from dfbench.data.manifest import validate

    problems: list[str] = []
    dataset = validate(table, "m.csv", problems=problems)
    assert dataset.table["sample_id"].tolist() == ["ok"] and len(problems) == 2
    with pytest.raises(DatasetError, match="'../x'"):
        validate(table, "m.csv")


def test_a_symlink_out_of_the_dataset_is_copied_inside_out(tiny: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    (data / "fake" / "a.mp4").unlink()
    (data / "fake" / "a.mp4").symlink_to(tiny / "fake" / "a.mp4")   # resolves outside the dataset folder
    out = tmp_path / "out"
    result = _cli("perturb", "--suite", "clean", "--dataset", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = {p.relative_to(out).as_posix() for p in _files(out)}
    assert written == {"cells.csv", "none-0/manifest.csv", "none-0/real/a.mp4", "none-0/fake/a.mp4"}


# -- case 10 (and the safe names of case 1): names longer than the file system allows ---------------------------

def test_long_names_map_to_safe_unique_reversible_names():
    long_a, long_b = "x" * 300 + "a.mp4", "x" * 300 + "b.mp4"
    assert len(safe_part(long_a).encode()) <= 255 and safe_part(long_a).endswith(".mp4")
    assert safe_part(long_a) != safe_part(long_b)
    assert safe_part("名" * 120) != "名" * 120 and len(safe_part("名" * 120).encode()) <= 255
    assert safe_relative("fake/" + long_a).parts[0] == "fake"
    with pytest.raises(ConfigError):
        safe_relative("../x")


def test_perturb_with_a_long_sample_id_and_a_long_chain_writes_inside_out_and_records_the_originals(
        tiny: Path, tmp_path: Path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    name = "p" * 200                                    # the cell id sn_ppp...-1+hflip-1 exceeds 255 bytes
    (profiles / "long.yaml").write_text(
        f"name: {name}\nkind: image\ndate: 2026-12-01\nprovisional: true\nsources: [test]\nmax_long_side: 64\n"
        "resample: bicubic\njpeg_quality: 50\nsubsampling: '4:2:0'\nprogressive: false\n")
    suite = tmp_path / "long.yaml"
    suite.write_text(f"name: long\nversion: 1\nmedia: [video]\ncells: [none, {{chain: [sn_{name}, hflip, vflip]}}]\n")
    long_id = "fake/" + "i" * 300
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny / "fake" / "a.mp4", elsewhere / "f.mp4")
    manifest = tmp_path / "m" / "m.csv"
    manifest.parent.mkdir()
    pd.DataFrame({"sample_id": [long_id, "real/a"], "path": [str(elsewhere / "f.mp4"), str(tiny / "real/a.mp4")],
                  "label": [1, 0]}).to_csv(manifest, index=False)
    out = tmp_path / "out"
    result = _cli("perturb", "--suite", str(suite), "--dataset", str(manifest), "--out", str(out),
                  env={"DFBENCH_PLATFORMS": str(profiles)})
    assert result.returncode == 0 and "failed" not in result.stderr, result.stderr
    cells = pd.read_csv(out / "cells.csv")
    chain = f"sn_{name}-1+hflip-1+vflip-1"
    assert chain in set(cells["cell"]) and all(len(f.encode()) <= 255 for f in cells["folder"])
    folder = cells.set_index("cell").loc[chain, "folder"]
    copied = pd.read_csv(out / folder / "manifest.csv")
    assert set(copied["sample_id"]) == {long_id, "real/a"} and set(copied["cell"]) == {chain}
    for rel in copied["path"]:
        assert (out / folder / rel).is_file() and (out / folder / rel).resolve().is_relative_to(out.resolve())
    # the copy is itself a dataset whose rows give back the original ids
    assert set(load_dataset(str(out / folder / "manifest.csv")).table["sample_id"]) == {long_id, "real/a"}


# -- case 2 and 9: suite files ----------------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(["a: &a ['x','x','x','x','x','x','x','x','x']"] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]" for i in range(8)]) + "\nname: *i\n"


def test_a_billion_laughs_suite_is_refused_at_once_in_bounded_memory(tmp_path: Path):
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1000
    tracemalloc.start()
    with pytest.raises(ConfigError, match="alias"):
        load_suite(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000
    _one_line_error(_cli("perturb", "--suite", str(path), "--out", str(tmp_path / "o")), "alias")


def test_a_billion_laughs_platform_profile_is_refused(tmp_path: Path):
    (tmp_path / "evil.yaml").write_text(BILLION_LAUGHS.replace("name: *i", "kind: image\nsources: *i"))
    _one_line_error(_cli("list", "ops", env={"DFBENCH_PLATFORMS": str(tmp_path)}), "alias")


@pytest.mark.parametrize(("extra", "field"), [
    ("version: abc", "'version'"), ("version: 1.5", "'version'"), ("version: true", "'version'"),
    ("version: 1\nmedia: 5", "'media'"), ("version: 1\nmedia: [audio]", "'media'"),
    ("version: 1\nseed: [1]", "'seed'"), ("version: 1\nseed: -1", "'seed'"),
    ("version: 1\nframes: {per_video: abc}", "'per_video'"), ("version: 1\nframes: {per_video: 100000}", "'per_video'"),
    ("version: 1\nframes: 3", "'frames'"), ("version: 1\nfaces: 3", "'faces'"), ("version: 1\nname2: 1", "'name2'"),
    ("version: 1\ndescription: [1]", "'description'"),
])
def test_a_wrongly_typed_suite_field_is_one_line_naming_it(tmp_path: Path, extra: str, field: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\ncells: [none]\n{extra}\n")
    with pytest.raises(ConfigError, match=field):
        load_suite(str(path))


@pytest.mark.parametrize("cells", ["[none, {op: [1]}]", "[none, {op: brightness, level: [1]}]", "[none, {chain: 5}]",
                                   "[none, {op: brightness, levels: 0.1}]", "[none, 5]", "none",
                                   "[none, {chain: [hflip, [1]]}]", "[none, {chain: [hflip]}]"])
def test_a_malformed_cell_is_one_line(tmp_path: Path, cells: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nversion: 1\ncells: {cells}\n")
    with pytest.raises(ConfigError):
        load_suite(str(path))


def test_a_wrongly_typed_suite_field_is_one_line_from_the_cli(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nversion: abc\ncells: [none]\n")
    _one_line_error(_cli("preview", "--suite", str(path), "-o", str(tmp_path / "p.png")), "'version'", "abc")


# -- case 5: big suites ------------------------------------------------------------------------------------------

def test_a_suite_past_the_engine_limits_is_refused_before_any_work(tmp_path: Path):
    many = tmp_path / "many.yaml"
    many.write_text("name: many\nversion: 1\ncells: [none, {op: brightness, levels: [" + ", ".join(
        str(i / 10_000) for i in range(10_000)) + "]}]\n")
    with pytest.raises(ConfigError, match=f"at most {MAX_CELLS}"):
        load_suite(str(many))
    long_chain = tmp_path / "chain.yaml"
    long_chain.write_text("name: c\nversion: 1\ncells: [none, {chain: [" + ", ".join(["hflip"] * 9) + "]}]\n")
    with pytest.raises(ConfigError, match="2 to 8 steps"):
        load_suite(str(long_chain))
    result = _cli("run", "--suite", str(many), "--out", str(tmp_path / "run"))
    _one_line_error(result, f"at most {MAX_CELLS}")
    assert not (tmp_path / "run" / "scores.sqlite").exists()


def test_the_largest_suite_runs_with_its_graph_in_a_file(tiny: Path, monkeypatch: pytest.MonkeyPatch):
    from dfbench.config import Cell
    from dfbench.video import engine
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames

    cells = [Cell("none", 0)] + [Cell("brightness", round(-0.9 + i * 1.8 / (MAX_CELLS - 2), 6))
                                 for i in range(MAX_CELLS - 1)]
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in cells]
    assert len({p.cell_id for p in plans}) == MAX_CELLS
    commands: list[list[str]] = []
    popen = engine.subprocess.Popen

    def recording(cmd, *args, **kwargs):
        commands.append(list(cmd))
        return popen(cmd, *args, **kwargs)

    monkeypatch.setattr(engine.subprocess, "Popen", recording)
    monkeypatch.setattr(engine, "INLINE_GRAPH_MAX", 1000)
    frames = {(e.cell_id, e.index): e.image for e in sample_frames(tiny / "real" / "a.mp4", plans, [0, 19])
              if isinstance(e, SampledFrame)}
    assert len(frames) == 2 * MAX_CELLS
    assert len(commands) == -(-MAX_CELLS // engine.MAX_BRANCHES)
    assert all("-/filter_complex" in c and "-filter_complex" not in c for c in commands)
    assert max(len(" ".join(c)) for c in commands) < 20_000
    monkeypatch.setattr(engine, "INLINE_GRAPH_MAX", 10**9)      # inline gives the same frames
    inline = {(e.cell_id, e.index): e.image for e in sample_frames(tiny / "real" / "a.mp4", plans[:5], [0])
              if isinstance(e, SampledFrame)}
    assert all(np.array_equal(inline[k], frames[k]) for k in inline)


def test_a_command_line_the_system_refuses_is_a_recorded_failure(tiny: Path, monkeypatch: pytest.MonkeyPatch):
    from dfbench.config import Cell
    from dfbench.video import engine
    from dfbench.video.engine import CellFailure, CellPlan, sample_frames

    def refuse(*args, **kwargs):
        raise OSError(errno.E2BIG, "Argument list too long")

    monkeypatch.setattr(engine.subprocess, "Popen", refuse)
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in (Cell("none", 0), Cell("hflip", 1))]
    events = list(sample_frames(tiny / "real" / "a.mp4", plans, [0]))
    assert [type(e) for e in events] == [CellFailure]
    assert set(events[0].cell_ids) == {"none-0", "hflip-1"} and "Argument list too long" in events[0].message


# -- case 3: relative, dotted, slashed and linked dataset folders ------------------------------------------------

@pytest.mark.slow   # many CLI processes; in make test-slow
def test_relative_dotted_and_linked_dataset_folders_work_in_every_command(tiny: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    parent = tiny.parent
    (parent / "linked").unlink(missing_ok=True)
    (parent / "linked").symlink_to(tiny, target_is_directory=True)
    expected = sorted(load_dataset(str(tiny)).table["sample_id"])
    for spec, cwd in (("videos", parent), ("videos/", parent), ("./videos/", parent), (".", tiny),
                      ("..", tiny / "real"), ("../../videos", tiny / "real"), ("linked/", parent),
                      ("videos/real/../", parent)):
        result = _cli("data", "check", spec, cwd=cwd)
        assert result.returncode == 0 and "No problems found" in result.stdout, (spec, result.stderr)
        with monkeypatch.context() as inside:
            inside.chdir(cwd)
            assert sorted(load_dataset(spec).table["sample_id"]) == expected
    out = tmp_path / "copies"
    result = _cli("perturb", "--suite", "clean", "--dataset", "videos/", "--out", str(out), cwd=parent)
    assert result.returncode == 0, result.stderr
    assert {p.relative_to(out).as_posix() for p in _files(out)} >= {"none-0/real/a.mp4", "none-0/fake/a.mp4"}
    result = _cli("run", "--detector", "effb2", "--weights", "random", "--suite", "clean", "--frames", "1",
                  "--dataset", "linked/", "--out", str(tmp_path / "run"), "--device", "cpu", cwd=parent)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "run" / "scores.sqlite") as con:
        assert sorted(r[0] for r in con.execute("SELECT DISTINCT sample_id FROM tasks")) == expected


# -- case 4: an output folder inside the dataset -----------------------------------------------------------------

def test_perturb_into_the_dataset_or_around_it_is_refused_before_any_work(tiny: Path, tmp_path: Path):
    before = _files(tiny)
    _one_line_error(_cli("perturb", "--suite", "clean", "--dataset", str(tiny), "--out", str(tiny / "fake" / "x")),
                    "inside the dataset")
    _one_line_error(_cli("perturb", "--suite", "clean", "--dataset", str(tiny), "--out", str(tiny.parent)),
                    "the dataset")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"sample_id": ["r", "f"], "path": [str(tiny / "real/a.mp4"), str(tiny / "fake/a.mp4")],
                  "label": [0, 1]}).to_csv(manifest, index=False)
    _one_line_error(_cli("perturb", "--suite", "clean", "--dataset", str(manifest), "--out", str(tiny / "real")),
                    "the dataset")
    assert _files(tiny) == before


# -- case 6: images past the decompression-bomb limit ------------------------------------------------------------

def _bomb(path: Path) -> Path:
    """A JPEG of a few hundred bytes whose header declares 30000 x 30000 pixels."""
    Image.new("RGB", (16, 16), (120, 90, 60)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


def test_an_image_bomb_is_a_too_large_row_in_predict_and_data_check(tmp_path: Path):
    images = tmp_path / "images"
    (images / "real").mkdir(parents=True)
    (images / "fake").mkdir()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(images / "real" / "good.png")
    _bomb(images / "fake" / "bomb.jpg")
    result = _cli("predict", "--detector", "effb2", "--weights", "random", "--faces", "none", "--format", "csv",
                  "--device", "cpu", str(images / "real" / "good.png"), str(images / "fake" / "bomb.jpg"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = pd.read_csv(pd.io.common.StringIO(result.stdout)).set_index("path")
    assert rows.loc[str(images / "fake" / "bomb.jpg"), "status"] == "too_large"
    assert rows.loc[str(images / "real" / "good.png"), "status"] == "ok"
    check = _cli("data", "check", str(images))
    assert check.returncode == 1 and "Traceback" not in check.stderr and "too_large" in check.stderr


def test_unsupported_files_and_broken_links_are_listed_by_data_check(tiny: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    (data / "fake" / "anim.gif").write_bytes(b"GIF89a")
    (data / "real" / "photo.avif").write_bytes(b"\0")
    (data / "real" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    result = _cli("data", "check", str(data))
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stderr.split())
    assert "3 files in the dataset folder are not samples" in flat
    for line in ("fake/anim.gif: unsupported type .gif", "real/photo.avif: unsupported type .avif",
                 "real/gone.mp4: broken link"):
        assert line in flat


def test_a_manifest_row_naming_a_device_says_so(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"sample_id": ["a"], "path": ["/dev/null"], "label": [0]}).to_csv(manifest, index=False)
    with pytest.raises(DatasetError, match="not a regular file"):
        load_dataset(str(manifest))


# -- case 7: output paths that cannot be written -----------------------------------------------------------------

@pytest.mark.slow   # many CLI processes; in make test-slow
def test_unwritable_outputs_are_one_line_before_any_model_loads(tiny_run: Path, tmp_path: Path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    long_name = tmp_path / ("n" * 300)
    run = ["run", "--detector", "effb2", "--weights", "random", "--suite", "clean", "--dataset", "demo"]
    for args, needle in (
            ([*run, "--out", str(a_file)], "is a file, not a folder"),
            ([*run, "--out", str(a_file / "below")], "not a folder"),
            ([*run, "--out", str(long_name)], "too long"),
            (["perturb", "--suite", "clean", "--out", str(a_file)], "is a file, not a folder"),
            (["report", str(tiny_run), "-o", str(a_file / "x.html")], "not a folder"),
            (["leaderboard", str(tiny_run), "-o", str(tmp_path)], "is a folder"),
            (["leaderboard", str(tiny_run), "-o", str(tmp_path / "lb.csv"), "--wide", str(tmp_path)], "is a folder"),
            (["train", "--dataset", "demo", "--out", str(tmp_path)], "is a folder"),
            (["preview", "-o", str(a_file / "p.png")], "not a folder"),
            (["data", "demo", "--out", str(a_file)], "is a file, not a folder")):
        result = _cli(*args)
        _one_line_error(result, needle)
        assert "note:" not in result.stdout + result.stderr          # nothing was prepared or loaded
    assert a_file.read_text() == "x"


def test_a_read_only_or_full_output_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import dfbench.outputs as outputs

    for code, words in ((errno.EROFS, "read-only"), (errno.ENOSPC, "no space left"), (errno.EACCES, "permission")):
        def refuse(*args, code=code, **kwargs):
            raise OSError(code, os.strerror(code), str(tmp_path))

        monkeypatch.setattr(outputs.tempfile, "TemporaryFile", refuse)
        with pytest.raises(OutputPathError, match=words):
            outputs.prepare_folder(tmp_path / "out", "--out")


# -- case 8: damaged and unfinished stores -----------------------------------------------------------------------

def _damage(store: Path) -> None:
    """Overwrite every page of an SQLite file but the first (header and schema stay readable)."""
    data = bytearray(store.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) // page >= 3
    data[page:] = (b"\xde\xad\xbe\xef" * (len(data) // 4))[:len(data) - page]
    store.write_bytes(bytes(data))


def test_a_damaged_store_is_one_line_in_run_report_and_leaderboard(tiny: Path, tiny_run: Path, tmp_path: Path):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    with sqlite3.connect(damaged / "scores.sqlite") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(damaged / "scores.sqlite")
    with pytest.raises(StoreError, match="damaged|malformed|not a database"):
        ScoreStore(damaged / "scores.sqlite")
    for args in (["run", "--detector", "effb2", "--weights", "random", "--suite", "clean", "--frames", "2",
                  "--dataset", str(tiny), "--out", str(damaged), "--device", "cpu", "--precision", "fp32"],
                 ["report", str(damaged), "-o", str(tmp_path / "r.html")],
                 ["leaderboard", str(damaged), "-o", str(tmp_path / "lb.csv")]):
        result = _cli(*args)
        _one_line_error(result, "score store", "move it away")
        assert "note:" not in result.stdout


def test_report_and_leaderboard_say_a_run_is_incomplete(tiny_run: Path, tmp_path: Path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run, partial)
    with sqlite3.connect(partial / "scores.sqlite") as con:
        con.execute("DELETE FROM tasks WHERE sample_id = 'fake/a'")
    for args in (["report", str(partial), "-o", str(tmp_path / "r.html")],
                 ["leaderboard", str(partial), "-o", str(tmp_path / "lb.csv")]):
        result = _cli(*args)
        assert result.returncode == 0, result.stderr
        assert "incomplete run: 1 of 2 tasks" in " ".join(result.stderr.split())
    assert "incomplete run: 1 of 2 tasks" in (tmp_path / "r.html").read_text()
    complete = _cli("report", str(tiny_run), "-o", str(tmp_path / "full.html"))
    assert complete.returncode == 0 and "incomplete" not in complete.stderr


# -- README's output columns ---------------------------------------------------------------------------------------

def test_results_csv_has_the_columns_the_readme_documents(tiny_run: Path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("`results.csv`", 1)[1].split("`aggregation`", 1)[0]
    documented = [c.strip(" `.\n") for c in block.split(":", 1)[1].split(",")]
    columns = pd.read_csv(tiny_run / "results.csv").columns.tolist()
    assert columns == documented


# -- weaker point: a clip cut mid-GOP ------------------------------------------------------------------------------

def test_a_clip_whose_first_frames_cannot_be_decoded_delivers_every_sampled_frame(tmp_path: Path):
    from dfbench.config import Cell
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames
    from dfbench.video.probe import probe_video, sample_indices
    from tests.media import ffmpeg

    whole = make_video(tmp_path / "whole.mp4", frames=40, extra=["-g", "10", "-bf", "0"])
    cut = tmp_path / "cut.mp4"        # the first packet (the keyframe) dropped: 9 frames cannot be decoded
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(whole), "-c", "copy", "-bsf:v", "noise=drop=eq(n\\,0)",
                    str(cut)], check=True)
    indices = sample_indices(probe_video(cut).frame_count, 8)
    assert probe_video(cut).frame_count == 30 and probe_video(whole).frame_count == 40
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in (Cell("none", 0), Cell("hflip", 1))]
    got = {(e.cell_id, e.index) for e in sample_frames(cut, plans, indices) if isinstance(e, SampledFrame)}
    assert got == {(p.cell_id, i) for p in plans for i in indices}


@pytest.mark.parametrize("sample_id", ESCAPING_IDS[:2])
def test_report_and_leaderboard_write_only_the_named_files_whatever_the_stored_ids(tiny_run: Path, tmp_path: Path,
                                                                                    sample_id: str):
    stored = tmp_path / "stored"      # a store written by another tool or an older version, holding hostile ids
    shutil.copytree(tiny_run, stored)
    with sqlite3.connect(stored / "scores.sqlite") as con:
        for table in ("samples", "frames", "tasks"):
            con.execute(f"UPDATE {table} SET sample_id = ? WHERE sample_id = 'fake/a'", (sample_id,))  # noqa: S608
    out = tmp_path / "out"
    out.mkdir()
    before = _files(tmp_path)
    for args in (["report", str(stored), "-o", str(out / "r.html")], ["report", str(stored), "-o", str(out / "r.md")],
                 ["leaderboard", str(stored), "-o", str(out / "lb.csv"), "--wide", str(out / "w.csv"),
                  "--predictions", str(out / "p.csv")]):
        result = _cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    new = {p.relative_to(tmp_path).as_posix() for p in _files(tmp_path) - before}
    assert {n for n in new if not n.startswith("out/r_files/")} == {"out/r.html", "out/r.md", "out/lb.csv",
                                                                     "out/w.csv", "out/p.csv"}
    assert "sample_id" in pd.read_csv(out / "p.csv").columns   # (no video scores: the clips hold no face)
    assert not Path("/tmp/dfbench-absolute-escape").exists()
