"""Strict YAML: duplicate keys, unknown keys and syntax errors are one-line ConfigErrors naming the key.

Suite and platform files are small, so the loader also bounds what a hostile file can cost before any
validation runs: aliases are refused (a few hundred bytes of nested aliases expand to gigabytes, "billion
laughs"), and so are files over `MAX_BYTES` and nesting deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from dfbench.errors import ConfigError

MAX_BYTES = 1_000_000   # ours: the largest shipped suite is under 10 KB
MAX_DEPTH = 32          # ours: suites nest four levels (cells, chain, step, value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys, aliases and deep nesting."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML alias '*{event.anchor}' (line {event.start_mark.line + 1}) is not allowed; "
                              "write the value out.")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels (line {mark.line + 1}).")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"Duplicate key {key!r} in YAML (line {key_node.start_mark.line + 1}).")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML with duplicate keys, aliases and deep nesting rejected; syntax errors become one-line
    ConfigErrors."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{where} is {len(text)} characters long; YAML files of more than {MAX_BYTES} are refused.")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"Invalid YAML in {where}{line}: {problem}") from None


def check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise a ConfigError for the first key of `data` not in `allowed`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"Unknown key {key!r} in {where}. Allowed: {', '.join(sorted(allowed))}.")


def typed_field(data: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None,
                low: int | None = None, high: int | None = None) -> Any:
    """``data[key]`` (or `default` when absent) checked to be a `kind` within [low, high]; ``int`` refuses
    booleans, text and fractions. A wrong value is a ConfigError naming the field and what it got."""
    value = data.get(key, default)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        wanted = {int: "a whole number", str: "text", list: "a list", bool: "true or false"}.get(kind, kind.__name__)
        raise ConfigError(f"{key!r} of {where} must be {wanted}, got {value!r}.")
    if isinstance(value, int) and (low is not None and value < low or high is not None and value > high):
        raise ConfigError(f"{key!r} of {where} must be in [{low}, {high}], got {value}.")
    return value
