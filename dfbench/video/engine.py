"""The fan-out engine: one ffmpeg process decodes a source once and feeds every cell of a suite.

Each cell is a chain of steps (`FilterStep`, `EncodeStep`). The engine runs them in rounds:

* round 0 decodes the source once and splits it into one branch per cell. A branch that only filters
  ends in the sampled frames, which reach Python as raw RGB through a single NUT stream on stdout
  (one sub-stream per cell). A branch with an encode (H.264 re-compression) writes the encoded file
  to the work folder instead;
* the next round decodes those files and continues their chains, and so on.

Frame-independent branches pick their sampled frames before filtering (no work on frames nobody
scores). A branch with a temporal filter (noise re-drawn per frame) filters every frame, then picks.

Every video cell's frames pass through ``format=yuv420p`` before conversion to RGB: a cell's frames are
exactly those a yuv420p video of the perturbed copy holds (odd sizes lose their last row or column, which
4:2:0 cannot store). `write_copies` writes those copies (lossless H.264 for filtered cells, the encoder's
own output for compression cells), and decoding a copy with the clean cell gives the same frames bit for
bit. Images are single frames kept in RGB, and their copies are PNG.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfbench.errors import DiskSpaceError
from dfbench.perturbations.base import EncodeStep, FilterStep, Step
from dfbench.video.ffmpeg import SWS_FLAGS, base_command, input_url, last_error_line


@dataclass(frozen=True)
class Storage:
    """How the frames of one medium are stored.

    Attributes:
        finish: filters that end every chain (and precede every encoder): the stored pixel format.
        lossless: encoder options of a written copy that stores the finished frames exactly.
        copy_suffix: file suffix written copies must take (None: keep the source's).
    """

    finish: tuple[str, ...]
    lossless: tuple[str, ...]
    copy_suffix: str | None = None


EVEN_CROP = "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"
STORAGE = {
    # Lossless H.264 (qp 0) in yuv420p: decoding gives back the filtered frames exactly.
    "video": Storage((EVEN_CROP, "format=yuv420p"),
                     ("-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                      "-x264-params", "threads=4")),
    "image": Storage(("format=rgb24",), ("-c:v", "png", "-pix_fmt", "rgb24", "-frames:v", "1", "-update", "1"),
                     ".png"),
    # A folder of frames (a DeepfakeBench video): RGB like its images; written copies are not supported.
    "frames": Storage(("format=rgb24",), ()),
}


@dataclass(frozen=True)
class CellPlan:
    """The steps of one cell, in order, for one source."""

    cell_id: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame of one cell: `image` is uint8 RGB, H x W x 3; `index` counts from 0 in the source."""

    cell_id: str
    index: int
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CellFailure:
    """ffmpeg failed for these cells; frames already yielded for them must be discarded."""

    cell_ids: tuple[str, ...]
    status: str
    message: str


Event = SampledFrame | CellFailure


@dataclass
class _Branch:
    cell_id: str
    filters: tuple[FilterStep, ...]
    encode: EncodeStep | None
    rest: tuple[Step, ...]

    @classmethod
    def from_steps(cls, cell_id: str, steps: Sequence[Step]) -> _Branch:
        filters: list[FilterStep] = []
        for i, step in enumerate(steps):
            if isinstance(step, EncodeStep):
                return cls(cell_id, tuple(filters), step, tuple(steps[i + 1:]))
            filters.append(step)
        return cls(cell_id, tuple(filters), None, ())

    @property
    def temporal(self) -> bool:
        return any(f.temporal for f in self.filters)

    def chain(self, *tail: str) -> str:
        exprs = [f.expr for f in self.filters if f.expr != "null"] + [t for t in tail if t]
        return ",".join(exprs) or "null"


def input_args(path: Path, workdir: Path) -> list[str]:
    """ffmpeg input options for a media file, or for a folder of frames (read in name order as one video)."""
    if not Path(path).is_dir():
        return ["-i", input_url(path)]
    frames = frame_files(Path(path))
    listing = workdir / f"frames-{abs(hash(str(path)))}.ffconcat"
    quoted = ["file '" + str(f.absolute()).replace("'", "'\\''") + "'\nduration 0.04" for f in frames]
    listing.write_text("ffconcat version 1.0\n" + "\n".join(quoted) + "\n")
    return ["-f", "concat", "-safe", "0", "-i", input_url(listing)]


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame folder, in name order."""
    from dfbench.video.probe import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _select(indices: Sequence[int] | None) -> str:
    if indices is None:
        return ""
    return "select='" + "+".join(f"eq(n\\,{i})" for i in indices) + "'"


@dataclass
class _Round:
    """One ffmpeg command: its inputs, its filter graph and its outputs."""

    inputs: list[Path]
    graph: list[str] = field(default_factory=list)
    frame_cells: list[str] = field(default_factory=list)   # nut sub-stream order
    frame_labels: list[str] = field(default_factory=list)
    file_outputs: list[tuple[str, tuple[str, ...], Path]] = field(default_factory=list)  # label, args, path
    file_cells: list[str] = field(default_factory=list)
    continuations: list[tuple[Path, _Branch]] = field(default_factory=list)

    def command(self, workdir: Path) -> list[str]:
        cmd = base_command()
        for path in self.inputs:
            cmd += input_args(path, workdir)
        cmd += ["-filter_complex", f"sws_flags={SWS_FLAGS};" + ";".join(self.graph)]
        for label, args, path in self.file_outputs:
            cmd += ["-map", f"[{label}]", *args, "-fps_mode", "passthrough", "-an", "-sn", "-dn", input_url(path)]
        if self.frame_labels:
            for label in self.frame_labels:
                cmd += ["-map", f"[{label}]"]
            cmd += ["-c:v", "rawvideo", "-fps_mode", "passthrough", "-f", "nut", "pipe:1"]
        return cmd

    @property
    def cells(self) -> tuple[str, ...]:
        """Every cell this round produces frames or files for."""
        return tuple(dict.fromkeys(self.frame_cells + self.file_cells))


def _plan_round(
    pending: Sequence[tuple[Path, _Branch]],
    indices: Sequence[int] | None,
    workdir: Path,
    round_no: int,
    destinations: Mapping[str, Path] | None,
    storage: Storage,
) -> _Round:
    """Build the graph of one round; `destinations` is None when sampling frames, else copy paths."""
    inputs = list(dict.fromkeys(path for path, _ in pending))
    rnd = _Round(inputs)
    counter = 0
    for i, path in enumerate(inputs):
        branches = [b for p, b in pending if p == path]
        sampled = [b for b in branches if destinations is None and b.encode is None and not b.temporal]
        full = [b for b in branches if b not in sampled]
        heads = _split_input(rnd.graph, f"{i}:v", f"r{i}", bool(sampled), bool(full))
        if sampled:
            labels = _fan(rnd.graph, heads["sampled"], _select(indices), len(sampled), f"s{i}_")
            for label, branch in zip(labels, sampled, strict=True):
                out = f"o{counter}"
                counter += 1
                rnd.graph.append(f"[{label}]{branch.chain(*storage.finish, 'format=rgb24')}[{out}]")
                rnd.frame_cells.append(branch.cell_id)
                rnd.frame_labels.append(out)
        if full:
            labels = _fan(rnd.graph, heads["full"], "", len(full), f"f{i}_")
            for label, branch in zip(labels, full, strict=True):
                out = f"o{counter}"
                counter += 1
                _route_full_branch(rnd, label, out, branch, indices, workdir, round_no, destinations, storage)
    return rnd


def _split_input(graph: list[str], stream: str, name: str, sampled: bool, full: bool) -> dict[str, str]:
    if sampled and full:
        graph.append(f"[{stream}]split=2[{name}s][{name}f]")
        return {"sampled": f"{name}s", "full": f"{name}f"}
    return {"sampled": stream, "full": stream}


def _fan(graph: list[str], head: str, select: str, n: int, prefix: str) -> list[str]:
    labels = [f"{prefix}{k}" for k in range(n)]
    chain = ",".join(x for x in (select, f"split={n}") if x)
    graph.append(f"[{head}]{chain}" + "".join(f"[{label}]" for label in labels))
    return labels


def _route_full_branch(
    rnd: _Round, label: str, out: str, branch: _Branch, indices: Sequence[int] | None, workdir: Path,
    round_no: int, destinations: Mapping[str, Path] | None, storage: Storage,
) -> None:
    if branch.encode is not None:
        final = destinations is not None and not branch.rest
        path = destinations[branch.cell_id] if final and destinations else (
            workdir / f"round{round_no}_{out}{branch.encode.suffix}")
        rnd.graph.append(f"[{label}]{branch.chain(*storage.finish)}[{out}]")
        rnd.file_outputs.append((out, branch.encode.args, path))
        rnd.file_cells.append(branch.cell_id)
        if not final:
            rnd.continuations.append((path, _Branch.from_steps(branch.cell_id, branch.rest)))
    elif destinations is not None:
        rnd.graph.append(f"[{label}]{branch.chain(*storage.finish)}[{out}]")
        rnd.file_outputs.append((out, storage.lossless, destinations[branch.cell_id]))
        rnd.file_cells.append(branch.cell_id)
    else:
        rnd.graph.append(
            f"[{label}]{branch.chain(_select(indices), *storage.finish, 'format=rgb24')}[{out}]")
        rnd.frame_cells.append(branch.cell_id)
        rnd.frame_labels.append(out)


def sample_frames(
    source: Path, plans: Sequence[CellPlan], indices: Sequence[int] | None, workdir: Path | None = None,
    media: str = "video", cache_limit: int | None = None,
) -> Iterator[Event]:
    """Decode `source` once and yield the sampled frames of every cell, as they come.

    Args:
        source: the video file.
        plans: one plan per cell.
        indices: sorted frame indices to sample (None: every frame).
        workdir: where intermediate encodes go (a temporary folder when None); emptied afterwards.
        media: ``video`` or ``image`` (the `Storage` of the cells' frames).
        cache_limit: most bytes the intermediate files may take; more raises DiskSpaceError.

    Raises:
        DiskSpaceError: the disk filled up, or the intermediates exceed `cache_limit`. A full disk is not
            the sample's fault, so it stops the run instead of becoming a status.

    Yields:
        `SampledFrame` events, and a `CellFailure` for the cells of a round that ffmpeg failed.
    """
    with tempfile.TemporaryDirectory(prefix="dfbench-", dir=workdir) as tmp:
        pending = [(Path(source), _Branch.from_steps(p.cell_id, p.steps)) for p in plans]
        round_no = 0
        while pending:
            rnd = _plan_round(pending, indices, Path(tmp), round_no, None, STORAGE[media])
            ok = yield from _run_sampling_round(rnd, indices, Path(tmp))
            _check_cache(Path(tmp), cache_limit, source)
            pending = rnd.continuations if ok else []
            for path in rnd.inputs:
                if path != Path(source):
                    path.unlink(missing_ok=True)
            round_no += 1


def _run_sampling_round(rnd: _Round, indices: Sequence[int] | None, workdir: Path) -> Generator[Event, None, bool]:
    import av

    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(rnd.command(workdir), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if rnd.frame_labels else subprocess.DEVNULL,
                                stderr=errfile)
        read_error = ""
        try:
            if rnd.frame_labels:
                assert proc.stdout is not None
                try:
                    yield from _read_nut(proc.stdout, rnd.frame_cells, indices)
                except (av.error.FFmpegError, EOFError, ValueError) as exc:
                    read_error = f"{exc.__class__.__name__}: {exc}"
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code == 0 and not read_error:
            return True
        errfile.seek(0)
        stderr = errfile.read().decode(errors="replace")
        raise_if_disk_full(stderr)
        message = last_error_line(stderr) if code else read_error
        yield CellFailure(rnd.cells, "ffmpeg_error", message)
        return False


def raise_if_disk_full(stderr: str) -> None:
    """ffmpeg failed because the disk is full: stop the run (resumable) instead of blaming the sample."""
    if "No space left on device" in stderr:
        raise DiskSpaceError("The disk is full (ffmpeg: No space left on device). Free space, then run the same "
                             "command again to resume.")


def _check_cache(folder: Path, limit: int | None, source: Path) -> None:
    if limit is None:
        return
    used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if used > limit:
        raise DiskSpaceError(f"Intermediate files of {source.name} take {used / 1e6:.1f} MB, more than --cache-limit "
                             f"{limit / 1e6:.1f} MB. Raise --cache-limit, then run the same command again to resume.")


def _read_nut(stream, cells: Sequence[str], indices: Sequence[int] | None) -> Iterator[SampledFrame]:
    import av

    counts = [0] * len(cells)
    # FFmpeg's own pipe protocol reads the descriptor in C. A Python file object would make PyAV call back
    # into Python for every read, and PyAV swallows exceptions raised there, Ctrl-C's KeyboardInterrupt included.
    with av.open(f"pipe:{stream.fileno()}", format="nut", mode="r") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            k = packet.stream.index
            for frame in packet.decode():
                n = counts[k]
                counts[k] += 1
                index = n if indices is None else (indices[n] if n < len(indices) else None)
                if index is not None:
                    yield SampledFrame(cells[k], index, frame.to_ndarray(format="rgb24"))


def copy_path(path: Path, plan: CellPlan, media: str) -> Path:
    """Where the copy of `path` for `plan` goes: the same name, except filtered images, which become PNG."""
    suffix = STORAGE[media].copy_suffix
    clean = all(isinstance(s, FilterStep) and s.expr == "null" for s in plan.steps)
    return path if suffix is None or clean else path.with_suffix(suffix)


def write_copies(
    source: Path, plans: Sequence[CellPlan], destinations: Mapping[str, Path], workdir: Path | None = None,
    media: str = "video",
) -> dict[str, str]:
    """Write the full perturbed copy of `source` for every cell to `destinations[cell_id]`.

    The clean cell (a chain of ``null`` filters only) is a byte copy. Filtered video cells are stored as
    lossless H.264 in yuv420p, filtered images as PNG (`copy_path` gives their names); compression cells
    as their encoder's own output.

    Returns:
        cell id -> error message, for the cells that failed (empty when all succeeded).
    """
    errors: dict[str, str] = {}
    for dest in destinations.values():
        dest.parent.mkdir(parents=True, exist_ok=True)
    pending = []
    for plan in plans:
        if all(isinstance(s, FilterStep) and s.expr == "null" for s in plan.steps):
            shutil.copyfile(source, destinations[plan.cell_id])
        else:
            pending.append((Path(source), _Branch.from_steps(plan.cell_id, plan.steps)))
    with tempfile.TemporaryDirectory(prefix="dfbench-", dir=workdir) as tmp:
        round_no = 0
        while pending:
            rnd = _plan_round(pending, None, Path(tmp), round_no, destinations, STORAGE[media])
            result = subprocess.run(rnd.command(Path(tmp)), stdin=subprocess.DEVNULL, capture_output=True, check=False)
            if result.returncode != 0:
                stderr = result.stderr.decode(errors="replace")
                raise_if_disk_full(stderr)
                message = last_error_line(stderr)
                errors.update({cell: message for cell in rnd.cells})
                break
            pending = rnd.continuations
            round_no += 1
    return errors
