"""Operations applied to every copy of a test set (video filters, encoders)."""

from dfbench.perturbations import video_ops as _video_ops  # noqa: F401  (registers the ops)
from dfbench.perturbations.base import (
    OPERATIONS,
    EncodeStep,
    FilterStep,
    Operation,
    derive_seed,
    format_level,
)

__all__ = ["OPERATIONS", "EncodeStep", "FilterStep", "Operation", "derive_seed", "format_level"]
