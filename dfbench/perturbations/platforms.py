"""Social-platform pipelines as profile files: one YAML per platform, registered as an operation.

Image profiles (``kind: image``) become ``sn_<name>``: shrink so the long side is at most ``max_long_side``
(Pillow, ``resample``), then re-save as JPEG at ``jpeg_quality`` with ``subsampling`` and ``progressive``;
only pixels survive, so metadata is stripped. Video profiles (``kind: video``) become ``vsn_<name>``: shrink
so the shorter side is at most ``max_short_side`` (bicubic, even size), then libx264 with ``profile`` and
``crf`` in yuv420p, the frame rate kept.

Every profile carries its sources and date, and ``provisional: true`` where its values are reported rather
than measured. A user adds a platform by adding a file to a folder named in ``$DFBENCH_PLATFORMS``
(colon-separated) or to ``~/.config/dfbench/platforms``.
"""

from __future__ import annotations

import datetime
import io
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dfbench.errors import ConfigError
from dfbench.perturbations.base import EncodeStep, FilterStep, FrameStep, Level, Step, operation
from dfbench.yamlio import check_keys, load_yaml, typed_field

COMMON_KEYS = {"name", "kind", "date", "provisional", "sources"}
IMAGE_KEYS = COMMON_KEYS | {"max_long_side", "resample", "jpeg_quality", "subsampling", "progressive"}
VIDEO_KEYS = COMMON_KEYS | {"max_short_side", "profile", "crf"}
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
RESAMPLE = ("lanczos", "bicubic", "bilinear", "area")
_COMMON_TYPES = {"name": (str, None, None), "date": (str, None, None), "sources": (list, None, None)}
# Ranges: JPEG qualities 1-100 (Pillow), libx264 CRF 0-51 for 8-bit; sizes up to 65535 px (JPEG's own limit).
FIELD_TYPES: dict[str, dict[str, tuple[type, int | None, int | None]]] = {
    "image": {**_COMMON_TYPES, "max_long_side": (int, 1, 65535), "jpeg_quality": (int, 1, 100),
              "progressive": (bool, None, None), "resample": (str, None, None), "subsampling": (str, None, None)},
    "video": {**_COMMON_TYPES, "max_short_side": (int, 2, 65535), "crf": (int, 0, 51), "profile": (str, None, None)},
}
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {"image": {"subsampling": tuple(SUBSAMPLING), "resample": RESAMPLE},
           "video": {"profile": ("baseline", "main", "high")}}


@dataclass(frozen=True)
class Profile:
    """One platform profile, validated."""

    name: str
    kind: str
    date: str
    provisional: bool
    sources: tuple[str, ...]
    settings: dict[str, Any]
    path: str

    @property
    def op_name(self) -> str:
        return ("sn_" if self.kind == "image" else "vsn_") + self.name

    @property
    def source(self) -> str:
        flag = "PROVISIONAL (reported, not measured)" if self.provisional else "measured or official"
        return f"{flag}; profile {Path(self.path).name} dated {self.date}: " + "; ".join(self.sources)


def profile_folders() -> list[Path]:
    """The shipped profiles, then the user's folders (later files override earlier ones of the same name)."""
    folders = [Path(str(resources.files("dfbench") / "platforms"))]
    extra = os.environ.get("DFBENCH_PLATFORMS")
    folders += [Path(p) for p in extra.split(os.pathsep) if p] if extra else []
    folders.append(Path.home() / ".config" / "dfbench" / "platforms")
    return [f for f in folders if f.is_dir()]


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file (unknown and duplicate keys are errors that name them)."""
    data = load_yaml(path.read_text(), str(path))
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in ("image", "video"):
        raise ConfigError(f"Platform profile {str(path)!r}: 'kind' must be image or video, got {kind!r}.")
    check_keys(data, IMAGE_KEYS if kind == "image" else VIDEO_KEYS, f"platform profile {str(path)!r}")
    missing = sorted((IMAGE_KEYS if kind == "image" else VIDEO_KEYS) - {"provisional"} - set(data))
    if missing:
        raise ConfigError(f"Platform profile {str(path)!r} lacks {missing[0]!r}.")
    where = f"platform profile {str(path)!r}"
    if isinstance(data.get("date"), datetime.date):   # an unquoted 2026-11-22 is a YAML date
        data["date"] = data["date"].isoformat()
    for key, (kind_of, low, high) in FIELD_TYPES[kind].items():
        typed_field(data, key, kind_of, where, low=low, high=high)
    for key, allowed in CHOICES[kind].items():
        if data[key] not in allowed:
            raise ConfigError(f"{key!r} of {where} must be one of {', '.join(allowed)}, got {data[key]!r}.")
    if not re.fullmatch(r"[a-z0-9_]+", data["name"]) or any(not isinstance(s, str) for s in data["sources"]):
        raise ConfigError(f"{where}: 'name' must be lower-case [a-z0-9_]+ (it names the operation) and 'sources' "
                          f"a list of text, got name {data['name']!r}.")
    settings = {k: v for k, v in data.items() if k not in COMMON_KEYS}
    return Profile(data["name"], kind, data["date"], typed_field(data, "provisional", bool, where, True),
                   tuple(data["sources"]), settings, str(path))


def _image_pipeline(settings: dict[str, Any]):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        image = Image.fromarray(frame)
        limit = int(settings["max_long_side"])
        if max(image.size) > limit:
            scale = limit / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            resample = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
                        "bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX}[settings["resample"]]
            image = image.resize(size, resample)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(settings["jpeg_quality"]),
                   subsampling=SUBSAMPLING[settings["subsampling"]], progressive=bool(settings["progressive"]))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"))

    return fn


def _register(profile: Profile) -> None:
    settings = profile.settings
    if profile.kind == "image":
        def build(level: Level, seed: int) -> list[Step]:
            return [FrameStep(_image_pipeline(settings), seed, profile.op_name)]

        build.__doc__ = (f"{profile.name}: long side <= {settings['max_long_side']}, JPEG q{settings['jpeg_quality']} "
                         f"{settings['subsampling']}{', progressive' if settings['progressive'] else ''}.")
        media: tuple[str, ...] = ("image", "video")
    else:
        cap = int(settings["max_short_side"])

        def build(level: Level, seed: int) -> list[Step]:
            factor = f"min(1\\,{cap}/min(iw\\,ih))"
            return [FilterStep(f"scale='trunc(iw*{factor}/2)*2':'trunc(ih*{factor}/2)*2':flags=bicubic"),
                    EncodeStep(("-c:v", "libx264", "-profile:v", str(settings["profile"]), "-crf",
                                str(settings["crf"]), "-pix_fmt", "yuv420p", "-x264-params", "threads=4"))]

        build.__doc__ = (f"{profile.name}: shorter side <= {cap}, libx264 {settings['profile']} CRF {settings['crf']}, "
                         "yuv420p.")
        media = ("video",)
    content = {"name": profile.name, "kind": profile.kind, "date": profile.date, "provisional": profile.provisional,
               "sources": list(profile.sources), **settings}
    # a user's file replaces a shipped profile of the same name; its content is part of the op's fingerprint
    operation(profile.op_name, category="social", version=1, source=profile.source, short=profile.name,
              media=media, settings=content, replace=True)(build)


def register_profiles() -> list[Profile]:
    """Register every profile found in `profile_folders`; returns them."""
    profiles = {}
    for folder in profile_folders():
        for path in sorted(folder.glob("*.yaml")):
            profile = load_profile(path)
            profiles[profile.name] = profile
    for profile in profiles.values():
        _register(profile)
    return list(profiles.values())


MAX_RESHARE_TRIES = 1000   # ours: redraws allowed to avoid a chain drawn before


def shipped_platform_ops(kind: str) -> list[str]:
    """The operation names of the profiles shipped with dfbench for `kind` (``image`` or ``video``), sorted."""
    folder = Path(str(resources.files("dfbench") / "platforms"))
    profiles = [load_profile(path) for path in sorted(folder.glob("*.yaml"))]
    return sorted(p.op_name for p in profiles if p.kind == kind)


def reshare_chains(kind: str, hops: int, draws: int, seed: int) -> list[tuple[str, ...]]:
    """`draws` different chains of `hops` platform operations for `kind`, drawn from `seed`: each hop uniformly
    among the shipped profiles, never the platform of the hop before (ours: a re-share on the same platform is
    usually a forward, which keeps the file). Chain ``i`` comes from the generator ``(seed, hops, i, try)``, so
    adding draws never changes the earlier ones.

    Example:
        >>> reshare_chains("video", 2, 1, 0) == reshare_chains("video", 2, 1, 0)
        True
    """
    pool = shipped_platform_ops(kind)
    if len(pool) < 2:
        raise ConfigError(f"A re-share chain needs at least two shipped {kind} platform profiles; found {len(pool)}.")
    limit = len(pool) * (len(pool) - 1) ** (hops - 1)
    if draws > limit:
        raise ConfigError(f"Only {limit} different {hops}-hop chains exist over the {len(pool)} {kind} platforms; "
                          f"{draws} were asked for.")
    chains: list[tuple[str, ...]] = []
    for i in range(draws):
        for attempt in range(MAX_RESHARE_TRIES):
            rng = np.random.default_rng([seed, hops, i, attempt])
            chain = [pool[int(rng.integers(len(pool)))]]
            while len(chain) < hops:
                others = [p for p in pool if p != chain[-1]]
                chain.append(others[int(rng.integers(len(others)))])
            if tuple(chain) not in chains:
                chains.append(tuple(chain))
                break
        else:
            raise ConfigError(f"Could not draw {draws} different {hops}-hop chains from seed {seed}.")
    return chains
