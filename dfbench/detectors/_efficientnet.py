"""Key mappings from other EfficientNet implementations to timm's (reference/detectors.md sections 3 and 4).

* lukemelas ``efficientnet_pytorch`` (SBI's backbone) maps exactly to timm ``tf_efficientnet_bN`` (TF "same"
  padding, BatchNorm eps 1e-3); its flat ``_blocks.i`` become ``blocks.stage.j``.
* torchvision ``efficientnet_bN`` maps exactly to timm ``efficientnet_bN`` by state-dict order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfbench.errors import CheckpointError

if TYPE_CHECKING:
    import torch

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Depthwise-separable blocks (expand ratio 1, timm DepthwiseSeparableConv) and inverted residual blocks.
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
       "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}


def is_lukemelas(state: dict[str, Any]) -> bool:
    """Whether a state dict uses efficientnet_pytorch's names (``_conv_stem``, ``_blocks``)."""
    return any(k.startswith("_conv_stem.") for k in state)


def is_torchvision(state: dict[str, Any]) -> bool:
    """Whether a state dict uses torchvision's EfficientNet names (``features.0.0.weight``)."""
    return "features.0.0.weight" in state


def lukemelas_to_timm(state: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Rename efficientnet_pytorch keys to those of the timm model `model` (a ``tf_efficientnet_bN``)."""
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]  # type: ignore[arg-type]
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in _TOP:
            out[f"{_TOP[head]}.{rest}"] = value
            continue
        if head != "_blocks":
            out[key] = value  # unknown: left as is, so the strict fit reports it
            continue
        index, _, rest = rest.partition(".")
        if int(index) >= len(positions):
            raise CheckpointError(f"efficientnet_pytorch block {index} does not exist in {type(model).__name__} "
                                  f"with {len(positions)} blocks: the checkpoint is for another width/depth.")
        stage, j = positions[int(index)]
        block = model.blocks[stage][j]  # type: ignore[index]
        table = _IR if hasattr(block, "conv_pwl") else _DS
        module, _, param = rest.partition(".")
        out[f"blocks.{stage}.{j}.{table.get(module, module)}.{param}"] = value
    return out


def torchvision_to_timm(state: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Map torchvision EfficientNet tensors to timm's by order, checking that every shape agrees."""
    target = model.state_dict()
    if len(state) != len(target):
        raise CheckpointError(f"torchvision-style checkpoint has {len(state)} tensors, the timm model "
                              f"{len(target)}: not the same EfficientNet variant.")
    out = {}
    for (src_key, value), (dst_key, ref) in zip(state.items(), target.items(), strict=True):
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"torchvision key {src_key} {tuple(value.shape)} does not line up with timm "
                                  f"{dst_key} {tuple(ref.shape)}.")
        out[dst_key] = value
    return out
