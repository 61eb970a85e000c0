"""What `dfbench list` shows: detector cards, operations with provenance, shipped suites."""

from __future__ import annotations

from rich.table import Table

from dfbench.errors import ConfigError

KINDS = ("detectors", "ops", "suites")


def render_listing(what: str) -> Table:
    """A rich table for ``detectors``, ``ops`` or ``suites``."""
    kind = {"detector": "detectors", "op": "ops", "operations": "ops", "suite": "suites"}.get(what, what)
    if kind == "detectors":
        return _detectors()
    if kind == "ops":
        return _ops()
    if kind == "suites":
        return _suites()
    raise ConfigError(f"Cannot list {what!r}; choose one of: {', '.join(KINDS)}.")


def _detectors() -> Table:
    from dfbench.detectors import DETECTORS

    table = Table(title="Detectors", show_lines=True)
    for col in ("key", "title", "input", "normalisation", "crop", "output", "checkpoint formats", "reference"):
        table.add_column(col, overflow="fold")
    for key in DETECTORS.names():
        card = DETECTORS.get(key).card
        crop = card.crop
        crop_text = (f"{'square' if crop.square else 'box'} x{crop.scale:g}, {crop.faces} face(s), "
                     f"{crop.interpolation}")
        norm = f"mean {card.mean}\nstd {card.std}"
        demo = f"\ndemo weights: {card.demo_weights}" if card.demo_weights else ""
        table.add_row(key, card.title, f"{card.input_size} px", norm, crop_text,
                      f"{card.output}; video: {card.aggregation}", "\n".join(card.formats) + demo,
                      f"{card.reference}\n{card.verified}")
    return table


def _ops() -> Table:
    from dfbench.perturbations import OPERATIONS

    table = Table(title="Operations", show_lines=True)
    for col in ("op", "category", "default levels", "unit", "ver", "seeded", "geometry", "what", "source"):
        table.add_column(col, overflow="fold")
    for key in OPERATIONS.names():
        op = OPERATIONS.get(key)
        levels = ", ".join(str(v) for v in op.levels)
        geometry = op.geometry(op.levels[0]).kind
        table.add_row(key, op.category, levels, op.unit or "-", str(op.version), "yes" if op.stochastic else "no",
                      geometry, op.summary, op.source)
    return table


def _suites() -> Table:
    from dfbench.config import list_suites, load_suite

    table = Table(title="Suites (use --suite NAME, or a path to your own YAML)", show_lines=True)
    for col in ("suite", "version", "cells", "frames", "description", "source"):
        table.add_column(col, overflow="fold")
    for name in list_suites():
        suite = load_suite(name)
        table.add_row(name, str(suite.version), ", ".join(c.id for c in suite.cells), str(suite.frames.per_video),
                      suite.description, suite.source)
    return table
