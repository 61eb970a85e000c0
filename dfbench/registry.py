"""The generic registry of operations and detectors, and the one "unknown name" error of every named choice.

An operation registers itself with ``@operation(name, ...)``, a detector adapter with ``@register_detector`` (its
key is its card's). Lookups of unknown keys fail with `unknown_name`: the near names and the command that lists
the valid ones; suites, face finders, dataset layouts and training recipes fail the same way. Entries can also
resolve lazily: a `loader` callable imports the modules that define keys on demand (nothing imports torch
before it is needed, so ``dfbench --help`` stays fast), and a prefix resolver makes entries for a family of keys
(``timm:<model>``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dfbench.errors import ConfigError, UnknownNameError

T = TypeVar("T")
KEY_PATTERN = re.compile(r"^[a-z0-9_]+(:[A-Za-z0-9_.\-/]+)?$")


def unknown_name(kind: str, key: object, names: Iterable[str], see: str) -> UnknownNameError:
    """The error for a name that is not one of `names`: up to three near names, and where to see them all.

    Example:
        >>> unknown_name("face finder", "mtccn", ["mtcnn", "none"], "dfbench run --help").args[0]
        "Unknown face finder 'mtccn'. Did you mean 'mtcnn'? See 'dfbench run --help'."
    """
    if not isinstance(key, str):   # a YAML list or number where a name belongs
        return UnknownNameError(f"The {kind} name must be text, got {key!r}. See '{see}'.")
    near = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return UnknownNameError(f"Unknown {kind} {key!r}.{hint} See '{see}'.")


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
        self._prefixes: dict[str, Callable[[str], T]] = {}

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

    def replace(self, key: str, obj: T) -> T:
        """Register `obj` under `key`, replacing an entry of that key (a user's platform profile over a shipped
        one)."""
        self._entries.pop(key, None)
        return self.add(key, obj)

    def add_prefix(self, prefix: str, resolve: Callable[[str], T]) -> None:
        """Resolve every key that starts with `prefix` (and is not registered) with ``resolve(key)``, which
        returns the entry or raises `UnknownNameError`."""
        self._prefixes[prefix] = resolve

    def get(self, key: str) -> T:
        """Return the entry for `key`, loading it lazily; unknown keys raise `UnknownNameError`."""
        if not isinstance(key, str):
            raise unknown_name(self.kind, key, [], self.list_command)
        if key not in self._entries and self._loader is not None:
            self._loader(key)
        if key not in self._entries:
            prefix = next((p for p in self._prefixes if key.startswith(p)), None)
            if prefix is None:
                raise UnknownNameError(self.unknown_message(key))
            self.add(key, self._prefixes[prefix](key))
        return self._entries[key]

    def names_registered(self) -> list[str]:
        """The keys registered so far (nothing is loaded)."""
        return sorted(self._entries)

    def names(self) -> list[str]:
        """Every key, registered or discoverable, sorted."""
        discovered = list(self._discover()) if self._discover is not None else []   # may register entries
        return sorted({*self._entries, *discovered})

    def __contains__(self, key: object) -> bool:
        try:
            self.get(str(key))
        except UnknownNameError:
            return False
        return True

    def unknown_message(self, key: str) -> str:
        """The one-line error for an unknown key, with near names."""
        return unknown_name(self.kind, key, self.names(), self.list_command).args[0]
