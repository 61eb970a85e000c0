"""The `dfbench` command line. Commands build a config and call the library; no logic lives here.

Imports of torch, numpy-heavy modules and the pipeline happen inside the commands, so that
`dfbench --help` answers at once.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from dfbench import __version__
from dfbench.errors import ConfigError, DfbenchError

app = typer.Typer(
    name="dfbench", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="Benchmark how robust deepfake detectors are to the processing real media goes through.\n\n"
         "Quick start: dfbench run --detector effb2 --suite video-ops   (the offline demo set and weights)",
)
data_app = typer.Typer(no_args_is_help=True, help="Test sets: check a dataset, build the demo set.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DetectorOpt = Annotated[str, typer.Option("--detector", "-d", help="Detector key; see 'dfbench list detectors'.")]
SuiteOpt = Annotated[str, typer.Option("--suite", "-s", help="Shipped suite name or path to a suite YAML.")]
DatasetOpt = Annotated[str, typer.Option(
    "--dataset", help="'demo', a folder with real/ and fake/ subfolders, or a .csv/.parquet manifest.")]
SplitOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional here
    help="Split to use (default: 'test' when the dataset has splits, else all samples).")]
FramesOpt = Annotated[Optional[int], typer.Option(  # noqa: UP045
    help="Frames sampled uniformly per video (default: the suite's, 32).")]
LimitOpt = Annotated[Optional[int], typer.Option(  # noqa: UP045
    help="Use at most this many samples, balanced by label (for quick looks).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
WeightsOpt = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    help="Checkpoint file (repeat for detectors that read several, e.g. capsule), 'demo' or 'random'. "
         "Default on the demo set: the shipped demo weights, or random ones where none ship.")]
PrecisionOpt = Annotated[str, typer.Option(
    help="fp32 (as every detector's authors ran), bf16, fp16, or auto (bf16 where the CPU/GPU supports it). "
         "README.md, Precision, gives how far bf16 and fp16 move the scores.")]
FinderOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Face finder: card (the detector's authors' finder where it runs offline, else mtcnn with a notice), "
         "mtcnn, dlib, face_recognition, face_recognition_hog, retinaface (weights: $DFBENCH_RETINAFACE_WEIGHTS), "
         "or none (inputs are face crops). On a GPU run, mtcnn and retinaface search on the GPU (mtcnn_torch asks "
         "for that on any device). 'dfbench list finders' says what each is. Default: the suite's (card).")]
TrustOpt = Annotated[bool, typer.Option(help="Allow checkpoints that need unpickling (can run code from the file).")]
ByOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Also every metric per subgroup of this sample column: method (FF++'s manipulation, built in), group, "
         "or any manifest column. Each subgroup is its fakes against the reals of the same value, or every real "
         "where none has it (README \"Per method, per group\").")]
CalibrateOnOpt = Annotated[str, typer.Option(
    help="Where acc_cal's threshold (--calibration's rule) is found, then frozen for every cell: clean (the scored "
         "samples' clean cell), val (the clean cell of the dataset's validation split, scored too) or split:NAME.")]
BackendOpt = Annotated[str, typer.Option(
    help="local: this machine. ray: samples are gathered as Ray tasks and scored by model actors on a Ray cluster "
         "(pip install 'dfbench[ray]'; README \"Past one machine\").")]
AddressOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="With --backend ray: the cluster to join (auto, ray://HOST:10001 or the head's HOST:PORT). Default: start "
         "a local Ray instance.")]
LeaderboardOpt = Annotated[Path, typer.Option("--out", "-o", help="Long leaderboard CSV to write.")]
WideOpt = Annotated[Optional[Path], typer.Option(help="Also write the wide AUC matrix here.")]  # noqa: UP045
ThresholdOpt = Annotated[float, typer.Option(help="Threshold of acc, precision, recall, f1 ...")]
CalibrationOpt = Annotated[str, typer.Option(
    help="Rule for acc_cal's threshold, found on each run's clean cell: eer or fpr:<rate>.")]
CiOpt = Annotated[int, typer.Option(help="Bootstrap resamples (over videos) for 95 % intervals of auc and acc.")]


def cli_errors(fn):
    """Turn a DfbenchError, or an OSError on a named path (read-only, full, not a folder), into one red line and
    exit code 1; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DfbenchError as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            if exc.filename is None:   # not about a path the user named: a bug, keep the traceback
                raise
            from dfbench.outputs import os_error_line

            err_console.print(f"[bold red]Error:[/] {os_error_line(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"dfbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Benchmark how robust deepfake detectors are to the processing real media goes through."""


@app.command()
@cli_errors
def run(
    detector: DetectorOpt = "effb2",
    suite: SuiteOpt = "video-ops",
    dataset: DatasetOpt = "demo",
    weights: WeightsOpt = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder (created; reruns resume, also after Ctrl-C or SIGTERM).")] = Path(
        "runs/latest"),
    split: SplitOpt = None,
    frames: FramesOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Faces per inference batch. Default: 16 on a CPU, 256 on a GPU.")] = None,
    limit: LimitOpt = None,
    trust_checkpoint: TrustOpt = False,
    finder: FinderOpt = None,
    no_face: Annotated[str, typer.Option(
        help="fallback: every video counts in every cell, one with no scored frame gets the detector's fallback "
             "score (0.5, as SBI's evaluation) and is counted as n_fallback; drop: leave it out of that cell's "
             "video metrics (the video set then differs from cell to cell).")] = "fallback",
    work_limit: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Most disk the intermediate work files (compression encodes) may take, e.g. 2G; past it the run "
             "stops cleanly (resumable).")
    ] = None,
    cache_limit: Annotated[Optional[str], typer.Option(hidden=True, help="The old name of --work-limit.")  # noqa: UP045
                           ] = None,
    faces: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="redetect: find faces in every perturbed frame (the faithful protocol); clean: find them once per "
             "video in the clean frames and map the boxes through each operation (finder failures then do not "
             "count against the detector, and finding costs one cell instead of all). Default: the suite's.")
    ] = None,
    face_cache: Annotated[bool, typer.Option(
        "--face-cache/--no-face-cache",
        help="Reuse the faces an earlier run found on the same data and suite (any detector), and keep this "
             "run's for the next one. Results are identical either way.")] = True,
    keep_crops: Annotated[bool, typer.Option(
        help="Also keep this run's face crops in the cache (about 150 KB per face at 224 px), so that the next "
             "detector with the same crop spec skips decoding and only runs its model.")] = False,
    workers: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=0, help="Processes that decode, perturb and find faces while the model scores earlier samples. "
                    "0: all in one process. Default: 0 on a CPU, up to 8 beside a GPU. With --backend ray on a "
                    "cluster without GPUs: the number of model actors (default: one per 5 CPUs).")] = None,
    by: ByOpt = None,
    calibrate_on: CalibrateOnOpt = "clean",
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    surrogate: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="The detector the transfer attacks of the suite (fgsm_transfer, pgd_transfer; suite "
             "adversarial-transfer) are made on; the run's detector scores the attacked crops.")] = None,
    surrogate_weights: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Weights of --surrogate: a file, demo or random. Default: its demo weights where it ships some.")
    ] = None,
) -> None:
    """Score a detector on every cell of a suite and print the AUC matrix.

    Example: dfbench run --detector effb2 --suite video-ops --dataset videos/ --weights effb2.pt --out runs/effb2
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from dfbench.api import run as run_api
    from dfbench.config import RunConfig, parse_size
    from dfbench.reports import cell_table, table_one

    config = RunConfig(detector=detector, suite=suite, dataset=dataset, weights=_weights(weights), split=split, out=out,
                       frames=frames, device=device, precision=precision, batch_size=batch_size, limit=limit,
                       trust_checkpoint=trust_checkpoint, faces=faces, finder=finder, no_face=no_face,
                       work_limit=parse_size(limit_text) if (limit_text := work_limit or cache_limit) else None,
                       face_cache=face_cache, keep_crops=keep_crops, workers=workers, by=by,
                       calibrate_on=calibrate_on, backend=backend, address=address, surrogate=surrogate,
                       surrogate_weights=surrogate_weights)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("samples"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task("scoring", total=None)

    def on_prepared(prep) -> None:
        for note in prep.notes:
            console.print(f"[cyan]note:[/] {note}", highlight=False)
        for line in prep.warnings:
            _warn(line)
        console.print(escape(f"{prep.config.detector} [{prep.adapter.weights_label}] on {prep.dataset.name}: ")
                      + f"{len(prep.dataset)} samples x {len(prep.suite.cells)} cells of '{prep.suite.name}', "
                      f"{prep.suite.frames.per_video} frames each, faces {prep.suite.faces} "
                      f"({_finder_label(prep.gatherer.finder)}), "
                      f"video rule {prep.provenance['protocol']['aggregation']}; "
                      f"device {prep.adapter.device}, {prep.adapter.precision}", highlight=False)
        progress.start()

    counts = {"done": 0, "total": 0}

    def on_progress(done: int, total: int, sample_id: str) -> None:
        counts.update(done=done, total=total)
        progress.update(task, completed=done, total=total)

    try:
        summary = run_api(config, on_progress=on_progress, on_prepared=on_prepared)
    except KeyboardInterrupt as exc:
        from dfbench.signals import Terminated, exit_code

        progress.stop()
        how = "Terminated (SIGTERM)" if isinstance(exc, Terminated) else "Interrupted"
        err_console.print(f"[yellow]{how}[/] after {counts['done']} of {counts['total']} samples; they are "
                          f"saved in {out}. Run the same command again to resume where it stopped.", highlight=False)
        raise typer.Exit(exit_code(exc)) from None
    finally:
        progress.stop()
    if summary.n_resumed:
        console.print(f"Resumed: {summary.n_resumed} samples were already scored in {out}.")
    wide = [table_one(summary.results, "auc"), table_one(summary.results, "acc")]
    unlimited = console.options.update_width(10_000)   # the width each table wants, not what it would get
    if all(console.measure(t, options=unlimited).maximum <= console.width for t in wide):
        for table in wide:
            console.print(table)
    else:
        console.print(cell_table(summary.results))
    for stage, info in summary.stages.items():
        console.print(f"  {stage:<16} {info['items']:>7} items  {info['seconds']:>8.1f} s  "
                      f"{info['per_second']:>8.1f} /s", highlight=False)
    console.print(f"Wall time {summary.seconds:.1f} s. Wrote {', '.join(str(p) for p in summary.files.values())}",
                  highlight=False)
    _warn_flags(summary.results)


def _weights(values: list[str] | None) -> str | tuple[str, ...] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@app.command()
@cli_errors
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Images or videos to score.")],
    detector: DetectorOpt = "effb2",
    weights: WeightsOpt = None,
    faces: Annotated[str, typer.Option(help="'find' faces, or 'none': each input is already a face crop.")] = "find",
    output_format: Annotated[str, typer.Option("--format", help="table or csv.")] = "table",
    frames: Annotated[int, typer.Option(help="Frames sampled per video.")] = 32,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    trust_checkpoint: TrustOpt = False,
    finder: FinderOpt = None,
) -> None:
    """Print P(fake) for each image or video, scored as `run --suite clean` scores it (a video: the detector's
    video rule over its scored frames). --weights is required (--weights demo for the demo weights).

    Example: dfbench predict --detector meso4 --weights Meso4_DF.h5 --faces none faces/*.jpg
    """
    import csv

    from rich.table import Table

    from dfbench.config import default_weights
    from dfbench.detectors import get_detector
    from dfbench.predict import predict_paths

    if output_format not in ("table", "csv"):
        raise ConfigError(f"--format must be 'table' or 'csv', got {output_format!r}.")
    adapter = get_detector(detector)
    chosen = default_weights(_weights(weights), "the files given to predict", bool(adapter.card.demo_weights))
    adapter.load(chosen, device, precision, trust_checkpoint)
    for note in adapter.notes:
        err_console.print(f"[cyan]note:[/] {note}", highlight=False)
    
    from dfbench.gather import choose_finder

    card = adapter.card
    chosen_finder, notice = choose_finder(finder or "card", card.finder, detector,
                                          card.crop.whole_frame or faces == "none", adapter.device)
    if notice:
        err_console.print(f"[cyan]note:[/] {notice}", highlight=False)
    results = predict_paths(adapter, paths, faces=faces, frames=frames, finder=chosen_finder)
    columns = ("path", "kind", "p_fake", "status", "frames", "faces")
    rows = [(r.path, r.kind, "" if r.score is None else f"{r.score:.6f}", r.status, str(r.n_frames),
             str(r.n_faces)) for r in results]
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    table = Table(title=f"P(fake) by {detector} [{adapter.weights_label}]".replace("[", "\\["))
    for col in columns:
        table.add_column(col, justify="right" if col in ("p_fake", "frames", "faces") else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command()
@cli_errors
def preview(
    suite: SuiteOpt = "video-ops",
    dataset: DatasetOpt = "demo",
    sample: Annotated[Optional[str], typer.Option(help="Sample id (default: the dataset's first).")] = None,  # noqa: UP045
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("preview.png"),
    columns: Annotated[int, typer.Option(help="Tiles per row.")] = 5,
) -> None:
    """Write one frame under every cell of a suite as a labelled grid (as Figure 1 of Lu & Ebrahimi).

    Example: dfbench preview --suite video-ops --dataset videos/ --sample fake/clip_003 -o grid.png
    """
    from dfbench.preview import preview as make_preview

    result = make_preview(suite, dataset, out, sample, columns)
    console.print(f"Wrote {result.path}: frame {result.frame} of {result.sample_id} under {result.tiles} cells.",
                  highlight=False)
    for cell, message in result.failed.items():
        err_console.print(f"[red]failed[/] {cell}: {message}", highlight=False)


@app.command()
@cli_errors
def perturb(
    suite: SuiteOpt = "video-ops",
    dataset: DatasetOpt = "demo",
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for the copies: OUT/<op>-<level>/<path> (OUT/cells.csv maps folders to cells); "
                            "it must lie outside the dataset.")] = Path("perturbed"),
    split: SplitOpt = None,
    limit: LimitOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
) -> None:
    """Write the full perturbed copy of a test set for every cell of a suite.

    Example: dfbench perturb --suite video-ops --dataset videos/ --out perturbed/
    """
    from rich.progress import Progress

    from dfbench.copies import write_dataset_copies

    with Progress(console=console) as progress:
        task = progress.add_task("writing copies", total=None)
        report = write_dataset_copies(suite, dataset, out, split=split, limit=limit, backend=backend,
                                      address=address,
                                      on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                      total=total))
    console.print(f"Wrote {report.n_files} files for {report.n_samples} samples x {report.n_cells} cells to {out} "
                  f"(manifest: {report.manifest}).", highlight=False)
    if report.skipped:
        console.print(f"[cyan]note:[/] no copies of the adversarial cells {', '.join(report.skipped)}: they attack "
                      "each detector's own crops when dfbench run scores them.", highlight=False)
    for (sample_id, cell), message in sorted(report.errors.items()):
        err_console.print(f"[red]failed[/] {sample_id} {cell}: {message}", highlight=False)


@app.command()
@cli_errors
def train(
    detector: DetectorOpt = "effb2",
    dataset: DatasetOpt = "demo",
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint file to write.")] = Path("detector.pt"),
    recipe: Annotated[str, typer.Option(help="trueface-effb2, cutout, sbi or deepfeaturex.")] = "trueface-effb2",
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs (default: the recipe's).")] = None,  # noqa: UP045
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (default: the recipe's).")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the recipe's).")] = None,  # noqa: UP045
    patience: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Early-stopping patience in epochs (default: the recipe's).")] = None,
    micro_batch: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Accumulate gradients over chunks of this size (a large batch on little memory).")] = None,
    frames: Annotated[int, typer.Option(help="Frames per training video.")] = 32,
    val_fraction: Annotated[float | None, typer.Option(
        help="Share of training groups held out for validation [default: the recipe's; 0.3 for trueface-effb2]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the splits, the init and the batch order.")] = 0,
    init: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Start from 'imagenet' (efficientnet_lite0) or a checkpoint file (deepfeaturex: a DeepFeatureX "
             "checkpoint, or a DenseNet-121 file for every base model); default: random.")] = None,
    augment: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        help="Mirror half the training crops (default: the recipe's).")] = None,
    cutout: Annotated[bool, typer.Option(help="cutout recipe: with Cut-Out (Table II's second column).")] = True,
    class_map: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="deepfeaturex: map methods to DM/GAN, e.g. sbi_blur=DM,sbi_sharpen=GAN.")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    finder: FinderOpt = None,
    save_dtype: Annotated[str, typer.Option(help="fp32 or fp16 weights in the saved file.")] = "fp32",
) -> None:
    """Train a detector with a seed paper's recipe; validation is never the test split, reruns resume.

    Recipes: trueface-effb2 (EfficientNet-B2 paper), cutout (residual CNN paper, Table II), sbi (self-blended
    images from real faces only), deepfeaturex (base models, then the head).

    Example: dfbench train --detector effb2 --recipe trueface-effb2 --dataset demo --out effb2.pt
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dfbench.training import Overrides, TrainConfig, train_detector

    overrides = Overrides(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, flip=augment,
                          cutout=cutout, micro_batch=micro_batch, seed=seed)
    config = TrainConfig(detector=detector, dataset=dataset, out=out, recipe=recipe, frames=frames,
                         val_fraction=val_fraction, device=device, precision=precision, save_dtype=save_dtype,
                         init=init, class_map=class_map, overrides=overrides, finder=finder or "card")
    bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), console=console, transient=True)
    task = bar.add_task("train", total=None, epoch=0, loss=0.0)

    def on_batch(epoch: int, batch: int, batches: int, loss: float) -> None:
        bar.update(task, completed=batch, total=batches, epoch=epoch, loss=loss)

    with bar:
        result = train_detector(config, log=lambda msg: bar.console.print(msg, highlight=False), progress=on_batch)
    console.print(f"Kept epoch {result.best_epoch} (validation loss {result.best_val_loss:.4f}, AUC "
                  f"{result.best_val_auc:.4f}); {result.seconds_per_epoch:.0f} s per epoch; wrote {out}",
                  highlight=False)


RunDirsArg = Annotated[list[Path], typer.Argument(help="Run folders (each holds a scores.sqlite).")]


@app.command("leaderboard")
@cli_errors
def leaderboard_cmd(
    run_dirs: RunDirsArg,
    out: LeaderboardOpt = Path("leaderboard.csv"),
    wide: WideOpt = None,
    predictions: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write per-video predictions at full precision (sample_id, label, detector, weights, op, level, "
             "cell, aggregation, score, ...; README \"Predictions\"); 'dfbench score' reads them back.")] = None,
    frame_predictions: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write per-frame predictions (a row per sample, cell and frame, with its status).")] = None,
    threshold: ThresholdOpt = 0.5,
    calibration: CalibrationOpt = "eer",
    ci: CiOpt = 0,
    by: ByOpt = None,
    calibrate_on: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="clean or val: where acc_cal's threshold is found (val needs runs made with --calibrate-on val). "
             "Default: each run's own.")] = None,
) -> None:
    """Merge runs into one long leaderboard CSV (stable schema; README "Leaderboards").

    Example: dfbench leaderboard runs/effb2 runs/sbi -o leaderboard.csv --wide matrix.csv --ci 1000
    """
    from dfbench.outputs import prepare_file
    from dfbench.predictions import frame_predictions as per_frame
    from dfbench.predictions import video_predictions, write_predictions
    from dfbench.results import load_results

    prepare_file(out, "--out")
    for flag, path in (("--wide", wide), ("--predictions", predictions), ("--frame-predictions", frame_predictions)):
        if path is not None:
            prepare_file(path, flag)
    results = load_results(run_dirs)
    _warn_incomplete(results)
    _write_leaderboard(results, out, wide, threshold, calibration, ci, ("frame", "suite"), by, calibrate_on)
    for path, table in ((predictions, video_predictions), (frame_predictions, per_frame)):
        if path is not None:
            write_predictions(table(results), path)
            console.print(f"Wrote {path}.", highlight=False)


def _write_leaderboard(results, out: Path, wide: Path | None, threshold: float, calibration: str, ci: int,
                       aggregations: tuple[str, ...], by: str | None, calibrate_on: str | None = None) -> None:
    from dfbench.reports import leaderboard, leaderboard_wide

    _warn_flags(results)
    long = leaderboard(results, threshold=threshold, calibration=calibration, ci=ci, aggregations=aggregations,
                       by=by, calibrate_on=calibrate_on)
    long.to_csv(out, index=False, float_format="%.6f")
    console.print(f"Wrote {out} ({len(long)} rows, {results.runs.shape[0]} runs).", highlight=False)
    if wide is not None:
        leaderboard_wide(long).to_csv(wide, index=False, float_format="%.6f")
        console.print(f"Wrote {wide}.", highlight=False)


@app.command("score")
@cli_errors
def score_cmd(
    predictions: Annotated[list[Path], typer.Argument(
        help="Predictions CSV files: video rows (sample_id, cell, score) and optional frame rows (with a frame "
             "column), as 'dfbench leaderboard --predictions / --frame-predictions' writes them.")],
    dataset: DatasetOpt = "demo",
    suite: SuiteOpt = "video-ops",
    split: SplitOpt = None,
    limit: LimitOpt = None,
    frames: FramesOpt = None,
    faces: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="The run's face mode, where it was not the suite's (it is part of the suite hash).")] = None,
    out: LeaderboardOpt = Path("leaderboard.csv"),
    wide: WideOpt = None,
    no_face: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="A video row without a score: fallback (counts at --fallback-score) or drop. Default: the file's "
             "no_face column, else fallback.")] = None,
    fallback_score: Annotated[Optional[float], typer.Option(help="Default 0.5.")] = None,  # noqa: UP045
    detector: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Detector label where the file has no detector column.")] = None,
    weights: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Weights label where the file has no weights column (default: the file name).")] = None,
    threshold: ThresholdOpt = 0.5,
    calibration: CalibrationOpt = "eer",
    ci: CiOpt = 0,
    by: ByOpt = None,
) -> None:
    """Score a predictions file on a dataset and suite: check that it holds every (sample, cell) exactly once,
    then write the leaderboard rows a dfbench run would (weights_sha256: the predictions' sha256).

    Example: dfbench score predictions.csv --dataset demo --suite video-ops --frames 8 -o leaderboard.csv
    """
    from dfbench.outputs import prepare_file
    from dfbench.predictions import score

    prepare_file(out, "--out")
    if wide is not None:
        prepare_file(wide, "--wide")
    results = score(predictions, dataset, suite, split=split, limit=limit, frames=frames, faces=faces,
                    no_face=no_face, fallback_score=fallback_score, detector=detector, weights=weights)
    n_fallback = int(results.videos()["fallback"].sum())
    console.print(f"{len(results.tasks)} (sample, cell) predictions of {results.runs.shape[0]} run(s), every one of "
                  f"{results.tasks['sample_id'].nunique()} samples x {results.cells['cell'].nunique()} cells present"
                  f"{f'; {n_fallback} without a score counted at the fallback score' if n_fallback else ''}.",
                  highlight=False)
    _write_leaderboard(results, out, wide, threshold, calibration, ci,
                       ("frame", "suite") if len(results.frames) else ("suite",), by)


def _finder_label(finder) -> str:
    """The finder's name, with where it runs when that is a torch device (``mtcnn, torch on cuda:0``)."""
    if callable(getattr(finder, "where", None)):
        return f"{finder.name}, torch on {finder.where()}"
    return finder.name


def _warn(line: str) -> None:
    """One warning on stderr, on one line whatever the terminal's width."""
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _warn_incomplete(results) -> None:
    for line in results.incomplete():
        _warn(line)


def _warn_flags(results) -> None:
    """One line per run with cells whose scores are degenerate (README "Degenerate detectors")."""
    for line in results.flag_lines():
        _warn(line)


@app.command("report")
@cli_errors
def report_cmd(
    run_dirs: RunDirsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="report.html (self-contained) or report.md.")] = Path(
        "report.html"),
    by: ByOpt = None,
) -> None:
    """Write a report of one or more runs: AUC heatmap, degradation and ROC curves, failures, provenance.

    Example: dfbench report runs/effb2 runs/sbi -o report.html
    """
    from dfbench.outputs import prepare_file
    from dfbench.report_html import write_report
    from dfbench.results import load_results

    prepare_file(out, "--out")
    results = load_results(run_dirs)
    _warn_incomplete(results)
    path = write_report(results, list(run_dirs), out, by)
    console.print(f"Wrote {path}.", highlight=False)


@data_app.command("audit")
@cli_errors
def data_audit(
    dataset: Annotated[str, typer.Argument(help="A folder, a manifest, or a layout spec, as for 'data check'.")],
    split: SplitOpt = None,
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--out", "-o", help="Also write every sample's format features to this CSV.")] = None,
) -> None:
    """Do real and fake differ in how they are stored? Per class: container, codec, profile, pixel format, size,
    frame rate, duration, bitrate (videos); format, chroma subsampling, JPEG quality, metadata (images); then the
    AUC of a classifier on those features alone (headers only, no frame decoded).

    Example: dfbench data audit ffpp:/data/FaceForensics++ --split test
    """
    from rich.table import Table

    from dfbench.data import load_dataset
    from dfbench.data.audit import LEAK_AUC, audit
    from dfbench.outputs import prepare_file

    if out is not None:
        prepare_file(out, "--out")
    data = load_dataset(dataset)
    if split is not None:
        data = data.select(split)
    result = audit(data)
    table = Table(title=f"Formats per class: {data.name} ({len(data)} samples)", header_style="bold")
    for column in ("feature", "real", "fake"):
        table.add_column(column)
    for row in result.summary.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)
    auc = "n/a (needs two groups per class)" if result.baseline_auc != result.baseline_auc else \
        f"{result.baseline_auc:.3f}"
    console.print(f"format-only baseline AUC {auc} (a random forest on these features, {result.folds}-fold "
                  f"cross-validated by group; above {LEAK_AUC} format alone separates the classes)", highlight=False)
    unreadable = int(result.features["error"].notna().sum()) if "error" in result.features else 0
    if unreadable:
        console.print(f"{unreadable} files have unreadable headers (the error column of --out).", highlight=False)
    if result.leak:
        _warn(result.warning())
    if out is not None:
        result.features.to_csv(out, index=False)
        console.print(f"Wrote {out}.", highlight=False)


@data_app.command("check")
@cli_errors
def data_check(
    dataset: Annotated[str, typer.Argument(help="A folder, a manifest, or a layout spec (ffpp:ROOT?compression=c23, "
                                                  "celebdf:ROOT, dfdc:ROOT, trueface:ROOT, deepfakebench:INDEX).")],
    probe: Annotated[bool, typer.Option(help="Try to read every file.")] = True,
) -> None:
    """Validate a dataset and count its samples per split, method and label, without running a model.

    Exits 1 when a row is invalid (duplicate id, bad label, missing file) or a file cannot be read.

    Example: dfbench data check ffpp:/data/FaceForensics++?compression=c23
    """
    from rich.progress import Progress
    from rich.table import Table

    from dfbench.data.check import check_dataset

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("reading files", total=None)
        report = check_dataset(dataset, probe=probe,
                               on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    table = Table(title=f"{report.dataset.name}: {len(report.dataset)} valid samples")
    for col in report.counts.columns:
        table.add_column(col, justify="right" if col == "samples" else "left")
    for row in report.counts.itertuples(index=False):
        table.add_row(*[str(v) if v != "" else "-" for v in row])
    console.print(table)
    skipped = report.dataset.skipped
    if skipped:
        err_console.print(f"[cyan]note:[/] {len(skipped)} files in the dataset folder are not samples and are "
                          "skipped:", highlight=False)
        for line in skipped[:20]:
            err_console.print(f"  skipped: {line}", highlight=False)
        if len(skipped) > 20:
            err_console.print(f"  ... and {len(skipped) - 20} more.", highlight=False)
    for line in report.problems[:20] + report.unreadable[:20]:
        err_console.print(f"[red]problem:[/] {line}", highlight=False)
    hidden = len(report.problems) + len(report.unreadable) - min(20, len(report.problems)) - min(20,
                                                                                                   len(report.unreadable))
    if hidden > 0:
        err_console.print(f"... and {hidden} more problems.")
    if not report.ok:
        err_console.print(f"{len(report.problems)} invalid rows, {len(report.unreadable)} unreadable files.")
        raise typer.Exit(1)
    console.print("No problems found.")


@data_app.command("demo")
@cli_errors
def data_demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write real/, fake/ and manifest.csv into.")],
    clips: Annotated[int, typer.Option(help="Number of clips (each gives one real and one fake video).")] = 24,
) -> None:
    """Build the offline demo set (cached) and copy it to a folder.

    Example: dfbench data demo --out demo_videos/
    """
    from dfbench.data.demo import export_demo
    from dfbench.outputs import prepare_folder

    prepare_folder(out, "--out")
    with console.status("building the demo set (cached after the first time)"):
        folder = export_demo(out, n_clips=clips)
    console.print(f"Wrote {2 * clips} videos to {folder}/real and {folder}/fake; {folder}/manifest.csv keeps "
                  "the train/test split.", highlight=False)


@app.command("list")
@cli_errors
def list_things(
    what: Annotated[str, typer.Argument(help="detectors, ops, suites or finders")],
) -> None:
    """List detectors (with their cards), operations, suites or face finders.

    Example: dfbench list ops
    """
    from dfbench.listing import render_listing

    console.print(render_listing(what))


def main() -> None:
    """Console-script entry point; SIGTERM stops any command as Ctrl-C does (`dfbench.signals`)."""
    from dfbench import signals

    signals.install()
    try:
        app()
    except KeyboardInterrupt as exc:
        err_console.print("[yellow]Stopped.[/]", highlight=False)
        sys.exit(signals.exit_code(exc))


if __name__ == "__main__":
    main()
