"""Adversarial cells: attacks within their budget on 8-bit crops, through each adapter's own preprocessing, made per
detector at scoring time (never cached, never copied), with the transfer mode's surrogate in the run's identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfbench.config import Cell, load_suite, parse_suite
from dfbench.errors import ConfigError
from dfbench.perturbations.adversarial import Attack, Attacker, perturb


@pytest.fixture(scope="module")
def effb2():
    from dfbench.detectors import get_detector

    adapter = get_detector("effb2")
    adapter.load("demo", "cpu", "fp32")
    return adapter


@pytest.fixture(scope="module")
def crops(small_demo: Path, effb2) -> tuple[np.ndarray, list[int]]:
    """Two face crops of a fake and two of a real demo video, cut as effb2 cuts them."""
    from dfbench.gather import Gatherer, clean_suite, make_finder

    gatherer = Gatherer(clean_suite(2), make_finder("mtcnn"), effb2.card.crop)
    out, labels = [], []
    for label, name in ((1, "fake"), (0, "real")):
        gathered = gatherer.gather_all(f"{name}/clip_003", small_demo / name / "clip_003.mp4")
        out.append(gathered.crops[:2])
        labels += [label] * len(gathered.crops[:2])
    return np.concatenate(out), labels


def _p_fake(adapter, batch) -> np.ndarray:
    return adapter.predict(batch).numpy()


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_an_attack_stays_in_its_budget_on_whole_grey_levels_and_moves_p_fake_away_from_the_label(
        method: str, effb2, crops):
    import torch

    from dfbench.scoring import to_model_input

    images, labels = crops
    eps = 4 / 255
    attack = Attack(method, eps, 1 if method == "fgsm" else 10, eps if method == "fgsm" else eps / 4,
                    method == "pgd")
    for label in (0, 1):
        rows = [i for i, y in enumerate(labels) if y == label]
        clean = to_model_input(images[rows], "cpu")
        start = torch.rand(clean.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        adv = perturb(effb2, clean, label, attack, start)
        assert float((adv - clean).abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        assert float((adv * 255 - torch.round(adv * 255)).abs().max()) < 1e-4   # an 8-bit crop could hold it
        if method == "fgsm":    # one step of eps on every pixel, wherever [0, 1] leaves room
            step = (adv - clean).abs()
            room = ((clean - eps >= 0) & (clean + eps <= 1))
            assert torch.allclose(step[room], torch.full_like(step[room], eps), atol=1e-6)
        else:                   # PGD moves every crop's P(fake) away from its label
            before, after = _p_fake(effb2, clean), _p_fake(effb2, adv)
            moved = (before - after) if label == 1 else (after - before)
            assert (moved > 0).all(), (label, before, after)
        assert torch.equal(adv, perturb(effb2, clean, label, attack, start))   # the same start, the same crops


def test_pgd_beats_fgsm_and_a_larger_budget_beats_a_smaller_one(effb2, crops):
    import torch

    from dfbench.scoring import to_model_input

    images, labels = crops
    fakes = to_model_input(images[[i for i, y in enumerate(labels) if y == 1]], "cpu")
    start = torch.zeros_like(fakes)

    def after(method: str, eps: float) -> float:
        attack = Attack(method, eps, 1 if method == "fgsm" else 10, eps if method == "fgsm" else eps / 4, False)
        return float(_p_fake(effb2, perturb(effb2, fakes, 1, attack, start)).mean())

    assert after("pgd", 4 / 255) <= after("fgsm", 4 / 255)
    assert after("pgd", 8 / 255) <= after("pgd", 1 / 255) < float(_p_fake(effb2, fakes).mean())


@pytest.mark.parametrize("key", ["effb2", "meso4", pytest.param("xception", marks=pytest.mark.slow),
                                 pytest.param("capsule", marks=pytest.mark.slow),
                                 pytest.param("sbi", marks=pytest.mark.slow),
                                 pytest.param("deepfeaturex", marks=pytest.mark.slow),
                                 pytest.param("mesoinception4", marks=pytest.mark.slow)])
def test_the_attack_sees_what_is_scored_the_adapters_own_preprocessing_and_network(key: str):
    """`forward_grad` is the function `predict` scores (the same normalisation and network), with a gradient that
    reaches the input (random weights; the next test shows the comparison fails on a wrong input)."""
    import torch

    from dfbench.detectors import get_detector

    adapter = get_detector(key)
    adapter.load("random", "cpu", "fp32")
    size = adapter.card.input_size
    x = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(1), requires_grad=True)
    graded = adapter.scores(adapter.forward_grad(x)).reshape(-1)
    assert torch.allclose(graded.detach(), adapter.predict(x.detach()), atol=1e-5)
    (gradient,) = torch.autograd.grad(graded.sum(), x)
    assert torch.isfinite(gradient).all() and float(gradient.abs().sum()) > 0


def test_the_preprocessing_check_fails_on_a_wrong_input(effb2, crops):
    """What the check above compares would differ if the attack saw BGR or unnormalised crops (demo weights)."""
    import torch

    from dfbench.scoring import to_model_input

    x = to_model_input(crops[0], "cpu")
    scored = effb2.predict(x)
    assert torch.allclose(effb2.scores(effb2.forward_grad(x)).detach().reshape(-1), scored, atol=1e-5)
    with torch.no_grad():
        bgr = effb2.scores(effb2.forward_grad(x.flip(1))).reshape(-1)
        raw = effb2.scores(effb2.model(x.contiguous(memory_format=torch.channels_last))).reshape(-1)
    assert float((bgr - scored).abs().max()) > 1e-3 and float((raw - scored).abs().max()) > 1e-3


def test_an_attack_is_only_the_last_step_of_a_chain():
    assert Cell("h264_crf", 23, (("pgd", 4),)).attack.eps == pytest.approx(4 / 255)
    with pytest.raises(ConfigError, match="can only end a chain"):
        Cell("pgd", 4, (("h264_crf", 23),))


def test_transfer_cells_need_a_surrogate():
    with pytest.raises(ConfigError, match="--surrogate KEY"):
        Attacker(load_suite("adversarial-transfer"), {})


def test_scoring_attack_cells_without_an_attacker_is_an_error(crops, effb2):
    from dfbench.faces import SampleCrops
    from dfbench.scoring import start

    images, _ = crops
    gathered = SampleCrops("s", ("none-0", "pgd-4"), [0], images[:2], [("none-0", 0), ("pgd-4", 0)],
                           {("none-0", 0): 1, ("pgd-4", 0): 1}, {})
    with pytest.raises(ConfigError, match="needs an attacker"):
        start(effb2, gathered)


def test_twin_cells_share_one_search_and_the_clean_crops(small_demo: Path, effb2):
    from dfbench.faces.finder import MTCNNFinder
    from dfbench.gather import find_and_cut
    from dfbench.timing import StageClock
    from dfbench.video.engine import CellPlan

    calls = []

    class Counting(MTCNNFinder):
        def find(self, frame):
            calls.append(1)
            return super().find(frame)

    cells = [Cell("none", 0), Cell("fgsm", 4), Cell("pgd", 8), Cell("lighten", 1)]
    plans = [CellPlan(c.id, c.steps(0, "fake/clip_003")) for c in cells]
    got = find_and_cut("fake/clip_003", Counting(), effb2.card.crop, plans, small_demo / "fake" / "clip_003.mp4",
                       [3, 20], None, StageClock())
    assert len(calls) == 2 * 2          # two frames, for the clean cell (shared by the attacks) and lighten
    by_cell = {c.id: got.crops[[i for i, (o, _) in enumerate(got.owners) if o == c.id]] for c in cells}
    assert len(by_cell["pgd-8"]) == 2
    assert np.array_equal(by_cell["none-0"], by_cell["pgd-8"]) and np.array_equal(by_cell["none-0"],
                                                                                  by_cell["fgsm-4"])
    assert not np.array_equal(by_cell["none-0"], by_cell["lighten-1"])


def test_a_run_attacks_its_own_detector_keeps_only_clean_crops_and_names_its_surrogate(small_demo: Path,
                                                                                     tmp_path: Path):
    from dfbench.api import run
    from dfbench.config import RunConfig
    from dfbench.pipeline import prepare

    suite = tmp_path / "adv.yaml"
    suite.write_text("name: adv\nversion: 1\nmedia: [video]\ncells: [none, {op: pgd, level: 8}, "
                     "{op: pgd_transfer, level: 8}]\n")
    options = dict(detector="effb2", suite=str(suite), dataset=str(small_demo / "manifest.csv"), frames=2,
                   device="cpu", keep_crops=True, surrogate="meso4", surrogate_weights="random", weights="demo")
    summary = run(out=tmp_path / "run", **options)
    table = summary.results.metrics(("suite",))
    auc = table[table.metric == "auc"].set_index("cell")["value"]
    assert auc["pgd-8"] < auc["none-0"]
    prep = prepare(RunConfig(out=tmp_path / "run", **options))   # type: ignore[arg-type]
    assert prep.provenance["identity"]["surrogate"]["detector"] == "meso4"
    kept = prep.gatherer.kept("fake/clip_003", small_demo / "fake" / "clip_003.mp4", list(prep.suite.cells))
    assert kept is not None
    crops = kept[0]
    by_cell = {c: crops.crops[[i for i, (o, _) in enumerate(crops.owners) if o == c]] for c in crops.cells}
    assert np.array_equal(by_cell["none-0"], by_cell["pgd-8"])     # kept crops are clean: a second detector
    assert np.array_equal(by_cell["none-0"], by_cell["pgd_transfer-8"])   # attacks them itself
    other = prepare(RunConfig(out=tmp_path / "other", **{**options, "surrogate": "effb2",  # type: ignore[arg-type]
                                                          "surrogate_weights": "demo"}))
    assert other.run_id != prep.run_id


def test_perturb_writes_no_copy_of_an_adversarial_cell(small_demo: Path, tmp_path: Path):
    from dfbench.copies import write_dataset_copies

    report = write_dataset_copies("adversarial", str(small_demo / "manifest.csv"), tmp_path / "copies", limit=2)
    assert report.n_cells == 1 and "pgd-8" in report.skipped and not (tmp_path / "copies" / "pgd-8").exists()


def test_a_wrong_suite_cell_order_is_refused():
    with pytest.raises(ConfigError, match="can only end a chain"):
        parse_suite({"name": "x", "version": 1, "cells": ["none", {"chain": [{"op": "fgsm", "level": 2},
                                                                             {"op": "h264_crf", "level": 23}]}]}, "x")


def test_a_ray_model_actor_attacks_as_the_local_run_does(small_demo: Path, tmp_path: Path):
    """The Ray backend's model actor (its class, in this process) builds its attacker from the labels it is given and
    scores the adversarial cells exactly as a local run does."""
    import torch

    from dfbench.cluster import ModelActor
    from dfbench.config import RunConfig
    from dfbench.pipeline import prepare, score_sample
    from dfbench.timing import StageClock

    threads = torch.get_num_threads()
    suite = tmp_path / "adv.yaml"
    suite.write_text("name: adv\nversion: 1\nmedia: [video]\ncells: [none, {op: pgd, level: 4}]\n")
    config = RunConfig(detector="effb2", suite=str(suite), dataset=str(small_demo / "manifest.csv"), frames=2,
                       device="cpu", weights="demo", out=tmp_path / "run", face_cache=False)
    prep = prepare(config)
    sample = "fake/clip_003"
    path = small_demo / "fake" / "clip_003.mp4"
    local_frames, _ = score_sample(prep, sample, path, list(prep.suite.cells), tmp_path, StageClock())
    try:
        actor = ModelActor(config, "demo", "cpu")
        gathered = prep.gatherer.gather(sample, path, list(prep.suite.cells), tmp_path)
        frames, tasks, _ = actor.score(prep.suite, gathered, prep.attacker.labels)     # type: ignore[union-attr]
    finally:
        torch.set_num_threads(threads)
    assert {t.cell for t in tasks} == {"none-0", "pgd-4"}
    scores = {(f.cell, f.frame): f.score for f in frames}
    assert scores == {(f.cell, f.frame): f.score for f in local_frames}
    assert scores[("pgd-4", frames[-1].frame)] != scores[("none-0", frames[-1].frame)]
