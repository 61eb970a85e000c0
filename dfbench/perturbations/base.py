"""What an operation is: metadata that changes numbers, plus the processing steps for one level.

An operation turns a level (in its physical unit: a CRF, a scale factor, a noise strength) into an
ordered list of steps. A `FilterStep` is an ffmpeg filter applied to every decoded frame; an
`EncodeStep` re-encodes the whole stream (compression is an operation of its own). The video engine
(`dfbench.video.engine`) turns the steps of every cell of a suite into one ffmpeg fan-out per source.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dfbench.errors import ConfigError
from dfbench.hashing import stable_hash
from dfbench.perturbations.geometry import IDENTITY, Geometry
from dfbench.registry import Registry

Level = int | float


@dataclass(frozen=True)
class FilterStep:
    """An ffmpeg filter applied to every frame.

    Attributes:
        expr: the filter string, e.g. ``"hflip"`` or ``"curves=preset=vintage"``.
        temporal: True when frame t depends on the frames before it (the noise pattern of
            ``noise=...:allf=t`` advances per frame), so frames must be sampled after the filter.
    """

    expr: str
    temporal: bool = False


@dataclass(frozen=True)
class FrameStep:
    """A per-frame operation in Python on uint8 RGB frames (H x W x 3), such as a Pillow JPEG re-save.

    Attributes:
        fn: ``fn(frame, rng) -> frame``; must not modify `frame`.
        seed: the op's derived seed; frame ``i`` gets the generator ``default_rng([seed, i])``, so a frame's
            output never depends on which other frames are processed (sampled frames equal full copies).
        name: for messages.
    """

    fn: Callable[[np.ndarray, np.random.Generator], np.ndarray] = field(repr=False)
    seed: int = 0
    name: str = ""

    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        """The processed copy of frame number `index` (uint8 RGB)."""
        out = self.fn(frame, np.random.default_rng([self.seed, index]))
        return np.ascontiguousarray(out, dtype=np.uint8)


OPENCV_BITRATE = "{opencv_bitrate}"   # in EncodeStep args: the bit rate OpenCV's VideoWriter gives these frames


@dataclass(frozen=True)
class EncodeStep:
    """A re-encode of the whole stream; `args` are ffmpeg output options (codec, rate control, pix_fmt).

    An argument may be `OPENCV_BITRATE`, resolved for the frames at hand (`resolved_args`) where the encode
    follows Python steps (the only place that needs it: DeeperForensics' XVID intermediate)."""

    args: tuple[str, ...]
    suffix: str = ".mp4"

    def resolved_args(self, width: int, height: int, fps: float) -> tuple[str, ...]:
        """`args` with `OPENCV_BITRATE` replaced by ``1.5 * fps * width * height`` bit/s: OpenCV's
        ``CvVideoWriter_FFMPEG::open`` computes ``fps * width * height`` (bitrate_scale 1, capped at INT_MAX / 2)
        and adds half of it again before opening the encoder (opencv modules/videoio/src/cap_ffmpeg_impl.hpp)."""
        rate = int(min(fps * width * height, 2**31 / 2) * 1.5)
        return tuple(str(rate) if a == OPENCV_BITRATE else a for a in self.args)


Step = FilterStep | FrameStep | EncodeStep


@dataclass(frozen=True)
class Operation:
    """A registered operation.

    Attributes:
        name: registry key, the same string in code, YAML, CLI and CSV.
        category: the column group in reports (compression, brightness, contrast, noise, flip, ...).
        version: bumped whenever a change alters outputs.
        unit: name of the physical parameter the level sets (``crf``, ``scale_factor``); empty for
            operations with a single, fixed setting (their only level is 1).
        levels: the default levels, in `unit`.
        level_range: inclusive bounds a user-given level must lie in.
        stochastic: whether the output depends on a seed.
        geometry_of: maps a level to how the frame size and face boxes change.
        source: where the parameters come from (paper, code, or "our choice").
        build: maps (level, seed) to the steps.
        summary: one line for `dfbench list ops`.
        media: the media it applies to (``video``, ``image``).
        settings: values beyond the level that set its numbers and live outside its code (a platform profile's
            content); part of its `fingerprint`.
        attack: for an adversarial operation, maps a level to its `Attack`: the op leaves the video as it is, and
            the crops of its cell are attacked on the detector under test when they are scored
            (`dfbench.perturbations.adversarial`); None for every operation on media.
    """

    name: str
    category: str
    version: int
    unit: str
    levels: tuple[Level, ...]
    level_range: tuple[float, float]
    stochastic: bool
    geometry_of: Callable[[Level], Geometry] = field(repr=False)
    source: str
    build: Callable[[Level, int], Sequence[Step]] = field(repr=False)
    summary: str = ""
    integer_levels: bool = True
    short: str = ""
    media: frozenset[str] = frozenset({"video", "image"})
    settings: Mapping[str, Any] | None = field(default=None, compare=False)
    attack: Callable[[Level], Any] | None = field(default=None, repr=False, compare=False)

    def label(self, level: Level) -> str:
        """A compact column label, e.g. ``crf23`` or ``1/4``."""
        return (self.short or self.name).format(level=format_level(level))

    def check_level(self, level: Level) -> Level:
        """Return `level` normalised to the op's type, or raise a ConfigError naming the allowed range."""
        lo, hi = self.level_range
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not lo <= level <= hi:
            raise ConfigError(
                f"Level {level!r} is out of range for operation {self.name!r}: "
                f"allowed {self.unit or 'level'} in [{lo:g}, {hi:g}]."
            )
        if self.integer_levels:
            if float(level) != int(level):
                raise ConfigError(f"Operation {self.name!r} takes integer levels, got {level!r}.")
            return int(level)
        return float(level)

    def geometry(self, level: Level) -> Geometry:
        """How this op at `level` changes frame size and face boxes."""
        return self.geometry_of(self.check_level(level))

    def steps(self, level: Level, seed: int) -> tuple[Step, ...]:
        """The processing steps for `level`; `seed` only matters when the op is stochastic."""
        return tuple(self.build(self.check_level(level), seed))

    def fingerprint(self, level: Level) -> str:
        """A hash of every number the op uses at `level`: its version, its steps as built (filter expressions,
        encoder options, and each Python step's function with the values it closes over) and its `settings`.
        Suites put it into their hash, so a changed parameter gives a new run id and face-cache key. The steps
        are built with seed 0: a seed is chosen per sample, it is not a parameter."""
        steps = [describe(step) for step in self.steps(level, 0)]
        content = {"op": self.name, "version": self.version, "level": format_level(self.check_level(level)),
                   "steps": steps, "settings": describe(self.settings)}
        if self.attack is not None:
            content["attack"] = describe(self.attack(self.check_level(level)))
        return stable_hash(content)


OPERATIONS: Registry[Operation] = Registry("operation", "dfbench list ops")


MAX_DESCRIBE_DEPTH = 12   # ours: deeper nesting in a step's closure is cut (and marked), never an endless walk


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON-able, process-independent description of a step or of a value a step uses.

    Callables are described by their qualified name and the values they close over (closure cells, defaults,
    a partial's arguments), recursively; arrays by their shape, dtype and a hash of their bytes; other objects by
    their type and, for dataclasses, their fields. No memory address ever enters it.

    Example:
        >>> describe(FilterStep("hflip"))
        {'type': 'FilterStep', 'fields': {'expr': 'hflip', 'temporal': False}}
    """
    if depth > MAX_DESCRIBE_DEPTH:
        return "<deeper>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, np.generic):
        return describe(value.item(), depth + 1)
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16],
                "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [describe(v, depth + 1) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Mapping):
        return {str(k): describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, functools.partial):
        return {"partial": describe(value.func, depth + 1), "args": describe(value.args, depth + 1),
                "keywords": describe(value.keywords, depth + 1)}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, (types.FunctionType, types.MethodType)):
        function = value.__func__ if isinstance(value, types.MethodType) else value
        code = function.__code__
        cells = dict(zip(code.co_freevars, [_cell(c) for c in function.__closure__ or ()], strict=True))
        return {"function": f"{function.__module__}.{function.__qualname__}",
                "closure": describe(cells, depth + 1), "defaults": describe(function.__defaults__, depth + 1),
                "kwdefaults": describe(function.__kwdefaults__, depth + 1)}
    if isinstance(value, types.BuiltinFunctionType):
        return {"builtin": f"{getattr(value, '__module__', None)}.{value.__qualname__}"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):      # callable or not
        return {"type": type(value).__qualname__, "fields": describe(_fields(value), depth + 1)}
    if callable(value) and not isinstance(value, type):
        kind = type(value)
        return {"callable": f"{kind.__module__}.{kind.__qualname__}", "state": describe(vars(value), depth + 1)
                if hasattr(value, "__dict__") else None}
    if isinstance(value, type):
        return {"class": f"{value.__module__}.{value.__qualname__}"}
    return {"object": f"{type(value).__module__}.{type(value).__qualname__}"}


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:          # a cell not filled yet (a function defined later in the same scope)
        return "<empty>"


def operation(
    name: str,
    *,
    category: str,
    version: int,
    source: str,
    unit: str = "",
    levels: tuple[Level, ...] = (1,),
    level_range: tuple[float, float] = (1, 1),
    stochastic: bool = False,
    geometry: Geometry | Callable[[Level], Geometry] = IDENTITY,
    integer_levels: bool = True,
    short: str = "",
    media: tuple[str, ...] = ("video", "image"),
    settings: Mapping[str, Any] | None = None,
    replace: bool = False,
    attack: Callable[[Level], Any] | None = None,
) -> Callable[[Callable[[Level, int], Sequence[Step]]], Operation]:
    """Decorator that registers a step-building function as an `Operation` (`replace`: over an existing one of
    the same name, as a user's platform profile does)."""

    def decorate(build: Callable[[Level, int], Sequence[Step]]) -> Operation:
        summary = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        geometry_of = geometry if callable(geometry) else (lambda _level: geometry)
        op = Operation(name, category, version, unit, levels, level_range, stochastic, geometry_of,
                       source, build, summary, integer_levels, short, frozenset(media), settings, attack)
        return OPERATIONS.replace(name, op) if replace else OPERATIONS.add(name, op)

    return decorate


def format_level(level: Level) -> str:
    """The canonical text of a level, as used in cell ids and CSV files (23, 0.5, 1)."""
    if isinstance(level, float) and level.is_integer():
        return str(int(level))
    return f"{level:g}" if isinstance(level, float) else str(level)


def derive_seed(suite_seed: int, sample_id: str, op: str, level: Level) -> int:
    """A seed in [0, 2**31) that depends only on (suite seed, sample id, op, level).

    Example:
        >>> derive_seed(0, "real/clip_000", "noise_t", 20) == derive_seed(0, "real/clip_000", "noise_t", 20)
        True
    """
    text = f"{suite_seed}|{sample_id}|{op}|{format_level(level)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
