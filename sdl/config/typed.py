"""Typed configuration: build frozen dataclasses from plain mappings, strictly.

Unknown keys and wrong types are rejected with the dotted path of the key
(``train.embedded.num_rows: expected an integer, got 'seven'``), and YAML is read with
YAML 1.2 number rules (``1e-4`` is a float, as DVC reads it), not PyYAML's 1.1 ones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from sdl.safety.errors import UserError

T = TypeVar("T")


class ParamsError(UserError, ValueError):
    """A config entry is missing, unknown, of the wrong type or impossible."""

    exit_status = 3  # nothing ran; running again without fixing params.yaml cannot help


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 and DVC do."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with YAML 1.2 float rules; errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    hints = get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ParamsError(f"{where}: {error}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            try:
                return _coerce(option, value, where)
            except ParamsError as error:
                errors.append(str(error))
        raise ParamsError(f"{where}: {value!r} matches none of {_name(hint)}")
    if hint is type(None):
        if value is None:
            return None
        raise ParamsError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in get_args(hint):
            return value
        raise ParamsError(f"{where}: expected one of {list(get_args(hint))}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        args = get_args(hint)
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ParamsError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ParamsError(f"{where}: expected a string, got {value!r}")
    raise ParamsError(f"{where}: unsupported type {hint!r}")


def _name(hint: Any) -> str:
    return " | ".join(getattr(a, "__name__", str(a)) for a in get_args(hint))
