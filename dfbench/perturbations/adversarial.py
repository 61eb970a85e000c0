"""Adversarial noise: white-box L-infinity attacks on the detector under test, made on the face crops it scores.

These cells are a different kind from every other operation. The video is left as it is (the cell's frames and
crops are the clean ones, found and cut as for ``none``); when the crops are scored, each one is attacked through
the adapter's own preprocessing and network with gradients, and the attacked crop is what gets scored. So:

- the attack depends on the detector: it is made again for every detector, in the process that holds the model,
  and never stored. The face cache keeps an attack cell's *clean* crops (the same for every detector with that
  crop spec), so a second detector that reads kept crops attacks them itself and never sees the first one's
  attacked crops;
- ``dfbench perturb`` writes no copy for these cells (there is no detector-free copy to write), and
  ``dfbench preview`` shows their clean frame;
- the transfer cells (``*_transfer``) attack a surrogate detector (``--surrogate``) and score the run's detector
  on the result: the crops are the run's, resized to the surrogate's input size inside the attack.

The attack is untargeted against the sample's true label: it lowers the log-odds of P(fake) of a fake and raises a
real's (a margin loss, as Carlini & Wagner, IEEE S&P 2017, use on logits: cross-entropy's gradient vanishes on the
crops a detector is sure of, and no step would move them), so fakes are pushed towards "real" and reals towards
"fake". Every crop is attacked on its own, so the fakes' scores are those a fakes-only evasion attack would give.
Budgets are in grey levels of the 8-bit crop (eps 1, 2, 4, 8 / 255), and the attacked crop is put back on whole
grey levels within the budget (`to_grey_levels`): it is a crop an 8-bit image could hold.

- FGSM (Goodfellow, Shlens & Szegedy, ICLR 2015): one step of eps along the sign of the gradient.
- PGD (Madry et al., ICLR 2018): a uniform random start in the eps-ball, then `PGD_STEPS` signed-gradient steps of
  `PGD_STEP_FRACTION` x eps, each projected back onto the ball and [0, 1]. 10 steps of eps / 4 are ours (their
  sum, 2.5 eps, lets a path cross the ball). Each crop keeps the best of its iterates, as AutoPGD (Croce & Hein,
  ICML 2020) does: on the demo detector a fixed-size step can overshoot (one real crop's log-odds went from -3 to
  +20 and then to -375 over ten steps at eps 8/255), and the last iterate alone would undo the attack.

Cost: FGSM is one forward and backward pass per crop before the scoring pass, PGD-10 ten and one more forward
(README "Speed" has the measured seconds per crop).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dfbench.errors import ConfigError
from dfbench.perturbations.base import FilterStep, Level, Step, derive_seed, operation

if TYPE_CHECKING:
    import torch

    from dfbench.config import SuiteConfig
    from dfbench.detectors import DetectorAdapter

PGD_STEPS = 10
PGD_STEP_FRACTION = 0.25
EPS_LEVELS = (1, 2, 4, 8)            # grey levels of 255, as the issue and the common L-inf budgets for faces


@dataclass(frozen=True)
class Attack:
    """One attack: `method` (``fgsm`` or ``pgd``), budget `eps` in [0, 1] units, `steps` of `step_size`, a random
    start or not, and whether it is made on the surrogate detector (`transfer`)."""

    method: str
    eps: float
    steps: int
    step_size: float
    random_start: bool
    transfer: bool = False


def _attack_of(method: str, transfer: bool):
    def of(level: Level) -> Attack:
        eps = float(level) / 255.0
        if method == "fgsm":
            return Attack("fgsm", eps, 1, eps, False, transfer)
        return Attack("pgd", eps, PGD_STEPS, PGD_STEP_FRACTION * eps, True, transfer)

    return of


def _register(name: str, method: str, transfer: bool, what: str) -> None:
    def build(level: Level, seed: int) -> list[Step]:
        return [FilterStep("null")]      # the video is untouched: the crops are attacked when they are scored

    build.__doc__ = what
    source = ("FGSM, Goodfellow et al. ICLR 2015: one signed-gradient step of eps" if method == "fgsm" else
              f"PGD, Madry et al. ICLR 2018: random start, {PGD_STEPS} steps of eps/4 (steps and size ours)")
    operation(name, category="adversarial", version=1, unit="eps_255", levels=EPS_LEVELS, level_range=(1, 64),
              stochastic=method == "pgd", short=f"{name.replace('_transfer', ' tr')} {{level}}/255",
              source=source + "; L-inf on the scored face crops, untargeted against the true label, rounded to "
                              "8-bit" + ("; made on --surrogate, scored on the run's detector" if transfer else ""),
              settings={"loss": "margin on the log-odds of P(fake)"}, attack=_attack_of(method, transfer))(build)


_register("fgsm", "fgsm", False, "White-box FGSM on the detector under test, L-inf eps in /255, on its face crops.")
_register("pgd", "pgd", False, f"White-box PGD-{PGD_STEPS} on the detector under test, L-inf eps in /255, on its "
          "face crops.")
_register("fgsm_transfer", "fgsm", True, "FGSM made on the --surrogate detector, scored on the run's detector.")
_register("pgd_transfer", "pgd", True, f"PGD-{PGD_STEPS} made on the --surrogate detector, scored on the run's "
          "detector.")


def perturb(model: DetectorAdapter, crops: torch.Tensor, label: int, attack: Attack,
            start: torch.Tensor | None = None) -> torch.Tensor:
    """The attacked copy of `crops` (float N x 3 x H x W in [0, 1], on the model's device) for a sample of `label`.

    Args:
        model: the adapter whose P(fake) is attacked (the run's detector, or the surrogate).
        start: uniform noise in [-1, 1] of the crops' shape, scaled by eps for PGD's random start.

    Returns:
        The attacked crops, rounded to whole grey levels, within eps of `crops` and in [0, 1].
    """
    import torch
    import torch.nn.functional as F

    clean = crops.detach().float()
    target = torch.full((clean.shape[0],), float(label), device=clean.device)
    size = model.card.input_size

    def losses(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return (1 - 2 * target) * model.fake_log_odds(model.forward_grad(x)).reshape(-1)

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x, clean - attack.eps), clean + attack.eps).clamp(0.0, 1.0)

    adv = clean.clone()
    if attack.random_start and start is not None:
        adv = project(clean + attack.eps * start.to(clean.device, clean.dtype))
    keep_best = attack.method == "pgd"
    best, best_loss = adv.clone(), torch.full((clean.shape[0],), -torch.inf, device=clean.device)
    for _ in range(attack.steps):
        adv.requires_grad_(True)
        loss = losses(adv)
        (gradient,) = torch.autograd.grad(loss.sum(), adv)
        if keep_best:
            better = loss.detach() > best_loss
            best[better], best_loss = adv.detach()[better], torch.maximum(best_loss, loss.detach())
        adv = project(adv.detach() + attack.step_size * gradient.sign())
    if keep_best:
        better = losses(adv).detach() > best_loss
        best[better] = adv[better]
        adv = best
    return to_grey_levels(clean, adv.detach(), attack.eps)


def to_grey_levels(clean: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """`adv` on whole grey levels: each pixel's change from `clean` (which is on them) rounded *away* from zero, up
    to the budget, so every pixel the attack moved keeps its direction and stays within eps and [0, 1] (ours:
    rounding to the nearest level would zero most of PGD's changes at eps 1/255, which are under half a level)."""
    import torch

    levels = torch.clamp(torch.ceil((adv - clean).abs() * 255.0 - 1e-4), 0, round(eps * 255.0))
    return (torch.round(clean * 255.0) + torch.sign(adv - clean) * levels).clamp(0, 255) / 255.0


class Attacker:
    """Attacks the crops of a suite's adversarial cells as they are scored (`dfbench.scoring.start`).

    Args:
        suite: the run's suite (its adversarial cells and seed).
        labels: sample id -> label (1 fake, 0 real), what the untargeted attack works against.
        surrogate: the loaded adapter that transfer cells are made on (None: the suite has none).
    """

    def __init__(self, suite: SuiteConfig, labels: Mapping[str, int], surrogate: DetectorAdapter | None = None):
        self.attacks = {c.id: c.attack for c in suite.cells if c.attack is not None}
        self.seeds = {c.id: (c.parts[-1][0], c.parts[-1][1]) for c in suite.cells if c.attack is not None}
        self.suite_seed = suite.seed
        self.labels = dict(labels)
        self.surrogate = surrogate
        if surrogate is None and any(a.transfer for a in self.attacks.values()):
            raise ConfigError(f"Suite {suite.name!r} has transfer attacks; name the detector they are made on with "
                              "--surrogate KEY (and --surrogate-weights FILE).")

    def label(self, sample_id: str) -> int:
        """The true label of `sample_id` (1 fake, 0 real)."""
        if sample_id not in self.labels:
            raise ConfigError(f"No label for sample {sample_id!r}: an attack needs the true label.")
        return int(self.labels[sample_id])

    def model_for(self, cell_id: str, scored: DetectorAdapter) -> DetectorAdapter:
        """The adapter the cell's attack is made on: the surrogate for a transfer cell, else the `scored` one."""
        return self.surrogate if self.attacks[cell_id].transfer and self.surrogate is not None else scored

    def start(self, cell_id: str, sample_id: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        """PGD's random start for all of one sample's crops in the cell (uniform in [-1, 1], on the CPU), drawn from
        the cell's seed for that sample, so it does not depend on the batch size or the device; None for FGSM."""
        import torch

        if not self.attacks[cell_id].random_start:
            return None
        op, level = self.seeds[cell_id]
        generator = torch.Generator().manual_seed(derive_seed(self.suite_seed, sample_id, op, level))
        return torch.rand(shape, generator=generator) * 2 - 1


def load_surrogate(key: str | None, weights: str | None, device: str, precision: str,
                   trust: bool = False) -> DetectorAdapter | None:
    """The surrogate detector of transfer attacks, loaded (None when no `key` is given)."""
    if key is None:
        return None
    from dfbench.detectors import get_detector

    adapter = get_detector(key)
    adapter.load(weights if weights is not None else ("demo" if adapter.card.demo_weights else "random"), device,
                 precision, trust)
    return adapter
