"""Operations applied to every copy of a test set: ffmpeg filters, Python per-frame steps, encoders.

Importing this package registers every shipped operation and every platform profile.
"""

from dfbench.perturbations import adversarial as _adversarial  # noqa: F401  (registers the ops)
from dfbench.perturbations import codecs as _codecs  # noqa: F401
from dfbench.perturbations import deeperforensics as _deeperforensics  # noqa: F401
from dfbench.perturbations import dfx_sn as _dfx_sn  # noqa: F401
from dfbench.perturbations import edits as _edits  # noqa: F401
from dfbench.perturbations import image_ops as _image_ops  # noqa: F401
from dfbench.perturbations import recapture as _recapture  # noqa: F401
from dfbench.perturbations import video_ops as _video_ops  # noqa: F401
from dfbench.perturbations.base import (
    OPERATIONS,
    EncodeStep,
    FilterStep,
    FrameStep,
    Operation,
    derive_seed,
    format_level,
)
from dfbench.perturbations.platforms import register_profiles

register_profiles()

__all__ = ["OPERATIONS", "EncodeStep", "FilterStep", "FrameStep", "Operation", "derive_seed", "format_level"]
