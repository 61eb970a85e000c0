"""Fuzzing the suite and manifest loaders with seeded mutations of valid files (no hypothesis needed).

Every mutated file must load or be refused with a DfbenchError (one line in the CLI), within a time bound
(SIGALRM turns a hang into a failure) and in bounded memory. Marked slow: ``make test-slow`` runs it.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dfbench.config import load_suite
from dfbench.data import load_dataset
from dfbench.errors import DfbenchError

pytestmark = pytest.mark.slow

SECONDS_PER_INPUT = 20      # a hang fails the test instead of stalling CI
BYTES_PER_INPUT = 64_000_000

VALID_SUITE = """\
name: fuzz
version: 3
description: a suite to mutate
media: [video, image]
frames:
  per_video: 4
faces: redetect
aggregation: mean
seed: 7
cells:
  - none
  - {op: h264_crf, levels: [23, 40]}
  - hflip
  - {op: brightness, level: 0.1}
  - {chain: [{op: brightness, level: 0.1}, {op: h264_crf, level: 28}]}
  - {chain: [hflip, vflip]}
"""

TOKENS = ["&a ", "*a", "[", "]", "{", "}", ": ", "- ", "!!python/object/apply:os.system ['true']", "\t", "'", '"',
          "?", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "1e999", "-1", ".nan", "2147483648", "99999999999999999999",
          "true", "null", "~", "\x00", "\ufeff", "é", "\r\n", "#", "&b [*a,*a,*a,*a]", "<<: *a", "x" * 5000,
          "levels", "chain", "op", "level", "cells", "frames", "per_video", "[" * 200, "{a: " * 100]


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.choice([1, 1, 1, 2, 3, 6])):
        kind = rng.randrange(5)
        at = rng.randrange(len(text) + 1)
        if kind == 0:
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif kind == 1 and text:
            end = min(len(text), at + rng.randint(1, 40))
            text = text[:at] + text[end:]
        elif kind == 2 and text:   # a repeated line: duplicate keys, more cells
            lines = text.splitlines(keepends=True)
            line = rng.choice(lines)
            text = "".join(lines + [line] * rng.randint(1, 3))
        elif kind == 3 and text:
            pos = rng.randrange(len(text))
            text = text[:pos] + chr(rng.randrange(1, 0x3000)) + text[pos + 1:]
        else:
            text = text[:at] + str(rng.choice([0, -5, 1.5, 10**12, "abc", [1], {"a": 1}, None])) + text[at:]
    return text


def _manifest(rng: random.Random, folder: Path, media: list[Path]) -> str:
    ids = ["real/a", "fake/b", "../x", "/abs", "a//b", "", "ünï", "x" * 400, "a\0b", "dup", "dup", "fake/", ".", "a;b"]
    paths = [*map(str, media), "/dev/zero", "/dev/null", str(folder / "fifo"), str(folder / "loop"), str(folder),
             "missing.mp4", "", "../../etc/passwd", "x" * 5000, str(folder / "empty.mp4")]
    labels = ["0", "1", "1.0", "yes", "", "nan", "-1", "2", "1e999", " 1 "]
    header = rng.choice(["sample_id,path,label", "sample_id,path,label,split,method,group", "path,label",
                         "\ufeffsample_id,path,label", "sample_id,path,label,label", "sample_id;path;label"])
    rows = [",".join(f'"{rng.choice(ids)}"' if rng.random() < 0.3 else rng.choice(ids).replace(",", "")
                     for _ in range(1)) + f",{rng.choice(paths)},{rng.choice(labels)}"
            + ("," + ",".join(rng.choice(["train", "test", "", "x"]) for _ in range(3)) if "split" in header else "")
            for _ in range(rng.randint(0, 8))]
    newline = rng.choice(["\n", "\r\n"])
    return _mutate(newline.join([header, *rows]) + newline, rng) if rng.random() < 0.4 else newline.join(
        [header, *rows]) + newline


@contextmanager
def _bounded(what: str) -> Iterator[None]:
    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} ran past {SECONDS_PER_INPUT} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(SECONDS_PER_INPUT)
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        assert peak < BYTES_PER_INPUT, f"{what} took {peak / 1e6:.0f} MB"


def _outcome(load: Callable[[], object], what: str) -> str:
    with _bounded(what):
        try:
            load()
        except DfbenchError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip(), f"{what}: a multi-line error: {message!r}"
            return "refused"
    return "loaded"


def test_mutated_suites_load_or_are_refused_in_one_line(tmp_path: Path):
    rng = random.Random(20261202)
    outcomes: dict[str, int] = {}
    for trial in range(600):
        text = _mutate(VALID_SUITE, rng)
        path = tmp_path / f"s{trial}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = _outcome(lambda p=path: load_suite(str(p)), f"suite {trial}: {text[:300]!r}")
        outcomes[result] = outcomes.get(result, 0) + 1
    print(outcomes)
    assert outcomes.get("refused", 0) > 100 and outcomes.get("loaded", 0) > 10   # the mutations reach both ends


def test_mutated_manifests_load_or_are_refused_in_one_line(tmp_path: Path, clip: Path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "empty.mp4").write_bytes(b"")
    media = [clip, tmp_path / "empty.mp4"]
    rng = random.Random(1812)
    outcomes: dict[str, int] = {}
    for trial in range(400):
        text = _manifest(rng, tmp_path, media)
        path = tmp_path / f"m{trial}.csv"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        for mode, problems in (("strict", None), ("check", [])):
            result = _outcome(lambda p=path, pr=problems: load_dataset(str(p), problems=pr),
                              f"manifest {trial} ({mode}): {text[:300]!r}")
            outcomes[f"{mode} {result}"] = outcomes.get(f"{mode} {result}", 0) + 1
    print(outcomes)
    assert outcomes.get("strict refused", 0) > 50 and outcomes.get("check loaded", 0) > 50


def test_the_cli_gives_one_line_for_mutated_inputs(tmp_path: Path):
    rng = random.Random(7)
    for trial in range(12):
        path = tmp_path / f"s{trial}.yaml"
        path.write_text(_mutate(VALID_SUITE, rng), encoding="utf-8", errors="surrogatepass")
        result = subprocess.run([sys.executable, "-m", "dfbench", "preview", "--suite", str(path), "-o",
                                 str(tmp_path / "p.png"), "--dataset", str(tmp_path / "none")],
                                capture_output=True, text=True, timeout=300)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 1 and len([ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]) == 1
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 4_000_000   # KB: no child near 4 GB
