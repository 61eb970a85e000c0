"""Frozen configuration: cells, suites and runs, with strict YAML loading.

Precedence is dataclass defaults < suite YAML < CLI flags. Unknown and duplicate YAML keys are errors
that name the key and the allowed ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from dfbench.errors import ConfigError, UnknownNameError
from dfbench.perturbations import OPERATIONS, format_level
from dfbench.perturbations.base import Level, Operation

FaceMode = Literal["redetect", "clean"]
CopyEncoding = Literal["lossless"]


@dataclass(frozen=True)
class Cell:
    """One column of the result matrix: an operation at one level.

    Attributes:
        op: operation key.
        level: in the operation's physical unit (0 for `none`, 1 for ops with one fixed setting).
    """

    op: str
    level: Level

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.operation.check_level(self.level))

    @property
    def operation(self) -> Operation:
        """The registered operation."""
        return OPERATIONS.get(self.op)

    @property
    def id(self) -> str:
        """``<op>-<level>``, the cell's name in folders, the store and CSV files."""
        return f"{self.op}-{format_level(self.level)}"

    @property
    def category(self) -> str:
        """The operation's report category."""
        return self.operation.category


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"Duplicate key {key!r} in YAML (line {key_node.start_mark.line + 1}).")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_size(text: str) -> int:
    """Bytes from a size like ``500M``, ``2G``, ``1.5GB`` or ``1048576``.

    Example:
        >>> parse_size("1.5G")
        1500000000
    """
    units = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    cleaned = text.strip().upper().removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:] in "KMGT" else (cleaned, "")
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"Cannot read size {text!r}; write it like 500M, 2G or 1048576.") from None
    if value <= 0:
        raise ConfigError(f"Size {text!r} must be positive.")
    return int(value * units[unit])


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML with duplicate keys rejected; syntax errors become one-line ConfigErrors."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Invalid YAML in {where}{line}: {getattr(exc, 'problem', exc)}") from None


def check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise a ConfigError for the first key of `data` not in `allowed`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"Unknown key {key!r} in {where}. Allowed: {', '.join(sorted(allowed))}.")


@dataclass(frozen=True)
class FrameProtocol:
    """Which frames of each video are scored.

    Attributes:
        per_video: frames sampled per video, uniformly over its length (``np.linspace``, rounded).
    """

    per_video: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.per_video, int) or self.per_video < 1:
            raise ConfigError(f"frames.per_video must be a positive integer, got {self.per_video!r}.")


@dataclass(frozen=True)
class SuiteConfig:
    """A versioned list of cells plus the frame, face and aggregation protocol.

    Attributes:
        name: the suite's name (its YAML file's stem).
        version: bumped whenever anything in the suite changes numbers.
        cells: ordered cells; the first must be ``none-0``, the clean reference.
        media: media kinds the suite accepts (``video``).
        frames: frame sampling.
        faces: ``redetect`` finds faces in every perturbed frame.
        aggregation: frame-to-video aggregation of scores (``mean``).
        copy_encoding: how written copies store filtered frames; ``lossless`` keeps them bit-exact.
        seed: the suite seed from which every stochastic op's seed is derived.
    """

    name: str
    version: int
    cells: tuple[Cell, ...]
    description: str = ""
    source: str = ""
    media: tuple[str, ...] = ("video",)
    frames: FrameProtocol = field(default_factory=FrameProtocol)
    faces: FaceMode = "redetect"
    aggregation: str = "mean"
    copy_encoding: CopyEncoding = "lossless"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.cells:
            raise ConfigError(f"Suite {self.name!r} has no cells.")
        ids = [c.id for c in self.cells]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"Suite {self.name!r} lists cell {dupes[0]!r} twice.")
        if self.cells[0].op != "none":
            raise ConfigError(f"Suite {self.name!r} must start with the clean cell 'none'.")
        if self.faces not in ("redetect",):
            raise ConfigError(f"faces {self.faces!r} is not supported yet; allowed: 'redetect'.")
        if self.aggregation != "mean":
            raise ConfigError(f"aggregation {self.aggregation!r} is not supported; allowed: 'mean'.")
        if self.copy_encoding != "lossless":
            raise ConfigError(f"copy_encoding {self.copy_encoding!r} is not supported; allowed: 'lossless'.")

    def check_media(self, media: str, example: str, count: int) -> None:
        """Raise a ConfigError unless the suite and every op in it accept `media` (frame folders count as video)."""
        media = "video" if media == "frames" else media
        if media not in self.media:
            raise ConfigError(f"Suite {self.name!r} accepts {', '.join(self.media)}; the dataset holds {count} "
                              f"{media} sample(s), e.g. {example!r}. Choose a suite for {media}s "
                              "('dfbench list suites').")
        for cell in self.cells:
            if media not in cell.operation.media:
                raise ConfigError(f"Operation {cell.op!r} of suite {self.name!r} does not apply to {media}s "
                                  f"(e.g. {example!r}).")

    def with_frames(self, per_video: int | None) -> SuiteConfig:
        """This suite with a different number of frames per video (None keeps it)."""
        if per_video is None:
            return self
        return dataclasses.replace(self, frames=FrameProtocol(per_video))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description; its hash identifies the protocol."""
        return {
            "name": self.name, "version": self.version, "media": list(self.media),
            "frames": {"per_video": self.frames.per_video}, "faces": self.faces,
            "aggregation": self.aggregation, "copy_encoding": self.copy_encoding, "seed": self.seed,
            "cells": [{"op": c.op, "level": c.level, "op_version": c.operation.version} for c in self.cells],
        }

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of `to_dict()`, first 16 hex digits."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_SUITE_KEYS = {"name", "version", "description", "source", "media", "frames", "faces", "aggregation",
               "copy_encoding", "seed", "cells"}


def _parse_cells(raw: Any, where: str) -> list[Cell]:
    if not isinstance(raw, list):
        raise ConfigError(f"'cells' in {where} must be a list.")
    cells: list[Cell] = []
    for item in raw:
        if isinstance(item, str):
            op = OPERATIONS.get(item)
            cells.extend(Cell(item, level) for level in op.levels)
            continue
        check_keys(item, {"op", "level", "levels"}, f"a cell of {where}")
        if "op" not in item:
            raise ConfigError(f"A cell of {where} has no 'op'.")
        op = OPERATIONS.get(item["op"])
        if "level" in item and "levels" in item:
            raise ConfigError(f"Cell {item['op']!r} in {where} sets both 'level' and 'levels'.")
        levels = [item["level"]] if "level" in item else item.get("levels", list(op.levels))
        cells.extend(Cell(op.name, level) for level in levels)
    return cells


def parse_suite(data: Any, where: str) -> SuiteConfig:
    """Build a SuiteConfig from parsed YAML, rejecting unknown keys."""
    check_keys(data, _SUITE_KEYS, where)
    for key in ("name", "version", "cells"):
        if key not in data:
            raise ConfigError(f"Suite {where} has no {key!r}.")
    frames = data.get("frames", {})
    check_keys(frames, {"per_video"}, f"'frames' of {where}")
    try:
        return SuiteConfig(
            name=str(data["name"]), version=int(data["version"]), cells=tuple(_parse_cells(data["cells"], where)),
            description=str(data.get("description", "")), source=str(data.get("source", "")),
            media=tuple(data.get("media", ["video"])), frames=FrameProtocol(**frames),
            faces=data.get("faces", "redetect"), aggregation=data.get("aggregation", "mean"),
            copy_encoding=data.get("copy_encoding", "lossless"), seed=int(data.get("seed", 0)),
        )
    except UnknownNameError as exc:
        raise ConfigError(f"In suite {where}: {exc}") from None


def list_suites() -> list[str]:
    """Names of the suites shipped in the package."""
    folder = resources.files("dfbench") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> SuiteConfig:
    """Load a shipped suite by name (``video-ops``) or a user's suite from a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"Suite file {str(path)!r} does not exist.")
        return parse_suite(load_yaml(path.read_text(), str(path)), str(path))
    shipped = resources.files("dfbench") / "suites" / f"{name_or_path}.yaml"
    if not shipped.is_file():
        import difflib

        names = list_suites()
        near = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(f"Unknown suite {name_or_path!r}.{hint} Shipped suites: {', '.join(names)}; "
                               "or pass a path to a YAML file.")
    return parse_suite(load_yaml(shipped.read_text(), f"suite {name_or_path!r}"), f"suite {name_or_path!r}")
