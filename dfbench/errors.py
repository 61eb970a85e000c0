"""The DfbenchError family.

Every error a user can cause is a `DfbenchError`; the CLI prints its message on one line and exits 1.
Each subclass also inherits the matching built-in, so callers can catch `ValueError`, `KeyError` or
`FileNotFoundError` as usual. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class DfbenchError(Exception):
    """Base class of every error dfbench raises on purpose."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a user-facing message must read as written.
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(DfbenchError, ValueError):
    """A suite, a run option or a YAML file is invalid."""


class UnknownNameError(DfbenchError, KeyError):
    """A registry key (detector, operation, suite) does not exist."""


class DatasetError(DfbenchError, ValueError):
    """A manifest or dataset folder is invalid (missing file, duplicate id, bad label, ...)."""


class MissingFileError(DfbenchError, FileNotFoundError):
    """A file the user named does not exist."""


class CheckpointError(DfbenchError, ValueError):
    """A checkpoint cannot be loaded into an adapter (wrong format, wrong architecture, untrusted pickle)."""


class MediaError(DfbenchError, RuntimeError):
    """A media file cannot be decoded or ffmpeg failed on it."""


class TooLargeError(MediaError):
    """An image declares more pixels than can be decoded safely (Pillow's decompression-bomb limit)."""


class StoreError(DfbenchError, RuntimeError):
    """The score store cannot be opened or belongs to another run."""


class OutputPathError(DfbenchError, OSError):
    """An output folder or file the user named cannot be written (checked before any work)."""


class DiskSpaceError(DfbenchError, OSError):
    """The disk is full or dfbench's working files would exceed --work-limit; the run stops cleanly."""


class DetectorOutputError(DfbenchError, ValueError):
    """An adapter returned something that is not a P(fake) per input."""
