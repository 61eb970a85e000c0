"""``timm:<name>``: any timm model with a 2-class head, input size and normalisation from timm's config.

The key is resolved on first use: ``--detector timm:convnext_tiny`` registers an adapter for that model.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from dfbench.detectors.base import DetectorAdapter, DetectorCard
from dfbench.detectors.registry import DETECTORS
from dfbench.errors import UnknownNameError
from dfbench.faces.crop import CropSpec

if TYPE_CHECKING:
    import torch

PREFIX = "timm:"


def timm_adapter(key: str) -> type[DetectorAdapter]:
    """An adapter class for ``timm:<name>``; an unknown timm name is an UnknownNameError with near names."""
    import timm

    name = key[len(PREFIX):]
    if name not in timm.list_models():
        near = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(PREFIX + n for n in near)}?" if near else ""
        raise UnknownNameError(f"timm has no model {name!r}.{hint} See timm.list_models().")
    cfg = timm.models.get_pretrained_cfg(name)
    size = int(cfg.input_size[-1]) if cfg and cfg.input_size else 224
    mean = tuple(cfg.mean) if cfg and cfg.mean else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg and cfg.std else (0.229, 0.224, 0.225)
    card = DetectorCard(
        key=key, title=f"timm {name}, 2-class head", reference="timm (huggingface/pytorch-image-models)",
        input_size=size, mean=mean, std=std, crop=CropSpec(size=size, scale=1.3, square=True),  # type: ignore[arg-type]
        output="softmax over 2 logits, index 1 = fake", formats=(f"state dict with timm {name} keys",),
        verified="generic adapter: input size and normalisation from timm's pretrained config",
    )

    def build(self: DetectorAdapter) -> torch.nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=2)

    return type(f"Timm_{name}", (DetectorAdapter,), {"card": card, "build": build,
                                                     "__doc__": f"timm {name} with a 2-class head."})


DETECTORS.add_prefix(PREFIX, timm_adapter)
