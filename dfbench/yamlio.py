"""Strict YAML: duplicate keys, unknown keys and syntax errors are one-line ConfigErrors naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from dfbench.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys."""


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
    """Parse YAML with duplicate keys rejected; syntax errors become one-line ConfigErrors."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Invalid YAML in {where}{line}: {getattr(exc, 'problem', exc)}") from None


def check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise a ConfigError for the first key of `data` not in `allowed`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"Unknown key {key!r} in {where}. Allowed: {', '.join(sorted(allowed))}.")
