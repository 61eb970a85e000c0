"""Loading checkpoint files safely and fitting their state dicts to a model.

Checkpoints are code: `torch.load(weights_only=True)` is the default, and a file that needs full
unpickling (a whole pickled model) is refused unless the user passes ``--trust-checkpoint``.
"""

from __future__ import annotations

import logging
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfbench.cache import cache_root
from dfbench.errors import CheckpointError, MissingFileError
from dfbench.hashing import file_sha256

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
STRIP_PREFIXES = ("module.", "net.", "model.")


@dataclass(frozen=True)
class Loaded:
    """A checkpoint read from disk.

    Attributes:
        obj: what the file holds (a state dict, a dict around one, or for trusted pickles the
            state dict extracted from the unpickled object).
        converted: the plain state-dict file written for a trusted pickle ('' otherwise); later
            runs read that file instead of unpickling again.
    """

    obj: Any
    converted: str = ""


def load_checkpoint(path: Path, trust: bool = False, aliases: Mapping[str, type] | None = None) -> Loaded:
    """Read a torch checkpoint on the CPU, safely by default.

    A file that `torch.load(weights_only=True)` refuses holds pickled Python objects (a whole model).
    It is read only with `trust`; its state dict is then saved once as a plain file in the cache,
    keyed by the file's sha256, and every later load of the same file reads that instead.

    Args:
        path: the file.
        trust: allow full unpickling, which can run arbitrary code from the file.
        aliases: ``"module.Class"`` -> class, for pickles that name modules of the authors' code
            (FaceForensics++ pickles name ``network.models.TransferModel``).

    Raises:
        CheckpointError: the file needs unpickling and `trust` is False, or it is not a torch file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Weights file {str(path)!r} does not exist.")
    try:
        return Loaded(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[-1][:160]
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a readable torch checkpoint: {exc}".splitlines()[0]) from None
    converted = cache_root() / "converted" / f"{file_sha256(path)}.pt"
    if converted.is_file():
        return Loaded(torch.load(converted, map_location="cpu", weights_only=True), str(converted))
    if not trust:
        raise CheckpointError(
            f"{path.name} is not a plain weights file: loading it would unpickle Python objects, which can run "
            f"code ({reason}). If you trust where it came from, pass --trust-checkpoint: it is converted once "
            "to a plain state dict and later runs load that."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_aliasing_pickle(aliases or {}))
    except Exception as exc:  # noqa: BLE001 - any failure of a trusted unpickle is reported as one line
        raise CheckpointError(f"{path.name} could not be unpickled: {exc.__class__.__name__}: {exc}") from None
    state = extract_state_dict(obj)
    converted.parent.mkdir(parents=True, exist_ok=True)
    tmp = converted.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(converted)
    log.info("converted %s to the plain state dict %s", path, converted)
    return Loaded(state, str(converted))


def _aliasing_pickle(aliases: Mapping[str, type]) -> types.ModuleType:
    """A pickle module whose unpickler resolves the given ``module.Class`` names to stand-in classes."""

    class AliasingUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            target = aliases.get(f"{module}.{name}")
            return target if target is not None else super().find_class(module, name)

    module = types.ModuleType("dfbench_aliasing_pickle")
    module.Unpickler = AliasingUnpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: AliasingUnpickler(fh, **kw).load()  # type: ignore[attr-defined]
    module.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL")})
    return module


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: plain, under a usual key, or a whole module's."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
    raise CheckpointError(
        f"No state dict found in the checkpoint (a {type(obj).__name__}); expected a mapping of tensors, "
        f"possibly under one of: {', '.join(STATE_DICT_KEYS)}."
    )


def strip_prefixes(state: Mapping[str, Any], prefixes: tuple[str, ...] = STRIP_PREFIXES) -> dict[str, Any]:
    """Remove wrapper prefixes (``module.`` from DataParallel, ``net.``) shared by every key.

    Example:
        >>> strip_prefixes({"module.net.a": 1, "module.net.b": 2})
        {'a': 1, 'b': 2}
    """
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def fit_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load `state` into `model` strictly; a mismatch names the missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_first(shapes)})")
        raise CheckpointError(f"The weights do not fit {what}: " + "; ".join(parts) + ".")
    model.load_state_dict(dict(state), strict=True)


def _first(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")
