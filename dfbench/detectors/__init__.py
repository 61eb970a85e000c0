"""Deepfake detector adapters: one module per adapter, registered under its file name."""

from dfbench.detectors.base import DETECTORS, DetectorAdapter, DetectorCard, register_detector


def get_detector(key: str) -> DetectorAdapter:
    """A new, unloaded adapter for registry key `key` (cheap: no weights are read)."""
    return DETECTORS.get(key)()


__all__ = ["DETECTORS", "DetectorAdapter", "DetectorCard", "get_detector", "register_detector"]
