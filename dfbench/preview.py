"""`dfbench preview`: one frame of one sample under every cell of a suite, as a labelled grid (Figure 1 of
Lu & Ebrahimi shows the operations this way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.config import load_suite
from dfbench.data import load_dataset
from dfbench.errors import ConfigError, MediaError
from dfbench.outputs import prepare_file
from dfbench.video.engine import CellFailure, CellPlan, SampledFrame, sample_frames
from dfbench.video.probe import media_of, probe_video

TILE_HEIGHT = 200


@dataclass(frozen=True)
class Preview:
    """The grid written, and which cells could not be shown."""

    path: Path
    sample_id: str
    frame: int
    tiles: int
    failed: dict[str, str]


def preview(suite_name: str, dataset_spec: str, out: Path, sample_id: str | None = None,
            columns: int = 5) -> Preview:
    """Write a PNG grid with the middle frame of `sample_id` (default: the first sample) under every cell."""
    prepare_file(out, "--out")
    suite = load_suite(suite_name)
    dataset = load_dataset(dataset_spec)
    table = dataset.table
    if sample_id is not None:
        table = table[table["sample_id"] == sample_id]
        if table.empty:
            raise ConfigError(f"Sample {sample_id!r} is not in {dataset.name!r}.")
    row = table.iloc[0]
    path = Path(row["path"])
    media = media_of(path)
    suite.check_media(media, path.name, 1)
    info = probe_video(path)
    index = info.frame_count // 2
    plans = [CellPlan(c.id, c.steps(suite.seed, row["sample_id"])) for c in suite.cells]
    frames: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for event in sample_frames(path, plans, [index], media=media, fps=info.fps):
        if isinstance(event, SampledFrame):
            frames[event.cell_id] = event.image
        elif isinstance(event, CellFailure):
            failed.update({cell: event.message for cell in event.cell_ids})
    if not frames:
        raise MediaError(f"No cell produced a frame for {row['sample_id']!r}: {next(iter(failed.values()), '')}")
    # an adversarial cell's frame is the clean one: its crops are attacked per detector when they are scored
    grid = _grid([(c.id, "adversarial: per detector" if c.attack is not None else c.category, frames.get(c.id))
                  for c in suite.cells], columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return Preview(out, str(row["sample_id"]), index, len(suite.cells), failed)


def _grid(tiles: list[tuple[str, str, np.ndarray | None]], columns: int):
    from PIL import Image, ImageDraw, ImageFont

    widths = [int(TILE_HEIGHT * f.shape[1] / f.shape[0]) if f is not None else TILE_HEIGHT for _, _, f in tiles]
    cell_w = max(widths) + 10
    label_h = 34
    rows = (len(tiles) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell_w, rows * (TILE_HEIGHT + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, (cell_id, category, frame) in enumerate(tiles):
        x, y = (k % columns) * cell_w, (k // columns) * (TILE_HEIGHT + label_h)
        if frame is None:
            draw.rectangle([x + 5, y, x + cell_w - 5, y + TILE_HEIGHT], outline="red")
            draw.text((x + 10, y + TILE_HEIGHT // 2), "failed", fill="red", font=font)
        else:
            size = (max(1, int(TILE_HEIGHT * frame.shape[1] / frame.shape[0])), TILE_HEIGHT)
            tile = Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)
            canvas.paste(tile, (x + (cell_w - size[0]) // 2, y))
            draw.text((x + 5, y + TILE_HEIGHT + 2), _fitted(draw, cell_id, font, cell_w - 10), fill="black", font=font)
            draw.text((x + 5, y + TILE_HEIGHT + 16), f"{category}, {frame.shape[1]}x{frame.shape[0]}", fill="gray",
                      font=font)
    return canvas


def _fitted(draw, text: str, font, width: int) -> str:
    """`text`, shortened in its middle with "..." until it fits `width` pixels (a long chain's id, such as a
    5-hop re-share, would run into the next tile)."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        short = text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2:]
        if draw.textlength(short, font=font) <= width:
            return short
    return text[:4] + "..."
