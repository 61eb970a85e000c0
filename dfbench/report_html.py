"""`dfbench report`: one self-contained HTML file (images inline, no network) or Markdown with PNG files.

Sections: the AUC heatmap (cells grouped by category x runs), degradation curves for operations swept over
several levels, ROC curves of the clean cell against each run's worst cell, the preview grid when the run
folder has one, failure counts per cell, and every run's provenance.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench import metrics
from dfbench.results import CLEAN, Results, spread

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1f2328;line-height:1.45}h1{font-size:1.7rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid
#d0d7de;padding-bottom:.3rem}table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}th,td{border:1px solid
#d0d7de;padding:.25rem .5rem;text-align:right}th{background:#f6f8fa}td.l,th.l{text-align:left}.muted{color:#656d76}
img{max-width:100%;border:1px solid #d0d7de}.scroll{overflow-x:auto}"""


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _run_label(row) -> str:
    return f"{row.detector} [{row.weights}]"


def heatmap_png(results: Results, metric: str = "auc", subset: str = "") -> bytes:
    """Cells (rows, grouped by category) x runs (columns), video level, values in %; `subset` names the samples
    in the title where they are a subgroup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results.metrics(("suite",))
    table = table[table["metric"] == metric]
    cells = table.drop_duplicates("cell").sort_values("position")
    runs = table.drop_duplicates("run_id")
    grid = table.pivot_table(index="cell", columns="run_id", values="value", aggfunc="first", dropna=False)
    grid = grid.reindex(index=cells["cell"], columns=runs["run_id"]) * 100
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(runs), 0.9 + 0.38 * len(cells)))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="RdYlGn", vmin=50, vmax=100, aspect="auto")
    ax.set_xticks(range(len(runs)), [_run_label(r) for r in runs.itertuples()], rotation=20, ha="right")
    ax.set_yticks(range(len(cells)), [f"{c.category}: {c.cell}" for c in cells.itertuples()])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=f"{metric.upper()} (%)")
    ax.set_title(f"{metric.upper()} per operation (video level{', ' + subset if subset else ''})")
    return _figure_png(fig)


def curves_png(results: Results, metric: str = "auc") -> bytes | None:
    """Metric against level for every operation with two or more levels; None when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results.metrics(("suite",))
    table = table[(table["metric"] == metric) & (table["category"] != CLEAN)]
    swept = [op for op, g in table.groupby("op") if g["level"].nunique() >= 2]
    if not swept:
        return None
    fig, axes = plt.subplots(1, len(swept), figsize=(4 * len(swept), 3.2), squeeze=False)
    for ax, op in zip(axes[0], swept, strict=True):
        for _, g in table[table["op"] == op].groupby("run_id", sort=False):
            g = g.assign(x=pd.to_numeric(g["level"], errors="coerce")).sort_values("x")
            ax.plot(g["x"], g["value"] * 100, marker="o", label=_run_label(g.iloc[0]))
        ax.set_title(op)
        ax.set_xlabel("level")
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _figure_png(fig)


def roc_png(results: Results) -> bytes:
    """Video-level ROC of the clean cell (solid) and of the run's worst cell by AUC (dashed), per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = results.videos()
    auc = results.metrics(("suite",))
    auc = auc[auc["metric"] == "auc"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for run_id, g in videos.groupby("run_id", sort=False):
        run_auc = auc[(auc["run_id"] == run_id) & (auc["category"] != CLEAN)].dropna(subset=["value"])
        worst = run_auc.loc[run_auc["value"].idxmin(), "cell"] if len(run_auc) else None
        for cell, style in ((g[g["category"] == CLEAN]["cell"].iloc[0] if (g["category"] == CLEAN).any() else None,
                             "-"), (worst, "--")):
            rows = g[g["cell"] == cell]
            if cell is None or rows["label"].nunique() < 2:
                continue
            y, s = rows["label"].to_numpy(), rows["score"].to_numpy()
            fpr, tpr, _ = metrics.roc_curve(y, s)
            ax.plot(fpr, tpr, style, label=f"{_run_label(rows.iloc[0])} {cell} (AUC {metrics.auc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false-positive rate (real called fake)")
    ax.set_ylabel("true-positive rate (fake called fake)")
    ax.set_title("ROC: clean (solid) vs worst cell (dashed)")
    ax.legend(fontsize=7, loc="lower right")
    return _figure_png(fig)


def _table_html(frame: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            text = f"{value:.1f}" if isinstance(value, float) and np.isfinite(value) else (
                "n/a" if isinstance(value, float) else html.escape(str(value)))
            cells.append(f"<td class='{'l' if col in left else ''}'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _by_cell(results: Results, metric: str) -> pd.DataFrame:
    """Cells as rows (grouped by category), runs as columns, values in %, then category and overall means."""
    table = results.metrics(("suite",))
    table = table[table["metric"] == metric].copy()
    table["run"] = [f"{d} [{w}]" for d, w in zip(table["detector"], table["weights"], strict=True)]
    wide = spread(table, ["position", "category", "cell"], "run").sort_index(level="position") * 100
    wide = wide.reset_index(level="position", drop=True)
    perturbed = table[table["category"] != CLEAN]
    means = perturbed.pivot_table(index="category", columns="run", values="value", aggfunc="mean", sort=False,
                                  dropna=False) * 100
    means.index = pd.MultiIndex.from_tuples([(c, "mean") for c in means.index], names=["category", "cell"])
    overall = perturbed.pivot_table(columns="run", values="value", aggfunc="mean") * 100
    overall.index = pd.MultiIndex.from_tuples([("all perturbed", "mean")], names=["category", "cell"])
    return pd.concat([wide, means, overall]).reset_index()


def _failures(results: Results) -> pd.DataFrame:
    table = results.metrics(("suite",))
    table = table[table["metric"] == "auc"]
    out = table[["detector", "weights", "cell", "n_videos", "n_fallback", "n_frames", "n_no_face", "n_errors"]].copy()
    return out.rename(columns={"n_fallback": "fallback videos", "n_no_face": "no-face frames", "n_errors": "errors"})


def _provenance(results: Results) -> pd.DataFrame:
    rows = []
    for run in results.runs.itertuples():
        p = run.provenance
        rows.append({"detector": run.detector, "weights": run.weights, "sha256": (run.weights_sha256 or "-")[:16],
                     "dataset": run.dataset, "suite": f"{p['suite']['name']} v{p['suite']['version']}",
                     "frames": p["suite"]["frames"]["per_video"], "device": f"{p['device']} {p['precision']}",
                     "finder": run.finder, "video rule": run.aggregation,
                     "no face": f"{run.no_face} ({run.fallback_score:g})" if run.no_face == "fallback" else run.no_face,
                     "dfbench": f"{p['dfbench_version']} {p['git_hash'][:8]}",
                     "ffmpeg": p["ffmpeg"].split(" Copyright")[0]})
    return pd.DataFrame(rows)


Section = tuple[str, str, bytes | None, pd.DataFrame | None, tuple[str, ...]]


def build_sections(results: Results, run_dirs: list[Path], by: str | None = None) -> list[Section]:
    """(title, text, png or None, table or None, left-aligned columns) for each report section; with `by`, an
    AUC heatmap per subgroup of that sample column follows the pooled one."""
    unfinished = results.incomplete()
    sections: list[Section] = [("Incomplete runs", " ".join(unfinished), None, None, ())] if unfinished else []
    flags = results.flags()
    if len(flags):
        sections.append(("Degenerate cells", "Cells whose video scores have next to no spread (standard deviation "
                         f"below {metrics.FLAT_SD:g}) or put {metrics.ONE_SIDED:.0%} or more of both the reals and "
                         "the fakes on one side of the threshold: their AUC and accuracy say little about the "
                         "detector.", None, flags[["detector", "weights", "cell", "flag"]],
                         ("detector", "weights", "cell", "flag")))
    sections += [
        ("AUC per operation", "Video-level AUC (%) of every run on every cell, grouped by category, then the mean "
         "of each category and of all perturbed cells.", heatmap_png(results), _by_cell(results, "auc"),
         ("category", "cell")),
        ("Accuracy at 0.5", "Video-level accuracy (%) with P(fake) >= 0.5 meaning fake.", None,
         _by_cell(results, "acc"), ("category", "cell")),
    ]
    for value, keep in (results.subgroups(by).items() if by else ()):
        sections.append((f"AUC per operation, {by} = {value}", f"Video-level AUC (%) of the real videos against "
                         f"the fakes whose {by} is {value!r} (the reals of that {by} where there are some, else "
                         "every real).", heatmap_png(results.subset(keep), subset=f"{by} = {value}"), None, ()))
    curves = curves_png(results)
    if curves is not None:
        sections.append(("Degradation curves", "AUC against the operation's level, for operations swept over "
                         "several levels.", curves, None, ()))
    sections.append(("ROC curves", "Clean cell against the cell where each run's AUC is lowest.", roc_png(results),
                     None, ()))
    for folder in run_dirs:
        preview = folder / "preview.png"
        if preview.is_file():
            sections.append((f"Preview ({folder.name})", "One frame under every cell.", preview.read_bytes(), None,
                             ()))
    sections.append(("Failures per cell", "Frames without a face and samples or frames that failed "
                     "(decode errors, ffmpeg errors, non-finite scores) are reported, never dropped silently. Every "
                     "video counts in every cell: one with no scored frame in a cell is a fallback video, scored "
                     "with its run's fallback score (0.5, as SBI's evaluation), unless the run was made with "
                     "--no-face drop.", None,
                     _failures(results), ("detector", "weights", "cell")))
    provenance = _provenance(results)
    sections.append(("Provenance", "What produced these numbers.", None, provenance, tuple(provenance.columns)))
    return sections


def write_report(results: Results, run_dirs: list[Path], out: Path, by: str | None = None) -> Path:
    """Write `out` as self-contained HTML (``.html``) or as Markdown with PNG files beside it (``.md``); `by` adds a
    heatmap per subgroup of that sample column."""
    sections = build_sections(results, run_dirs, by)
    title = "dfbench report: " + ", ".join(sorted(set(results.runs["detector"]))) + \
        " on " + ", ".join(sorted(set(results.runs["dataset"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".md":
        return _write_markdown(sections, title, out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, text, png, table, left in sections:
        parts.append(f"<h2>{html.escape(name)}</h2><p class='muted'>{html.escape(text)}</p>")
        if png is not None:
            data = base64.b64encode(png).decode()
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
        if table is not None:
            parts.append(f"<div class='scroll'>{_table_html(table, left)}</div>")
    parts.append("</body></html>")
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _cell_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if np.isfinite(value) else "n/a"
    return str(value).replace("|", "\\|")


def _table_markdown(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell_text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines


def _write_markdown(sections: list[Section], title: str, out: Path) -> Path:
    folder = out.with_name(out.stem + "_files")
    folder.mkdir(exist_ok=True)
    lines = [f"# {title}", ""]
    for i, (name, text, png, table, _) in enumerate(sections):
        lines += [f"## {name}", "", text, ""]
        if png is not None:
            (folder / f"figure{i}.png").write_bytes(png)
            lines += [f"![{name}]({folder.name}/figure{i}.png)", ""]
        if table is not None:
            lines += [*_table_markdown(table), ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out
