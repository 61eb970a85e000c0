"""MesoInception4 (Afchar et al., WIFS 2018): MesoNet with two inception layers; reads ``MesoInception_*.h5``."""

from __future__ import annotations

from dfbench.detectors._mesonet import MesoNetAdapter, mesonet_card
from dfbench.detectors.registry import register_detector


@register_detector
class MesoInception4(MesoNetAdapter):
    """MesoInception4 with the authors' weights; P(fake) = 1 - sigmoid."""

    card = mesonet_card("mesoinception4", inception=True)
    inception = True
