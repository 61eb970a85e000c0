"""Meso4 (Afchar et al., WIFS 2018): the four-convolution MesoNet; reads the authors' Keras ``Meso4_*.h5``."""

from __future__ import annotations

from dfbench.detectors._mesonet import MesoNetAdapter, mesonet_card
from dfbench.detectors.registry import register_detector


@register_detector
class Meso4(MesoNetAdapter):
    """Meso4 with the authors' weights; P(fake) = 1 - sigmoid."""

    card = mesonet_card("meso4", inception=False)
    inception = False
