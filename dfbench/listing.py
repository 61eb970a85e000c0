"""What `dfbench list` shows: detector cards, operations with provenance, shipped suites."""

from __future__ import annotations

from rich.table import Table

from dfbench.errors import ConfigError

KINDS = ("detectors", "ops", "suites")


def render_listing(what: str):
    """A rich table for ``detectors``, ``ops`` or ``suites``."""
    kind = {"detector": "detectors", "op": "ops", "operations": "ops", "suite": "suites"}.get(what, what)
    if kind == "detectors":
        return _detectors()
    if kind == "ops":
        return _ops()
    if kind == "suites":
        return _suites()
    raise ConfigError(f"Cannot list {what!r}; choose one of: {', '.join(KINDS)}.")


def _detectors():
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    from dfbench.detectors import DETECTORS

    blocks: list = [Text("Detectors (--detector KEY; also timm:<name> for any timm model)", style="bold")]
    for key in DETECTORS.names():
        card = DETECTORS.get(key).card
        crop = card.crop
        crop_text = ("whole image" if crop.whole_frame else
                     f"{'square' if crop.square else 'box'} x{crop.scale:g} of the face box, "
                     f"{'largest face' if crop.faces == 'largest' else 'all faces'}")
        lines = [
            f"[bold cyan]{key}[/]  {escape(card.title)}",
            f"  input {card.input_size} px, {crop_text}, {crop.interpolation} resize; "
            f"mean {card.mean} std {card.std}",
            f"  output: {escape(card.output)}; video: {card.aggregation}",
            *[f"  reads: {escape(fmt)}" for fmt in card.formats],
            *([f"  demo weights: {card.demo_weights}"] if card.demo_weights else []),
            f"  reference: {escape(card.reference)}",
            f"  checked: {escape(card.verified)}",
        ]
        blocks.append(Text.from_markup("\n".join(lines)))
    return Group(*blocks)


def _ops() -> Table:
    from dfbench.perturbations import OPERATIONS

    table = Table(title="Operations", show_lines=True)
    for col in ("op", "category", "default levels", "unit", "ver", "media", "seeded", "geometry", "what", "source"):
        table.add_column(col, overflow="fold")
    for key in OPERATIONS.names():
        op = OPERATIONS.get(key)
        levels = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in op.levels)
        geometry = op.geometry(op.levels[0]).kind
        table.add_row(key, op.category, levels, op.unit or "-", str(op.version), "/".join(sorted(op.media)),
                      "yes" if op.stochastic else "no", geometry, op.summary, op.source)
    return table


def _suites() -> Table:
    from dfbench.config import list_suites, load_suite

    table = Table(title="Suites (use --suite NAME, or a path to your own YAML)", show_lines=True)
    for col in ("suite", "version", "media", "cells", "frames", "description", "source"):
        table.add_column(col, overflow="fold")
    for name in list_suites():
        suite = load_suite(name)
        cells = f"{len(suite.cells)}: " + ", ".join(c.id for c in suite.cells)
        table.add_row(name, str(suite.version), "/".join(suite.media), cells, str(suite.frames.per_video),
                      suite.description, suite.source)
    return table
