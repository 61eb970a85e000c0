"""The fan-out engine: one ffmpeg process decodes a source once and feeds every cell of a suite.

Each cell is a chain of steps: ffmpeg filters (`FilterStep`), Python per-frame steps (`FrameStep`) and
re-encodes (`EncodeStep`). The engine runs them in rounds:

* round 0 decodes the source once and splits it into one branch per cell. A branch that only filters
  ends in the sampled frames, which reach Python as raw RGB through a single NUT stream on stdout
  (one sub-stream per cell). A branch with an encode (H.264 re-compression) writes the encoded file
  to the work folder instead. A branch with Python steps sends its frames (sampled ones, or all of them
  when an encode follows) to Python, and from there into a second ffmpeg process (`python_steps`);
* the next round decodes the intermediate files and continues their chains, and so on.

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

from dfbench.errors import ConfigError, DiskSpaceError, MediaError
from dfbench.perturbations.base import OPENCV_BITRATE, EncodeStep, FilterStep, FrameStep, Step
from dfbench.video.ffmpeg import SWS_FLAGS, base_command, input_url, last_error_line
from dfbench.video.python_steps import FinishSink, WriterSink


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
# Ours: graphs longer than this go to ffmpeg in a file. Linux refuses one argument over 128 KiB (MAX_ARG_STRLEN)
# and a whole command line over about 2 MB; short graphs stay inline, readable in `ps` and older ffmpegs.
INLINE_GRAPH_MAX = 32_000
# Ours: cells one ffmpeg process decodes for. Every shipped suite fits (`all` has 96); a larger suite decodes its
# source once per 128 cells, so that no process holds hundreds of encoders and filter chains at once.
MAX_BRANCHES = 128
# Ours: cells with an encode that one ffmpeg process serves (each encoder holds its own frame buffers: measured
# here at 480p, 130 MB for libx264 to 250 MB for SVT-AV1, and the `all` suite's 33 encoders in one ffmpeg process
# peaked at 4.9 GB). More cells decode their source again, once per 8 encoders: a decode costs less than one
# encode (9.5 ms against 16-41 ms per 720p frame, benchmarks/ops.py).
MAX_ENCODERS = 8
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
    """What one round does for one cell: filters, then an encode, or Python steps, or nothing; `rest` continues."""

    cell_id: str
    filters: tuple[FilterStep, ...]
    encode: EncodeStep | None = None
    python: tuple[FrameStep, ...] = ()
    rest: tuple[Step, ...] = ()

    @classmethod
    def from_steps(cls, cell_id: str, steps: Sequence[Step]) -> _Branch:
        filters: list[FilterStep] = []
        for i, step in enumerate(steps):
            if isinstance(step, EncodeStep):
                return cls(cell_id, tuple(filters), encode=step, rest=tuple(steps[i + 1:]))
            if isinstance(step, FrameStep):
                j = i
                while j < len(steps) and isinstance(steps[j], FrameStep):
                    j += 1
                python = tuple(s for s in steps[i:j] if isinstance(s, FrameStep))
                branch = cls(cell_id, tuple(filters), python=python, rest=tuple(steps[j:]))
                branch.check_python_rest()
                return branch
            filters.append(step)
        return cls(cell_id, tuple(filters))

    def check_python_rest(self) -> None:
        for step in self.rest:
            if isinstance(step, EncodeStep):
                return
            if isinstance(step, FrameStep) or step.temporal:
                raise ConfigError(f"Cell {self.cell_id!r}: after a Python step, a chain may hold plain filters and "
                                  "an encode; another Python step or a temporal filter must follow an encode.")

    @property
    def temporal(self) -> bool:
        return any(f.temporal for f in self.filters)

    @property
    def after_python(self) -> tuple[list[str], EncodeStep | None, tuple[Step, ...]]:
        """Filters after the Python steps, the encode that may follow them, and what comes after it."""
        exprs: list[str] = []
        for i, step in enumerate(self.rest):
            if isinstance(step, EncodeStep):
                return exprs, step, self.rest[i + 1:]
            assert isinstance(step, FilterStep)
            if step.expr != "null":
                exprs.append(step.expr)
        return exprs, None, ()

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


Sink = FinishSink | WriterSink


@dataclass
class _Round:
    """One ffmpeg command: its inputs, its filter graph and its outputs."""

    inputs: list[Path]
    graph: list[str] = field(default_factory=list)
    frame_cells: list[str] = field(default_factory=list)   # nut sub-stream order
    frame_labels: list[str] = field(default_factory=list)
    frame_sampled: list[bool] = field(default_factory=list)  # the sub-stream holds only the sampled frames
    sinks: list[Sink | None] = field(default_factory=list)   # Python steps a sub-stream's frames go through
    file_outputs: list[tuple[str, tuple[str, ...], Path]] = field(default_factory=list)  # label, args, path
    file_cells: list[str] = field(default_factory=list)
    continuations: list[tuple[Path, _Branch]] = field(default_factory=list)

    def command(self, workdir: Path) -> list[str]:
        cmd = base_command()
        for path in self.inputs:
            cmd += input_args(path, workdir)
        graph = f"sws_flags={SWS_FLAGS};" + ";".join(self.graph)
        if len(graph.encode()) <= INLINE_GRAPH_MAX:
            cmd += ["-filter_complex", graph]
        else:   # a file has no length limit; ffmpeg >= 7 reads an option's value from a file with "-/"
            script = workdir / f"graph-{len(list(workdir.glob('graph-*')))}.txt"
            script.write_text(graph)
            cmd += ["-/filter_complex", input_url(script)]
        for label, args, path in self.file_outputs:
            cmd += ["-map", f"[{label}]", *args, "-fps_mode", "passthrough", "-an", "-sn", "-dn", input_url(path)]
        if self.frame_labels:
            for label in self.frame_labels:
                cmd += ["-map", f"[{label}]"]
            cmd += ["-c:v", "rawvideo", "-fps_mode", "passthrough", "-f", "nut", "pipe:1"]
        return cmd

    def add_stream(self, cell: str, label: str, sampled: bool, sink: Sink | None = None) -> None:
        self.frame_cells.append(cell)
        self.frame_labels.append(label)
        self.frame_sampled.append(sampled)
        self.sinks.append(sink)

    @property
    def cells(self) -> tuple[str, ...]:
        """Every cell this round produces frames or files for."""
        return tuple(dict.fromkeys(self.frame_cells + self.file_cells))


@dataclass(frozen=True)
class _Context:
    """What every round of one source shares."""

    indices: Sequence[int] | None
    workdir: Path
    destinations: Mapping[str, Path] | None   # None when sampling frames, else the copies' paths
    storage: Storage
    fps: float


def _plan_round(pending: Sequence[tuple[Path, _Branch]], ctx: _Context, round_no: int) -> _Round:
    """Build the graph of one round."""
    inputs = list(dict.fromkeys(path for path, _ in pending))
    rnd = _Round(inputs)
    counter = 0
    for i, path in enumerate(inputs):
        branches = [b for p, b in pending if p == path]
        sampled = [b for b in branches if _takes_sampled(b, ctx)]
        full = [b for b in branches if b not in sampled]
        heads = _split_input(rnd.graph, f"{i}:v", f"r{i}", bool(sampled), bool(full))
        for group, head, select in ((sampled, heads["sampled"], _select(ctx.indices)), (full, heads["full"], "")):
            if not group:
                continue
            labels = _fan(rnd.graph, head, select, len(group), f"{'s' if select else 'f'}{i}_")
            for label, branch in zip(labels, group, strict=True):
                out = f"o{counter}"
                counter += 1
                _route(rnd, label, out, branch, ctx, round_no, presampled=bool(select))
    return rnd


def _takes_sampled(branch: _Branch, ctx: _Context) -> bool:
    """Whether the branch can start from the sampled frames only (no encode, no temporal filter, no copy)."""
    if ctx.destinations is not None or branch.encode is not None or branch.temporal:
        return False
    return not branch.python or branch.after_python[1] is None


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


def _route(rnd: _Round, label: str, out: str, branch: _Branch, ctx: _Context, round_no: int,
           presampled: bool) -> None:
    """Give one branch its output: sampled frames, a Python sink, an encode, or a lossless copy."""
    dest = ctx.destinations
    if branch.python:
        _route_python(rnd, label, out, branch, ctx, round_no, presampled)
    elif branch.encode is not None:
        final = dest is not None and not branch.rest
        path = dest[branch.cell_id] if final and dest else ctx.workdir / f"round{round_no}_{out}{branch.encode.suffix}"
        rnd.graph.append(f"[{label}]{branch.chain(*ctx.storage.finish)}[{out}]")
        if OPENCV_BITRATE in branch.encode.args:
            raise ConfigError(f"Cell {branch.cell_id!r}: an encode at OpenCV's bit rate must follow Python steps.")
        rnd.file_outputs.append((out, branch.encode.args, path))
        rnd.file_cells.append(branch.cell_id)
        if not final:
            rnd.continuations.append((path, _Branch.from_steps(branch.cell_id, branch.rest)))
    elif dest is not None:
        rnd.graph.append(f"[{label}]{branch.chain(*ctx.storage.finish)}[{out}]")
        rnd.file_outputs.append((out, ctx.storage.lossless, dest[branch.cell_id]))
        rnd.file_cells.append(branch.cell_id)
    else:
        select = "" if presampled else _select(ctx.indices)
        rnd.graph.append(f"[{label}]{branch.chain(select, *ctx.storage.finish, 'format=rgb24')}[{out}]")
        rnd.add_stream(branch.cell_id, out, sampled=presampled or ctx.indices is not None)


def _route_python(rnd: _Round, label: str, out: str, branch: _Branch, ctx: _Context, round_no: int,
                  presampled: bool) -> None:
    exprs, encode, after = branch.after_python
    select = "" if presampled or ctx.destinations is not None or encode is not None else _select(ctx.indices)
    sampled = bool(select) or presampled
    rnd.graph.append(f"[{label}]{branch.chain(select, 'format=rgb24')}[{out}]")
    finish = ",".join([*exprs, *ctx.storage.finish]) or "null"
    sink: Sink
    if ctx.destinations is None and encode is None:
        sink = FinishSink(branch.cell_id, branch.python, finish, ctx.fps)
    else:
        final = ctx.destinations is not None and not after
        path = ctx.destinations[branch.cell_id] if final and ctx.destinations else (
            ctx.workdir / f"round{round_no}_{out}{encode.suffix if encode else '.mp4'}")
        args = encode.args if encode is not None else ctx.storage.lossless
        sink = WriterSink(branch.cell_id, branch.python, finish, args, path, ctx.fps)
        if not final:
            rnd.continuations.append((path, _Branch.from_steps(branch.cell_id, after)))
    rnd.add_stream(branch.cell_id, out, sampled=sampled, sink=sink)


def _run_round(rnd: _Round, ctx: _Context) -> Generator[Event, None, set[str]]:
    """Run one round; yield sampled frames and failures; return the cells that failed."""
    import av

    failed: set[str] = set()
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = subprocess.Popen(rnd.command(ctx.workdir), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if rnd.frame_labels else subprocess.DEVNULL, stderr=errfile)
        except OSError as exc:   # e.g. E2BIG: a command line the system refuses is the cells' failure, recorded
            _kill_writers(rnd)
            yield CellFailure(rnd.cells, "ffmpeg_error", f"cannot start ffmpeg: {exc.strerror or exc}")
            return set(rnd.cells)
        read_error = ""
        try:  # noqa: SIM105 - the except below re-raises
            if rnd.frame_labels:
                assert proc.stdout is not None
                try:
                    yield from _read_nut(proc.stdout, rnd, ctx.indices)
                except (av.error.FFmpegError, EOFError, ValueError) as exc:
                    read_error = f"{exc.__class__.__name__}: {exc}"
            code = proc.wait()
        except BaseException:  # interrupted or closed early: leave no ffmpeg behind
            _kill_writers(rnd)
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0 or read_error:
            _kill_writers(rnd)
            errfile.seek(0)
            stderr = errfile.read().decode(errors="replace")
            raise_if_disk_full(stderr)
            message = last_error_line(stderr) if code else read_error
            yield CellFailure(rnd.cells, "ffmpeg_error", message)
            return set(rnd.cells)
    for sink in rnd.sinks:
        if sink is None:
            continue
        if isinstance(sink, FinishSink):
            frames, message = sink.finish()
            for index, image in frames:
                yield SampledFrame(sink.cell_id, index, image)
        else:
            message = sink.finish()
        if message:
            raise_if_disk_full(message)
            failed.add(sink.cell_id)
            yield CellFailure((sink.cell_id,), "ffmpeg_error", message)
    return failed


def _kill_writers(rnd: _Round) -> None:
    for sink in rnd.sinks:
        if isinstance(sink, WriterSink):
            sink.kill()


def raise_if_disk_full(stderr: str) -> None:
    """ffmpeg failed because the disk is full: stop the run (resumable) instead of blaming the sample."""
    if "No space left on device" in stderr:
        raise DiskSpaceError("The disk is full (ffmpeg: No space left on device). Free space, then run the same "
                             "command again to resume.")


def _check_work_limit(folder: Path, limit: int | None, source: Path) -> None:
    if limit is None:
        return
    used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if used > limit:
        raise DiskSpaceError(f"Intermediate files of {source.name} take {used / 1e6:.1f} MB, more than --work-limit "
                             f"{limit / 1e6:.1f} MB. Raise --work-limit, then run the same command again to resume.")


def _read_nut(stream, rnd: _Round, indices: Sequence[int] | None) -> Iterator[SampledFrame]:
    import av

    counts = [0] * len(rnd.frame_cells)
    # FFmpeg's own pipe protocol reads the descriptor in C. A Python file object would make PyAV call back
    # into Python for every read, and PyAV swallows exceptions raised there, Ctrl-C's KeyboardInterrupt included.
    try:
        container = av.open(f"pipe:{stream.fileno()}", format="nut", mode="r")
    except av.error.InvalidDataError:
        return  # no frame at all (every sampled index beyond the end); ffmpeg's exit code tells if it failed
    with container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            k = packet.stream.index
            for frame in packet.decode():
                if not isinstance(frame, av.VideoFrame):
                    continue
                n = counts[k]
                counts[k] += 1
                sampled = rnd.frame_sampled[k] and indices is not None
                index = (indices[n] if n < len(indices) else None) if sampled and indices is not None else n
                if index is None:
                    continue
                sink = rnd.sinks[k]
                if sink is not None:
                    sink.push(index, frame.to_ndarray(format="rgb24"))
                elif indices is None or index in indices:
                    yield SampledFrame(rnd.frame_cells[k], index, frame.to_ndarray(format="rgb24"))


def _rounds(source: Path, plans: Sequence[CellPlan], ctx: _Context,
            work_limit: int | None = None) -> Generator[Event, None, dict[str, str]]:
    """Run every round for `source`, at most `MAX_BRANCHES` cells and `MAX_ENCODERS` cells with an encode per
    ffmpeg process; intermediate files are removed once their round is done."""
    errors: dict[str, str] = {}
    round_no = 0
    for chunk in _chunks(plans):
        round_no = yield from _chunk_rounds(source, chunk, ctx, work_limit, errors, round_no)
    return errors


def _chunks(plans: Sequence[CellPlan]) -> Iterator[list[CellPlan]]:
    """`plans` in order, cut so that no chunk has more than `MAX_BRANCHES` plans or `MAX_ENCODERS` that encode."""
    chunk: list[CellPlan] = []
    encoders = 0
    for plan in plans:
        encodes = any(isinstance(step, EncodeStep) for step in plan.steps)
        if chunk and (len(chunk) == MAX_BRANCHES or encodes and encoders == MAX_ENCODERS):
            yield chunk
            chunk, encoders = [], 0
        chunk.append(plan)
        encoders += encodes
    if chunk:
        yield chunk


def _chunk_rounds(source: Path, plans: Sequence[CellPlan], ctx: _Context, work_limit: int | None,
                  errors: dict[str, str], round_no: int) -> Generator[Event, None, int]:
    pending = [(Path(source), _Branch.from_steps(p.cell_id, p.steps)) for p in plans]
    while pending:
        rnd = _plan_round(pending, ctx, round_no)
        failures = yield from _run_round_collect(rnd, ctx, errors)
        _check_work_limit(ctx.workdir, work_limit, source)
        pending = [(p, b) for p, b in rnd.continuations if b.cell_id not in failures]
        for path in rnd.inputs:
            if path != Path(source) and not path.is_dir():
                path.unlink(missing_ok=True)
        round_no += 1
    return round_no


def _run_round_collect(rnd: _Round, ctx: _Context, errors: dict[str, str]) -> Generator[Event, None, set[str]]:
    failed: set[str] = set()
    for event in _run_round(rnd, ctx):
        if isinstance(event, CellFailure):
            failed.update(event.cell_ids)
            errors.update({cell: event.message for cell in event.cell_ids})
        yield event
    return failed


def sample_frames(
    source: Path, plans: Sequence[CellPlan], indices: Sequence[int] | None, workdir: Path | None = None,
    media: str = "video", work_limit: int | None = None, fps: float = 25.0,
) -> Iterator[Event]:
    """Decode `source` once and yield the sampled frames of every cell, as they come.

    Args:
        source: the video file (or image, or frame folder).
        plans: one plan per cell.
        indices: sorted frame indices to sample (None: every frame).
        workdir: where intermediate encodes go (a temporary folder when None); emptied afterwards.
        media: ``video``, ``image`` or ``frames`` (the `Storage` of the cells' frames).
        work_limit: most bytes the intermediate files may take; more raises DiskSpaceError.
        fps: frame rate given to frames that come back from Python steps (the source's).

    Raises:
        DiskSpaceError: the disk filled up, or the intermediates exceed `work_limit`. A full disk is not
            the sample's fault, so it stops the run instead of becoming a status.

    Yields:
        `SampledFrame` events, and a `CellFailure` for cells ffmpeg failed on.
    """
    with tempfile.TemporaryDirectory(prefix="dfbench-", dir=workdir) as tmp:
        ctx = _Context(indices, Path(tmp), None, STORAGE[media], fps or 25.0)
        try:
            source = decoded_still(Path(source), Path(tmp)) if media == "image" else Path(source)
        except MediaError as exc:
            yield CellFailure(tuple(p.cell_id for p in plans), "decode_error", str(exc))
            return
        yield from _rounds(source, plans, ctx, work_limit)


def decoded_still(source: Path, folder: Path) -> Path:
    """A still image decoded by Pillow and written losslessly (PNG) into `folder`, for ffmpeg to read.

    The image detectors' authors read their images with Pillow (torchvision, Keras), and ffmpeg's own JPEG decoder
    upsamples chroma differently: on a 4:2:0 JPEG of a demo frame the two decodes differ by 0.32 grey levels on
    average and up to 9 (measured here). Through this PNG every cell starts from Pillow's pixels."""
    from PIL import Image

    from dfbench.video.image import read_image

    target = folder / "still.png"
    Image.fromarray(read_image(source)).save(target, compress_level=1)
    return target


def copy_path(path: Path, plan: CellPlan, media: str) -> Path:
    """Where the copy of `path` for `plan` goes: the same name, except filtered images, which become PNG."""
    suffix = STORAGE[media].copy_suffix
    return path if suffix is None or _is_clean(plan) else path.with_suffix(suffix)


def _is_clean(plan: CellPlan) -> bool:
    return all(isinstance(s, FilterStep) and s.expr == "null" for s in plan.steps)


def write_copies(
    source: Path, plans: Sequence[CellPlan], destinations: Mapping[str, Path], workdir: Path | None = None,
    media: str = "video", fps: float = 25.0,
) -> dict[str, str]:
    """Write the full perturbed copy of `source` for every cell to `destinations[cell_id]`.

    The clean cell (a chain of ``null`` filters only) is a byte copy. Filtered video cells are stored as
    lossless H.264 in yuv420p, filtered images as PNG (`copy_path` gives their names); compression cells
    as their encoder's own output.

    Returns:
        cell id -> error message, for the cells that failed (empty when all succeeded).
    """
    for dest in destinations.values():
        dest.parent.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        if _is_clean(plan):
            shutil.copyfile(source, destinations[plan.cell_id])
    rest = [p for p in plans if not _is_clean(p)]
    with tempfile.TemporaryDirectory(prefix="dfbench-", dir=workdir) as tmp:
        ctx = _Context(None, Path(tmp), destinations, STORAGE[media], fps or 25.0)
        try:
            start = decoded_still(Path(source), Path(tmp)) if media == "image" and rest else Path(source)
        except MediaError as exc:
            return {p.cell_id: f"decode_error: {exc}" for p in rest}
        events = _rounds(start, rest, ctx)
        while True:
            try:
                next(events)
            except StopIteration as done:
                return done.value or {}
