"""What `dfbench list` shows: detector cards, operations with provenance, shipped suites, face finders."""

from __future__ import annotations

from dfbench.errors import ConfigError

KINDS = ("detectors", "ops", "suites", "finders")


def render_listing(what: str):
    """A rich table for ``detectors``, ``ops``, ``suites`` or ``finders``."""
    kind = {"detector": "detectors", "op": "ops", "operations": "ops", "suite": "suites",
            "finder": "finders"}.get(what, what)
    if kind == "finders":
        return _finders()
    if kind == "detectors":
        return _detectors()
    if kind == "ops":
        return _ops()
    if kind == "suites":
        return _suites()
    raise ConfigError(f"Cannot list {what!r}; choose one of: {', '.join(KINDS)}.")


def _detectors():
    from rich.markup import escape

    from dfbench.detectors import DETECTORS

    entries: list[list[str]] = []
    title = "Detectors (--detector KEY; also timm:<name> for any timm model)"
    for key in DETECTORS.names():
        card = DETECTORS.get(key).card
        crop = card.crop
        crop_text = ("whole image" if crop.whole_frame else
                     "MesoNet's landmark-aligned square" if crop.aligned else
                     f"{'square' if crop.square else 'box'} x{crop.scale:g} of the face box, "
                     f"{ {'largest': 'largest face', 'first': 'first face', 'all': 'all faces'}[crop.faces]}")
        lines = [
            f"[bold cyan]{key}[/]  {escape(card.title)}",
            f"  input {card.input_size} px, {crop_text}, {crop.interpolation} resize; "
            f"mean {card.mean} std {card.std}",
            f"  output: {escape(card.output)}; video rule: {card.aggregation}; no face: {card.fallback_score:g}"
            f"{'; decision: argmax' if card.decision == 'argmax' else ''}",
            f"  finder: {card.finder}" + (f"; protocol: {escape(card.protocol)}" if card.protocol else ""),
            *[f"  reads: {escape(fmt)}" for fmt in card.formats],
            *([f"  demo weights: {card.demo_weights}"] if card.demo_weights else []),
            f"  reference: {escape(card.reference)}",
            f"  checked: {escape(card.verified)}",
        ]
        entries.append(lines)
    return _blocks(title, entries)


def _ops():
    from rich.markup import escape

    from dfbench.perturbations import OPERATIONS

    # One block per operation rather than a table: the source citations are long and a ten-column table
    # folds every cell into unreadable slivers in an 80-column terminal (or a CI log).
    entries: list[list[str]] = []
    title = "Operations (use in a suite: {op: NAME, levels: [...]}; see them with dfbench preview --suite S)"
    for key in OPERATIONS.names():
        op = OPERATIONS.get(key)
        levels = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in op.levels)
        lines = [
            f"[bold cyan]{key}[/]  {escape(op.summary)}",
            f"  category {op.category}; levels {escape(levels)} ({escape(op.unit or 'no unit')}); "
            f"media {'/'.join(sorted(op.media))}; version {op.version}; "
            f"{'seeded' if op.stochastic else 'deterministic'}; geometry {op.geometry(op.levels[0]).kind}",
            f"  source: {escape(op.source)}",
        ]
        if op.attack is not None:
            lines.insert(2, "  [yellow]adversarial cell[/]: the media stays as it is; each detector's own crops are "
                            "attacked when they are scored (README 'Adversarial cells')")
        entries.append(lines)
    return _blocks(title, entries)


def _suites():
    from rich.markup import escape

    from dfbench.config import list_suites, load_suite

    entries: list[list[str]] = []
    title = "Suites (use --suite NAME, or a path to your own YAML)"
    for name in list_suites():
        suite = load_suite(name)
        cells = ", ".join(c.id for c in suite.cells)
        lines = [
            f"[bold cyan]{name}[/]  {escape(suite.description)}",
            f"  version {suite.version}; media {'/'.join(suite.media)}; {suite.frames.per_video} frames per video; "
            f"{len(suite.cells)} cells: {escape(cells)}",
            f"  source: {escape(suite.source)}",
        ]
        entries.append(lines)
    return _blocks(title, entries)


def _finders():
    from rich.markup import escape

    from dfbench.faces.finder import FINDERS, finder_missing, make_finder

    entries: list[list[str]] = []
    title = "Face finders (--finder NAME, or card: each detector's authors' finder)"
    for key in FINDERS.names():
        missing = finder_missing(key)
        if missing and key == "retinaface":
            from dfbench.faces.retinaface import RetinaFaceFinder

            summary, settings = (RetinaFaceFinder.__doc__ or "").strip().splitlines()[0], "max_size 2048, " \
                "confidence 0.7, nms 0.4"
        else:
            finder = make_finder(key)
            summary = (type(finder).__doc__ or "").strip().splitlines()[0]
            settings = ", ".join(f"{k} {v}" for k, v in finder.describe().items() if k != "finder")
        entries.append([f"[bold cyan]{key}[/]  {escape(summary)}",
                        f"  settings: {escape(settings or 'none')}",
                        f"  {'[red]not available:[/] ' + escape(missing) if missing else 'available'}"])
    return _blocks(title, entries)


def _blocks(title: str, entries: list[list[str]]):
    """A bold title, then one block of markup lines per entry (readable at any terminal width)."""
    from rich.console import Group
    from rich.text import Text

    return Group(Text(title, style="bold"), *(Text.from_markup("\n".join(lines)) for lines in entries))
