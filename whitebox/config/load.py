"""Reading a run config: YAML files, dotted --set overrides, validation into one ExperimentConfig."""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from whitebox.config.errors import ConfigError, format_error, shown
from whitebox.config.schema import ALWAYS_READ, ExperimentConfig

MAX_CONFIG_BYTES = 1 << 20  # a config is a few kilobytes; anything this large is another file given by mistake
MAX_CONFIG_NODES = 100_000  # values after YAML aliases are expanded (a "billion laughs" file expands to 10^9)


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply `a.b.c=value` overrides, validate; ConfigError on any problem."""
    return parse_config(read_yaml(path), overrides, source=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping, turning missing files and syntax errors into one-line ConfigErrors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes is not a config (the limit is {MAX_CONFIG_BYTES:,}); give a YAML file")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start} cannot be decoded); give a YAML config such as "
                          "configs/quickstart.yaml") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {' '.join(str(err.problem).split())}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read; a config is a few levels of sections") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    if _expanded_size(data) > MAX_CONFIG_NODES:
        raise ConfigError(f"{path}: its YAML aliases expand to more than {MAX_CONFIG_NODES:,} values; write the values out")
    return data


def _expanded_size(node: Any, seen: dict[int, int] | None = None) -> int:
    """How many values `node` holds once aliases are expanded (a shared node counts every time it is reached)."""
    seen = {} if seen is None else seen
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) not in seen:
        seen[id(node)] = 0  # a cycle (a recursive alias) counts as one more value, not forever
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        seen[id(node)] = 1 + sum(_expanded_size(child, seen) for child in children)
    return seen[id(node)]


def parse_config(
    data: dict[str, Any], overrides: typing.Sequence[str] = (), source: str = "config"
) -> ExperimentConfig:
    """Validate a raw mapping plus overrides into an ExperimentConfig."""
    data = copy.deepcopy(data)
    set_paths = {}
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value, item)
        set_paths[key] = item
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_error(err, ExperimentConfig, source, set_paths)) from None


def config_to_dict(cfg: ExperimentConfig, sections: typing.Iterable[str] | None = None) -> dict[str, Any]:
    """A plain, YAML-safe dict of the resolved config; with `sections`, only those (and the ones every run reads)."""
    data = cfg.model_dump(mode="json")
    if sections is None:
        return data
    keep = set(ALWAYS_READ) | set(sections)
    return {key: value for key, value in data.items() if key in keep}


def dump_yaml(cfg: ExperimentConfig, sections: typing.Iterable[str] | None = None) -> str:
    return yaml.safe_dump(config_to_dict(cfg, sections), sort_keys=False)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"--set {shown(item)}: expected KEY=VALUE with a dotted key, e.g. training.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key}=...: the value is nested too deeply to read") from None
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any, item: str) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {shown(item)}: {prefix} is a value, not a section; it has no key {parts[i + 1]!r}")
        node = child
    node[parts[-1]] = value
