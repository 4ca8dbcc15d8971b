"""The config reference (docs/config.md): one markdown table per section, generated from the schema."""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from pydantic import BaseModel

from whitebox.config.errors import section_models
from whitebox.config.schema import ExperimentConfig
from whitebox.config.slots import choices


def config_reference() -> str:
    """Markdown tables of every config key, its type, default and meaning, for every registered variant."""
    sections = []
    for section, field in ExperimentConfig.model_fields.items():
        models = section_models(field.annotation)
        if not models:
            sections.append(f"- `{section}` (default `{field.default}`): {field.description}")
        for model in models:
            title = f"`{section}` (name: {model.model_fields['name'].default})" if len(models) > 1 else f"`{section}`"
            sections += _tables(title, section, model)
    return "\n\n".join(sections) + "\n"


def _tables(title: str, prefix: str, model: type[BaseModel]) -> list[str]:
    """The table of one config model, then one table per nested sub-section (e.g. `treat.es`)."""
    rows = [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    for name, sub in model.model_fields.items():
        inner = section_models(sub.annotation)
        if inner:
            nested += _tables(f"`{prefix}.{name}`", f"{prefix}.{name}", inner[0])
            continue
        default = sub.default_factory() if sub.default_factory else sub.default
        shown = "(required)" if sub.is_required() else default if isinstance(default, str) else json.dumps(default)
        rows.append(f"| `{name}` | {_type_name(sub)} | `{shown}` | {sub.description or ''} |")
    return ["\n".join(rows), *nested]


def _type_name(field: Any) -> str:
    extra = field.json_schema_extra or {}
    if "choices" in extra:  # a name checked against a registry: show what is registered now
        names = " \\| ".join(f"`{name}`" for name in choices(extra["choices"]))
        return f"list of {names}" if typing.get_origin(field.annotation) is list else names
    annotation = field.annotation
    if typing.get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    return (str(annotation).replace("typing.", "").replace("whitebox.config.schema.", "").replace("<class '", "")
            .replace("'>", "").replace("|", "\\|"))
