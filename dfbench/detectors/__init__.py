"""Deepfake detector adapters: one module per adapter, each registered under its card's key."""

from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import DETECTORS, register_detector


def get_detector(key: str) -> DetectorAdapter:
    """A new, unloaded adapter for registry key `key` (cheap: no weights are read)."""
    return DETECTORS.get(key)()


__all__ = ["DETECTORS", "DetectorAdapter", "DetectorCard", "get_detector", "register_detector"]
