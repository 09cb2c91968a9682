"""Load and validate configs: dataclass defaults < YAML/JSON file < `--key value` overrides.

A config schema is a dataclass (nested dataclasses for sections). Unknown keys and wrong types raise
`ConfigError` naming the dotted key. An override key may be dotted (`--model.encoder.layers 4`) or a bare
leaf name that is unique in the schema (`--epochs 3` for `train.epochs`); dashes read as underscores.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pretrain_stack.errors import ConfigError
from pretrain_stack.typecheck import check_type

C = TypeVar("C")


def read_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file into a dict."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}", key="config")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", key="config") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping", key="config")
    return data


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(schema: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build a (nested) dataclass from a dict, rejecting unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}", key=where)
    hints = _hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        dotted = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(f"unknown config key {dotted!r} (allowed under {prefix.rstrip('.') or 'the top level'}: "
                              f"{', '.join(sorted(fields))})", key=dotted)
        tp = hints[name]
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value, prefix=dotted + ".")
        else:
            check_type(value, tp, dotted)
            kwargs[name] = value
    return schema(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data (for manifests and metrics files)."""
    return dataclasses.asdict(config)


def _leaf_paths(schema: type, prefix: str = "") -> dict[str, list[str]]:
    """Map each leaf field name to the dotted paths where it occurs."""
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(schema):
        tp = _hints(schema)[f.name]
        path = prefix + f.name
        if _is_dataclass_type(tp):
            for leaf, paths in _leaf_paths(tp, path + ".").items():
                out.setdefault(leaf, []).extend(paths)
        out.setdefault(f.name, []).append(path)
    return out


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn `['--epochs', '3', '--model.encoder.layers', '4']` into {'epochs': 3, 'model.encoder.layers': 4}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ConfigError(f"expected --key value, got {tok!r}", key=tok)
        key = tok[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            raw = tokens[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        out[key.replace("-", "_")] = yaml.safe_load(raw)
    return out


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a section", key=".".join(path))
        node = nxt
    node[path[-1]] = value


def apply_overrides(schema: type, data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge overrides into the file's dict, resolving bare leaf names to their unique dotted path."""
    leaves = _leaf_paths(schema)
    top = {f.name for f in dataclasses.fields(schema)}
    for key, value in overrides.items():
        if "." in key:
            if key.split(".")[0] not in top:
                raise ConfigError(f"unknown config key {key!r}", key=key)
            path = key
        else:
            paths = leaves.get(key, [])
            if not paths:
                raise ConfigError(f"unknown config key {key!r}", key=key)
            if len(paths) > 1:
                raise ConfigError(f"ambiguous config key {key!r}: use one of {', '.join(paths)}", key=key)
            path = paths[0]
        _set_path(data, path.split("."), value)
    return data


def load_config(schema: type[C], path: str | Path | None = None,
                overrides: dict[str, Any] | list[str] | None = None) -> C:
    """defaults (the dataclass) < file < overrides, validated; errors name the key."""
    return config_from(schema, read_file(path) if path else {}, overrides)


def config_from(schema: type[C], data: dict[str, Any], overrides: dict[str, Any] | list[str] | None = None) -> C:
    """defaults (the dataclass) < `data` (a file's or a derived mapping) < overrides, validated."""
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    data = apply_overrides(schema, data, dict(overrides or {}))
    config = from_dict(schema, data)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config
