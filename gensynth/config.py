"""Frozen-dataclass configs and `key=value` overrides checked against them.

An override names a field by its dotted path (`model.channels=64`, `train.num_steps=500`);
the value is parsed by the field's annotated type. An unknown key or a value of the wrong
type is a one-line `ValueError` naming the key.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Example:
...     steps: int = 10  # number of steps
...     mult: tuple[int, ...] = (1, 2)  # channel multipliers
>>> apply_overrides(Example(), ["steps=5", "mult=1,2,4"])
Example(steps=5, mult=(1, 2, 4))
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def _parse_value(text: str, annotation: Any) -> Any:
    """Parses `text` as a value of type `annotation` (int, float, bool, str, tuple, Optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return _parse_value(text, non_none[0])
    if origin is tuple:
        items = [s for s in text.strip().strip("()[]").split(",") if s.strip()]
        element = args[0] if args else str
        return tuple(_parse_value(item, element) for item in items)
    if annotation is bool:
        return _parse_bool(text)
    if annotation is int:
        return int(text)
    if annotation is float:
        return float(text)
    if annotation is str:
        return text
    raise ValueError(f"cannot parse a value of type {annotation!r}")


def apply_overrides(config: Any, overrides: typing.Sequence[str]) -> Any:
    """Returns `config` with `key=value` overrides applied (dotted keys reach nested configs).

    Args:
      config: a frozen dataclass instance, possibly holding nested dataclasses.
      overrides: strings `"path.to.field=value"`.

    Returns:
      A new config of the same type.

    Raises:
      ValueError: naming the override when the key is unknown or the value has the wrong type.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected key=value")
        try:
            config = _replace_path(config, key.strip().split("."), text)
        except (ValueError, TypeError) as error:
            raise ValueError(f"override {key!r}: {error}") from None
    return config


def _replace_path(config: Any, path: list[str], text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config)}
    name = path[0]
    if name not in fields:
        raise ValueError(f"unknown key (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(type(config))
    current = getattr(config, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            raise ValueError("names a section; give one of its fields")
        return dataclasses.replace(config, **{name: _replace_path(current, path[1:], text)})
    if len(path) > 1:
        raise ValueError(f"{name!r} has no sub-keys")
    return dataclasses.replace(config, **{name: _parse_value(text, hints[name])})


def to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready nested dict."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuilds a (nested) config dataclass of type `cls` from `to_dict` output.

    Raises:
      ValueError: on keys the dataclass does not have.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    values = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            values[name] = from_dict(annotation, value)
        elif isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)
