"""dfbench: how robust are deepfake detectors to the processing real media goes through?

The public API (imported lazily, so ``import dfbench`` stays light and does not load torch):

* ``dfbench.run(detector=..., suite=..., dataset=..., weights=..., out=...)`` runs a benchmark;
* ``dfbench.load_results(run_dirs)`` returns every metric of finished runs from their stores;
* ``dfbench.score(predictions, dataset=..., suite=...)`` returns them for a predictions file, after checking it
  covers the dataset and suite;
* ``dfbench.list_detectors()``, ``dfbench.list_operations()``, ``dfbench.list_suites()``.
"""

from __future__ import annotations

from typing import Any

from dfbench.version import __version__

__all__ = ["__version__", "list_detectors", "list_operations", "list_suites", "load_results", "run", "score"]


def list_detectors() -> list[str]:
    """Registered detector keys (plus ``timm:<name>`` for any timm model)."""
    from dfbench.detectors import DETECTORS

    return DETECTORS.names()


def list_operations() -> list[str]:
    """Registered operation keys."""
    from dfbench.perturbations import OPERATIONS

    return OPERATIONS.names()


def list_suites() -> list[str]:
    """Names of the shipped suites."""
    from dfbench.config import list_suites as shipped

    return shipped()


def __getattr__(name: str) -> Any:
    if name == "run":
        from dfbench.api import run

        return run
    if name == "load_results":
        from dfbench.results import load_results

        return load_results
    if name == "score":
        from dfbench.predictions import score

        return score
    raise AttributeError(f"module 'dfbench' has no attribute {name!r}")
