"""SIGTERM stops dfbench the way Ctrl-C does.

A scheduler, `kill` or a container stop sends SIGTERM. `install` turns it into `Terminated`, a
KeyboardInterrupt, so every cleanup written for Ctrl-C runs for it too: ffmpeg children are killed, the
work folder is removed, the store keeps every committed sample, and the command says how to resume. The
CLI exits 143 (128 + SIGTERM) for it, 130 for Ctrl-C.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere, where signals cannot be set)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(exc: KeyboardInterrupt) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_CODES[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]
