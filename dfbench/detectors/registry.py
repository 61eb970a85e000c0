"""The detector registry: ``@register_detector`` on an adapter class registers it under its card's key.

Adapter modules are found, not listed: on the first lookup of a key that is not registered yet, every module of
this package (except the shared ones, whose names start with ``_`` or are in `SHARED`) is imported, then the
``dfbench.detectors`` entry points of installed packages are searched by name. Adapter modules import torch only
inside functions, so importing them all is cheap. ``timm:<model>`` keys are made on demand by `timm_models`.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata
from typing import TYPE_CHECKING

from dfbench.registry import Registry

if TYPE_CHECKING:
    from dfbench.detectors.base import DetectorAdapter

ENTRY_POINT_GROUP = "dfbench.detectors"
SHARED = frozenset({"base", "checkpoints", "registry"})


def adapter_modules() -> list[str]:
    """The module names of this package that hold adapters."""
    folder = importlib.import_module(__package__ or "dfbench.detectors").__path__
    return sorted(m.name for m in pkgutil.iter_modules(folder) if not m.name.startswith("_") and m.name not in SHARED)


def _import_adapters() -> None:
    """Import every adapter module of this package (each registers itself)."""
    for name in adapter_modules():
        importlib.import_module(f"{__package__}.{name}")


def _load(key: str) -> None:
    _import_adapters()
    if key in DETECTORS.names_registered():
        return
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == key:
            DETECTORS.replace(key, ep.load())
            return


def _discover() -> list[str]:
    _import_adapters()
    return [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


DETECTORS: Registry[type[DetectorAdapter]] = Registry("detector", "dfbench list detectors", loader=_load,
                                                      discover=_discover)


def register_detector(cls: type[DetectorAdapter]) -> type[DetectorAdapter]:
    """Class decorator: register an adapter under ``cls.card.key``."""
    return DETECTORS.add(cls.card.key, cls)
