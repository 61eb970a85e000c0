"""Frozen configuration: cells, suites and runs, with strict YAML loading.

Precedence is dataclass defaults < suite YAML < CLI flags. Unknown and duplicate YAML keys are errors
that name the key and the allowed ones.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from dfbench.errors import ConfigError, UnknownNameError
from dfbench.faces.finder import FINDERS
from dfbench.hashing import stable_hash
from dfbench.metrics import AGGREGATIONS
from dfbench.perturbations import OPERATIONS, derive_seed, format_level
from dfbench.perturbations.base import Level, Operation, Step
from dfbench.registry import unknown_name
from dfbench.yamlio import check_keys, load_yaml, typed_field

FaceMode = Literal["redetect", "clean"]
MEDIA = ("video", "image")
# Ours: what one run can hold. A sample's crops (cells x frames x faces) stay in memory until they are scored, so
# the product is bounded too: 8192 pairs are about 1.2 GB of 224 px crops. The largest shipped suite, `all`, has
# 96 cells, 3072 pairs at its 32 frames.
MAX_CELLS = 256
MAX_CHAIN_STEPS = 8
MAX_FRAMES = 1024
MAX_CELL_FRAMES = 8192
CopyEncoding = Literal["lossless"]


@dataclass(frozen=True)
class Cell:
    """One column of the result matrix: an operation at one level, or an ordered chain of them.

    Attributes:
        op: operation key (the first of a chain).
        level: in the operation's physical unit (0 for `none`, 1 for ops with one fixed setting).
        then: the (op, level) pairs applied after the first one, in order, for a chain.
    """

    op: str
    level: Level
    then: tuple[tuple[str, Level], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.operation.check_level(self.level))
        object.__setattr__(self, "then", tuple((op, OPERATIONS.get(op).check_level(lv)) for op, lv in self.then))
        early = [op for op, _ in self.parts[:-1] if OPERATIONS.get(op).attack is not None]
        if early:
            raise ConfigError(f"The adversarial operation {early[0]!r} can only end a chain: it attacks the crops "
                              "that are scored, after every operation on the media.")

    @property
    def attack(self) -> Any:
        """The `Attack` of an adversarial cell (its last operation's, `perturbations.adversarial`), else None."""
        op, level = self.parts[-1]
        operation = OPERATIONS.get(op)
        return operation.attack(level) if operation.attack is not None else None

    @property
    def operation(self) -> Operation:
        """The registered operation (the first of a chain)."""
        return OPERATIONS.get(self.op)

    @property
    def parts(self) -> tuple[tuple[str, Level], ...]:
        """Every (op, level) of the cell in the order they apply."""
        return ((self.op, self.level), *self.then)

    @property
    def id(self) -> str:
        """``<op>-<level>``, joined by ``+`` for a chain: the cell's name in folders, the store and CSV files."""
        return "+".join(f"{op}-{format_level(level)}" for op, level in self.parts)

    @property
    def category(self) -> str:
        """The operation's report category; ``chain`` for a chain."""
        return "chain" if self.then else self.operation.category

    @property
    def op_label(self) -> str:
        """The op column of results: the op, or the chain's ops joined by ``+``."""
        return "+".join(op for op, _ in self.parts)

    @property
    def level_label(self) -> str:
        """The level column of results: the level, or the chain's levels joined by ``+``."""
        return "+".join(format_level(level) for _, level in self.parts)

    @property
    def media(self) -> frozenset[str]:
        """The media every op of the cell applies to."""
        return frozenset.intersection(*(OPERATIONS.get(op).media for op, _ in self.parts))

    @property
    def versions(self) -> dict[str, int]:
        return {op: OPERATIONS.get(op).version for op, _ in self.parts}

    @property
    def fingerprint(self) -> str:
        """A hash of every op's parameters at its level, in order (`Operation.fingerprint`)."""
        return stable_hash([OPERATIONS.get(op).fingerprint(level) for op, level in self.parts])

    def seed(self, suite_seed: int, sample_id: str) -> int:
        """The derived seed of the first op (recorded with the task)."""
        return derive_seed(suite_seed, sample_id, self.op, self.level)

    def steps(self, suite_seed: int, sample_id: str) -> tuple[Step, ...]:
        """Every processing step of the cell for one sample, each op seeded from (suite seed, sample, op, level)."""
        steps: list[Step] = []
        for op, level in self.parts:
            steps.extend(OPERATIONS.get(op).steps(level, derive_seed(suite_seed, sample_id, op, level)))
        return tuple(steps)


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


@dataclass(frozen=True)
class FrameProtocol:
    """Which frames of each video are scored.

    Attributes:
        per_video: frames sampled per video, uniformly over its length (``np.linspace``, rounded).
    """

    per_video: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.per_video, bool) or not isinstance(self.per_video, int) or not (
                1 <= self.per_video <= MAX_FRAMES):
            raise ConfigError(f"frames.per_video must be a whole number in [1, {MAX_FRAMES}], got {self.per_video!r}.")


@dataclass(frozen=True)
class SuiteConfig:
    """A versioned list of cells plus the frame, face and aggregation protocol.

    Attributes:
        name: the suite's name (its YAML file's stem).
        version: bumped whenever anything in the suite changes numbers.
        cells: ordered cells; the first must be ``none-0``, the clean reference.
        media: media kinds the suite accepts (``video``).
        frames: frame sampling.
        faces: ``redetect`` finds faces in every perturbed frame (faithful: finder failures count against the
            detector); ``clean`` finds them once in the clean frames and maps the boxes through each cell's
            geometry (`faces.mapping`).
        aggregation: frame-to-video rule of scores: ``card`` (each detector's authors' rule, its card's
            `aggregation`) or a fixed rule for every detector (``metrics.AGGREGATIONS``).
        finder: the face finder: ``card`` (each detector's authors' finder, where it runs offline) or a name of
            `faces.finder.FINDERS`; ``--finder`` overrides it.
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
    aggregation: str = "card"
    finder: str = "card"
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
        if self.faces not in ("redetect", "clean"):
            raise ConfigError(f"faces {self.faces!r} is not supported; allowed: 'redetect', 'clean'.")
        if self.aggregation not in ("card", *AGGREGATIONS):
            raise ConfigError(f"aggregation {self.aggregation!r} is not supported; allowed: card, "
                              f"{', '.join(AGGREGATIONS)}.")
        if self.finder != "card":
            FINDERS.get(self.finder)          # an unknown name: one line with near names
        pairs = len(self.cells) * self.frames.per_video
        if len(self.cells) > MAX_CELLS or pairs > MAX_CELL_FRAMES:
            raise ConfigError(f"Suite {self.name!r}: {len(self.cells)} cells x {self.frames.per_video} frames is "
                              f"{pairs} (cell, frame) pairs; at most {MAX_CELLS} cells and {MAX_CELL_FRAMES} pairs "
                              "fit one run (fewer --frames, or split the suite).")
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
            if media not in cell.media:
                raise ConfigError(f"Cell {cell.id!r} of suite {self.name!r} does not apply to {media}s "
                                  f"(e.g. {example!r}).")

    def with_frames(self, per_video: int | None) -> SuiteConfig:
        """This suite with a different number of frames per video (None keeps it)."""
        if per_video is None:
            return self
        return dataclasses.replace(self, frames=FrameProtocol(per_video))

    def with_faces(self, mode: str | None) -> SuiteConfig:
        """This suite with another face mode (None keeps it)."""
        if mode is None:
            return self
        return dataclasses.replace(self, faces=mode)  # type: ignore[arg-type]  # checked in __post_init__

    def clean_only(self) -> SuiteConfig:
        """This suite's clean cells alone (the same frame, face and video protocol), for calibration."""
        cells = tuple(c for c in self.cells if c.category == "clean")
        if not cells:
            raise ConfigError(f"Suite {self.name!r} has no clean cell ('none') to calibrate on.")
        return dataclasses.replace(self, cells=cells)

    def cell_rows(self) -> list[dict[str, Any]]:
        """One row per cell, in suite order, as the store's cells table holds them: cell, op, level, category,
        op_version."""
        return [{"cell": c.id, "op": c.op_label, "level": c.level_label, "category": c.category,
                 "op_version": max(c.versions.values())} for c in self.cells]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description; its hash identifies the protocol."""
        return {
            "name": self.name, "version": self.version, "media": list(self.media),
            "frames": {"per_video": self.frames.per_video}, "faces": self.faces,
            "aggregation": self.aggregation, "finder": self.finder, "copy_encoding": self.copy_encoding,
            "seed": self.seed,
            "cells": [{"id": c.id, "versions": c.versions, "params": c.fingerprint} for c in self.cells],
        }

    @functools.cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON of `to_dict()`, first 16 hex digits: the cells, each with its ops'
        versions and parameters, and the frame, face and aggregation protocol."""
        return stable_hash(self.to_dict())


_SUITE_KEYS = {"name", "version", "description", "source", "media", "frames", "faces", "aggregation", "finder",
               "copy_encoding", "seed", "cells"}


def _chain_part(item: Any, where: str) -> tuple[str, Level]:
    if isinstance(item, str):
        op = OPERATIONS.get(item)
        if len(op.levels) != 1:
            raise ConfigError(f"Operation {item!r} in a chain of {where} needs a 'level' (it has several).")
        return item, op.levels[0]
    check_keys(item, {"op", "level"}, f"a chain step of {where}")
    if "op" not in item:
        raise ConfigError(f"A chain step of {where} has no 'op'.")
    op = OPERATIONS.get(item["op"])
    if "level" not in item and len(op.levels) != 1:
        raise ConfigError(f"Operation {item['op']!r} in a chain of {where} needs a 'level' (it has several).")
    return op.name, item.get("level", op.levels[0])


def _reshare_cells(item: dict, where: str, suite_seed: int) -> list[Cell]:
    """``{reshare: HOPS, draws: N, platforms: video|image, seed: S}``: N different chains of HOPS shipped platform
    profiles drawn from S (default: the suite's seed); each cell's name lists its hops."""
    check_keys(item, {"reshare", "draws", "platforms", "seed"}, f"a reshare cell of {where}")
    hops = typed_field(item, "reshare", int, f"a reshare cell of {where}", low=2, high=MAX_CHAIN_STEPS)
    draws = typed_field(item, "draws", int, f"a reshare cell of {where}", 1, 1, MAX_CELLS)
    kind = typed_field(item, "platforms", str, f"a reshare cell of {where}", "video")
    if kind not in ("video", "image"):
        raise ConfigError(f"'platforms' of a reshare cell of {where} must be video or image, got {kind!r}.")
    seed = typed_field(item, "seed", int, f"a reshare cell of {where}", suite_seed, 0, 2**63 - 1)
    from dfbench.perturbations.platforms import reshare_chains

    return [Cell(chain[0], 1, tuple((op, 1) for op in chain[1:])) for chain in reshare_chains(kind, hops, draws, seed)]


def _parse_cells(raw: Any, where: str, suite_seed: int = 0) -> list[Cell]:
    if not isinstance(raw, list):
        raise ConfigError(f"'cells' in {where} must be a list.")
    cells: list[Cell] = []
    for item in raw:
        if isinstance(item, str):
            op = OPERATIONS.get(item)
            cells.extend(Cell(item, level) for level in op.levels)
            continue
        if isinstance(item, dict) and "reshare" in item:
            cells.extend(_reshare_cells(item, where, suite_seed))
            if len(cells) > MAX_CELLS:
                raise ConfigError(f"{where} expands to more than {MAX_CELLS} cells; a suite holds at most "
                                  f"{MAX_CELLS}.")
            continue
        if isinstance(item, dict) and "chain" in item:
            check_keys(item, {"chain"}, f"a chain cell of {where}")
            steps = item["chain"]
            if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_CHAIN_STEPS:
                raise ConfigError(f"A chain of {where} must be a list of 2 to {MAX_CHAIN_STEPS} steps, got "
                                  f"{steps if not isinstance(steps, list) else f'{len(steps)} steps'!r}.")
            parts = [_chain_part(step, where) for step in steps]
            cells.append(Cell(parts[0][0], parts[0][1], tuple(parts[1:])))
            continue
        check_keys(item, {"op", "level", "levels"}, f"a cell of {where}")
        if "op" not in item:
            raise ConfigError(f"A cell of {where} has no 'op'.")
        op = OPERATIONS.get(item["op"])
        if "level" in item and "levels" in item:
            raise ConfigError(f"Cell {item['op']!r} in {where} sets both 'level' and 'levels'.")
        levels = [item["level"]] if "level" in item else item.get("levels", list(op.levels))
        if not isinstance(levels, list):
            raise ConfigError(f"'levels' of cell {op.name!r} in {where} must be a list, got {levels!r}.")
        if len(cells) + len(levels) > MAX_CELLS:
            raise ConfigError(f"{where} expands to more than {MAX_CELLS} cells; a suite holds at most {MAX_CELLS}.")
        cells.extend(Cell(op.name, level) for level in levels)
    return cells


def parse_suite(data: Any, where: str) -> SuiteConfig:
    """Build a SuiteConfig from parsed YAML: unknown keys, wrong types and out-of-range values are one line
    naming the field."""
    check_keys(data, _SUITE_KEYS, where)
    for key in ("name", "version", "cells"):
        if key not in data:
            raise ConfigError(f"Suite {where} has no {key!r}.")
    frames = data.get("frames", {})
    check_keys(frames, {"per_video"}, f"'frames' of {where}")
    media = typed_field(data, "media", list, where, ["video"])
    if not media or any(m not in MEDIA for m in media):
        raise ConfigError(f"'media' of {where} must list {' and/or '.join(MEDIA)}, got {media!r}.")
    cells = typed_field(data, "cells", list, where)
    if len(cells) > MAX_CELLS:
        raise ConfigError(f"'cells' of {where} lists {len(cells)} entries; a suite holds at most {MAX_CELLS} cells.")
    def field_of(key: str, kind: type, default: Any = None, low: int | None = None, high: int | None = None) -> Any:
        return typed_field(data, key, kind, where, default, low, high)

    try:
        return SuiteConfig(
            name=field_of("name", str), version=field_of("version", int, low=0, high=2**31 - 1),
            cells=tuple(_parse_cells(cells, where, field_of("seed", int, 0, 0, 2**63 - 1))),
            description=field_of("description", str, ""), source=field_of("source", str, ""), media=tuple(media),
            frames=FrameProtocol(typed_field(frames, "per_video", int, f"'frames' of {where}", 32, 1, MAX_FRAMES)),
            faces=field_of("faces", str, "redetect"), aggregation=field_of("aggregation", str, "card"),
            finder=field_of("finder", str, "card"),
            copy_encoding=field_of("copy_encoding", str, "lossless"), seed=field_of("seed", int, 0, 0, 2**63 - 1),
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
        error = unknown_name("suite", name_or_path, list_suites(), "dfbench list suites")
        raise UnknownNameError(f"{error.args[0]} Or pass a path to a suite YAML file.")
    return parse_suite(load_yaml(shipped.read_text(), f"suite {name_or_path!r}"), f"suite {name_or_path!r}")


DEMO = "demo"
NO_FACE_RULES = ("fallback", "drop")


def default_weights(weights: str | tuple[str, ...] | None, data: str,
                    has_demo_weights: bool) -> str | tuple[str, ...]:
    """The weights to load, one rule for `run` and `predict`: as given; with none given, the shipped demo weights
    on the demo set (random ones for a detector that ships none), and an error on any other data (the demo
    weights were trained on the synthetic demo set only; `predict`'s inputs are never the demo set).

    Args:
        data: what is scored, for the message: ``demo`` for the demo set, a dataset name, or a description.
    """
    if weights is not None:
        return weights
    if data == DEMO:
        return DEMO if has_demo_weights else "random"
    raise ConfigError(f"--weights is required for {data}: the shipped demo weights were trained on the synthetic "
                      "demo set only. Pass --weights FILE (or --weights demo to use them anyway, --weights random "
                      "to check the pipeline).")


BACKENDS = ("local", "ray")


def check_backend(backend: str, address: str | None) -> None:
    """A ConfigError for an unknown ``--backend`` or an ``--address`` without ``--backend ray``."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if address is not None and backend != "ray":
        raise ConfigError("--address names a Ray cluster: it needs --backend ray.")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; CLI flags map one to one.

    Attributes:
        detector: adapter key.
        suite: shipped suite name or YAML path.
        dataset: ``demo``, a folder with real/ and fake/, or a manifest.
        weights: a file, ``demo`` or ``random``; None follows `default_weights`.
        split: the split to score; None means ``test`` when the dataset has splits, else everything.
        out: output folder (store, run.json, CSV files).
        frames: frames per video, overriding the suite.
        device, precision: inference placement: ``auto`` picks the best device; the precision is fp32 (as every
            detector's authors ran) unless ``bf16``, ``fp16`` or ``auto`` (the fastest the device has) is asked for.
        batch_size: faces per inference batch; None picks per device (`scoring.resolve_batch_size`).
        limit: score at most this many samples (balanced by label).
        trust_checkpoint: allow unpickling a checkpoint that is not a plain state dict.
        finder: ``card`` (the detector's authors' finder), a finder name (``dfbench list finders``; ``none`` for
            inputs that are already face crops), or None to keep the suite's (``card`` unless it says otherwise).
        no_face: ``fallback`` (every video counts in every cell; one with no scored frame gets the card's
            fallback score) or ``drop`` (such a video is left out of that cell's video metrics).
        faces: ``redetect`` or ``clean``, overriding the suite's face mode (None keeps it).
        work_limit: most bytes of intermediate work files (compression encodes) at a time; None: no limit.
        min_free_bytes: the run stops cleanly (resumable) before a sample when less disk than this is free.
        face_cache: read and write the face cache (`dfbench.faces.cache`): the faces found per sample, reused by
            the next detector on the same data and suite.
        keep_crops: also keep this run's crops there, so that a detector with the same crop spec only runs its
            model.
        workers: processes that decode, perturb and find faces while this one runs the model; 0 does it all in
            this process, None picks: 0 on a CPU (the model already uses every core), else up to 8.
        by: a sample column (``method``, ``group`` or a manifest's own): results.csv also holds every metric per
            subgroup of it (`dfbench.results.Results.by`). An output choice, not part of the run's identity.
        calibrate_on: where ``acc_cal``'s threshold is found before it is frozen for every cell: ``clean`` (the
            clean cell of the scored samples), ``val`` (the clean cell of the dataset's validation split, scored
            too) or ``split:NAME``.
        backend: ``local`` (this machine: `workers` processes or this one) or ``ray`` (gathering as Ray tasks and
            the model in Ray actors, `dfbench.cluster`). Not part of the run's identity: both give the same rows.
        address: the Ray cluster to join (``auto``, ``ray://host:10001`` or the head's ``host:port``); None
            starts a local Ray instance. Only with ``backend="ray"``.
        surrogate: the detector the transfer attacks (``fgsm_transfer``, ``pgd_transfer``) are made on; its
            weights are `surrogate_weights` (a file, ``demo`` or ``random``; None: demo where it ships some).
    """

    detector: str
    suite: str = "video-ops"
    dataset: str = DEMO
    weights: str | tuple[str, ...] | None = None
    split: str | None = None
    out: Path = Path("runs/latest")
    frames: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    limit: int | None = None
    trust_checkpoint: bool = False
    finder: str | None = None
    no_face: str = "fallback"
    faces: str | None = None
    work_limit: int | None = None
    min_free_bytes: int = 256 * 1024 * 1024
    face_cache: bool = True
    keep_crops: bool = False
    workers: int | None = None
    by: str | None = None
    calibrate_on: str = "clean"
    backend: str = "local"
    address: str | None = None
    surrogate: str | None = None
    surrogate_weights: str | None = None

    def __post_init__(self) -> None:
        check_backend(self.backend, self.address)
        if self.surrogate_weights is not None and self.surrogate is None:
            raise ConfigError("--surrogate-weights needs --surrogate KEY (the detector the transfer attacks use).")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {self.workers}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {self.frames}.")
        if self.no_face not in NO_FACE_RULES:
            raise ConfigError(f"--no-face must be one of {', '.join(NO_FACE_RULES)}, got {self.no_face!r}.")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"--limit must be at least 2 (one real, one fake), got {self.limit}.")

    def resolved_weights(self, has_demo_weights: bool) -> str | tuple[str, ...]:
        """`default_weights` for this run's dataset."""
        return default_weights(self.weights, self.dataset if self.dataset == DEMO else f"dataset {self.dataset!r}",
                               has_demo_weights)
