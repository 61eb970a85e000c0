"""One generic registry for detectors, operations and datasets.

A plug-in registers itself with the registry's decorator; that is the only place its key is written.
Lookups of unknown keys fail with the near names and the command that lists the valid ones.
Entries can also resolve lazily: a `loader` callable imports the module that defines a key on demand
(detector modules import torch, which must not happen for `dfbench --help`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dfbench.errors import ConfigError, UnknownNameError

T = TypeVar("T")
KEY_PATTERN = re.compile(r"^[a-z0-9_]+(:[A-Za-z0-9_.\-/]+)?$")


class Registry(Generic[T]):
    """A mapping from plug-in key to object, filled by decorators.

    Args:
        kind: what the entries are, used in error messages ("detector", "operation").
        list_command: the CLI command that lists the entries, named in error messages.
        loader: called with a key that is not registered yet; it may import the module that
            registers it. It returns nothing.
        discover: returns every key that `loader` can resolve, for listings.
    """

    def __init__(
        self,
        kind: str,
        list_command: str,
        loader: Callable[[str], None] | None = None,
        discover: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._discover = discover

    def register(self, key: str) -> Callable[[T], T]:
        """Decorator that registers `obj` under `key`; a duplicate key is an error."""
        if not KEY_PATTERN.match(key):
            raise ConfigError(f"Invalid {self.kind} key {key!r}: keys are lower-case [a-z0-9_]+.")

        def decorate(obj: T) -> T:
            if key in self._entries and self._entries[key] is not obj:
                raise ConfigError(f"{self.kind.capitalize()} {key!r} is registered twice.")
            self._entries[key] = obj
            return obj

        return decorate

    def add(self, key: str, obj: T) -> T:
        """Register `obj` under `key` without a decorator."""
        return self.register(key)(obj)

    def get(self, key: str) -> T:
        """Return the entry for `key`, loading it lazily; unknown keys raise `UnknownNameError`."""
        if not isinstance(key, str):   # a YAML list or number where a name belongs
            raise UnknownNameError(f"The {self.kind} name must be text, got {key!r}. See '{self.list_command}'.")
        if key not in self._entries and self._loader is not None:
            self._loader(key)
        if key not in self._entries:
            raise UnknownNameError(self.unknown_message(key))
        return self._entries[key]

    def names(self) -> list[str]:
        """Every key, registered or discoverable, sorted."""
        found = set(self._entries)
        if self._discover is not None:
            found.update(self._discover())
        return sorted(found)

    def __contains__(self, key: object) -> bool:
        try:
            self.get(str(key))
        except UnknownNameError:
            return False
        return True

    def unknown_message(self, key: str) -> str:
        """The one-line error for an unknown key, with near names."""
        names = self.names()
        near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        return f"Unknown {self.kind} {key!r}.{hint} See '{self.list_command}'."
