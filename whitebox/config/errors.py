"""Turning a pydantic ValidationError into one line that names the key, what is allowed and where it came from."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """A config that cannot be used; the message names the key path and what is allowed."""


def format_error(err: ValidationError, root: type[BaseModel], source: str, set_paths: dict[str, str]) -> str:
    """One line: the --set item (or the file) that caused the first problem, its key path and the message."""
    errors = err.errors()
    first = errors[0]
    path = _field_path(root, first["loc"])
    origin = next((f"--set {shown(item)}" for key, item in set_paths.items() if _related(key, path)), source)
    # a value that fits none of a union's members gives one error per member: say them together
    same = [e for e in errors if _field_path(root, e["loc"]) == path]
    if first["type"] == "extra_forbidden":
        allowed = sorted(_walk(root, first["loc"][:-1])[1].model_fields)
        message = f"unknown key {path!r}; allowed keys here: {', '.join(allowed)}"
    elif first["type"] == "value_error":
        message = f"{path}: {first['msg'].removeprefix('Value error, ')}"
    elif first["type"] == "union_tag_invalid":
        ctx = first["ctx"]
        message = f"{path}.{ctx['discriminator'].strip(chr(39))}: unknown value {ctx['tag']!r}; expected one of {ctx['expected_tags']}"
    else:
        prefix = "Input should be "
        msgs = [e["msg"] for e in same]
        if len(msgs) > 1 and all(m.startswith(prefix) for m in msgs):
            msgs = [prefix + " or ".join(dict.fromkeys(m.removeprefix(prefix) for m in msgs))]
        message = f"{path}: {msgs[0]} (got {first.get('input')!r})"
    more = len(errors) - len(same)
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{origin}: {' '.join(shown(line) for line in message.splitlines())}{suffix}"  # one line, whatever pydantic quotes


def section_models(annotation: Any) -> list[type[BaseModel]]:
    """The config models in an annotation: one for a section, several for a union of sections."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    union = typing.get_origin(annotation) in (Union, types.UnionType)
    return [a for a in (typing.get_args(annotation) if union else (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]


def shown(item: str) -> str:
    """An override as typed, escaped where it holds characters that would break the one-line message."""
    return item if item.isprintable() else repr(item)


def _field_path(root: type[BaseModel], loc: tuple) -> str:
    """The dotted key path of an error location, without pydantic's union-member tags."""
    return ".".join(_walk(root, loc)[0]) or "(top level)"


def _walk(root: type[BaseModel], loc: tuple) -> tuple[list[str], Any]:
    """Follow an error location through the config models: (key parts, model reached)."""
    parts: list[str] = []
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif model is None:
            continue  # inside a plain value: a union-member tag such as 'int'
        elif isinstance(model, list):  # a discriminated union of sections: the tag picks one
            model = next((m for m in model if m.model_fields["name"].default == part), None)
        elif part in model.model_fields:
            parts.append(part)
            members = section_models(model.model_fields[part].annotation)
            model = members[0] if len(members) == 1 else (members or None)
        else:
            parts.append(part)  # an unknown key
    return parts, model


def _related(a: str, b: str) -> bool:
    """True when one dotted path lies inside the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")
