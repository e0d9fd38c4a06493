"""Typed dataclass configs as plain data: to and from nested dicts of JSON types, with
overrides from files or ``KEY=VALUE`` strings that fail on unknown keys and wrong types.

Ground layer: every config (training, models, weights' sidecars) goes through these.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from sdmtalk.errors import InputError


def to_dict(obj) -> dict:
    """A dataclass as nested dicts of JSON types (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls, data: dict, source: str = "config"):
    """Build ``cls`` from defaults overridden by ``data``; unknown keys raise InputError."""
    return override(cls(), data, source)


def override(obj, data: dict, source: str, prefix: str = ""):
    """A copy of dataclass ``obj`` with the values of ``data`` (nested dicts) replacing its own."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a table of keys")
    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in data.items():
        name = prefix + key
        if key not in known:
            raise InputError(f"{source}: unknown config key '{name}' (known here: "
                             f"{', '.join(sorted(known))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = override(current, value, source, name + ".")
        else:
            changes[key] = _check_type(value, hints[key], name, source)
    return dataclasses.replace(obj, **changes)


def _check_type(value: Any, hint, name: str, source: str):
    """``value`` converted to the field type ``hint`` (int -> float, list -> tuple), or InputError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(value, inner, name, source)
    if origin is typing.Literal:
        if value in args:
            return value
        raise InputError(f"{source}: '{name}' must be one of {list(args)}, not {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{source}: '{name}' must be a list, not {value!r}")
        inner = list(args) if origin is tuple and Ellipsis not in args else [args[0]] * len(value)
        if len(inner) != len(value):
            raise InputError(f"{source}: '{name}' needs {len(inner)} values, got {len(value)}")
        items = [_check_type(v, h, f"{name}[{i}]", source) for i, (v, h) in enumerate(zip(value, inner, strict=True))]
        return origin(items)
    if hint in (int, float, str, bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise InputError(f"{source}: '{name}' must be {hint.__name__}, not {value!r}")
    return value


def parse_override(text: str) -> dict:
    """``"train.steps=100"`` -> ``{"train": {"steps": 100}}``. Values are read as JSON
    literals when they parse (numbers, true/false, [lists], null), a comma list becomes a
    list, anything else is a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"config override '{text}' is not KEY=VALUE (e.g. train.steps=100)")
    value = _parse_value(raw.strip())
    parts = key.strip().split(".")
    nested: dict = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass  # not a JSON literal: a bare word or a comma list
    if "," in raw:
        return [_parse_value(p.strip()) for p in raw.split(",")]
    return raw


def merge_nested(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_nested(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
