"""One Registry type and the five registries every model is assembled from.

A component is an `nn.Module` class registered under a name. Its constructor signature *is* its config
schema: `Registry.build` checks a config section against it (unknown keys, wrong types, missing values are
`ConfigError`s naming the key), fills values the caller supplies as build context (e.g. `vocab_size`), and
can load a component saved with `save_component` (`pretrained: <dir>`).
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.typecheck import check_type

T = TypeVar("T", bound=type)

RESERVED_KEYS = ("name", "pretrained", "freeze")
COMPONENT_FILE = "component.json"
WEIGHTS_FILE = "weights.pt"


class Registry:
    """Maps names to component classes of one kind (embeddings, encoders, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: `@ENCODERS.register("transformer")`."""

        def wrap(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind}: {name!r} is already registered to {self._classes[name].__name__}")
            self._classes[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    def get(self, name: str) -> type:
        """The class registered as `name`; ConfigError listing the known names otherwise."""
        if name not in self._classes:
            known = ", ".join(sorted(self._classes)) or "none"
            raise ConfigError(f"{self.kind}: unknown component {name!r} (known: {known})", key=f"{self.kind}.name")
        return self._classes[name]

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def validate(self, spec: dict[str, Any], where: str, context: dict[str, Any] | None = None,
                 require_all: bool = True) -> dict[str, Any]:
        """Check one config section against the component's signature; return the resolved kwargs.

        With `require_all=False` (used when a file is loaded, before the data supplies context values)
        missing required values are not an error yet.
        """
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping with a 'name', got {type(spec).__name__}", key=where)
        if "pretrained" in spec and "name" not in spec:
            return {}
        if "name" not in spec:
            raise ConfigError(f"{where}.name: missing (one of: {', '.join(self.names())})", key=f"{where}.name")
        cls = self.get(spec["name"])
        params = _signature_params(cls)
        skipped = _registry_keys(cls)
        kwargs: dict[str, Any] = {}
        for key, value in spec.items():
            if key in skipped:
                continue
            if key not in params:
                allowed = ", ".join(sorted(params)) or "none"
                raise ConfigError(f"{where}.{key}: unknown key for {self.kind} {spec['name']!r} (allowed: {allowed})",
                                  key=f"{where}.{key}")
            check_type(value, params[key].annotation, f"{where}.{key}")
            kwargs[key] = value
        context = context or {}
        for key, param in params.items():
            if key in kwargs:
                continue
            if key in context:
                kwargs[key] = context[key]
            elif param.default is inspect.Parameter.empty and require_all:
                raise ConfigError(f"{where}.{key}: required by {self.kind} {spec['name']!r} but not set", key=f"{where}.{key}")
        return kwargs

    def build(self, spec: dict[str, Any], where: str | None = None, context: dict[str, Any] | None = None) -> nn.Module:
        """Instantiate a component from its config section (or load it from `pretrained: <dir>`)."""
        where = where or self.kind
        handles = handled_keys(self, spec)
        if spec.get("pretrained") and "pretrained" not in handles:
            module = load_component(self, spec["pretrained"], where)
        else:
            kwargs = self.validate(spec, where, context)
            module = self.get(spec["name"])(**kwargs)
            module.component_config = {"name": spec["name"], **_jsonable(kwargs)}  # type: ignore[assignment]
        if spec.get("freeze") and "freeze" not in handles:
            for p in module.parameters():
                p.requires_grad_(False)
        return module


def handled_keys(registry: Registry, spec: dict[str, Any]) -> set[str]:
    """Reserved keys (pretrained, freeze) the named component takes as its own constructor arguments, so the
    registry passes them through instead of loading a saved component or freezing every parameter."""
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or name not in registry:
        return set()
    return set(RESERVED_KEYS) - _registry_keys(registry.get(name))


def _registry_keys(cls: type) -> frozenset[str]:
    """The reserved keys the registry itself acts on for `cls` (those not among its constructor arguments); the
    one place build (through handled_keys) and validate read them from."""
    return frozenset(RESERVED_KEYS) - _signature_params(cls).keys()


_PARAMS: dict[type, dict[str, inspect.Parameter]] = {}


def _signature_params(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters with their annotations resolved (works with postponed annotations); kept per class
    once resolved, so a build does not read the signature twice (callers must not change the dict)."""
    if cls in _PARAMS:
        return _PARAMS[cls]
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable forward references: fall back to the raw annotations (not kept)
        hints = None
    params = {k: p.replace(annotation=(hints or {}).get(k, p.annotation)) for k, p in list(sig.parameters.items())[1:]
              if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    if hints is not None:
        _PARAMS[cls] = params
    return params


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in kwargs.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = repr(v)
    return out


def save_component(module: nn.Module, directory: str | Path, kind: str) -> Path:
    """Save a built component (its config and weights) so a config can load it with `pretrained: <dir>`."""
    config = getattr(module, "component_config", None)
    if config is None:
        raise ValueError("only components built through a Registry can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), directory / WEIGHTS_FILE)
    (directory / COMPONENT_FILE).write_text(json.dumps({"kind": kind, "config": config}, indent=2))
    return directory


def read_component_config(directory: str | Path, kind: str, where: str) -> dict[str, Any]:
    """The config saved in `directory` (component.json), checked to be a `kind` component."""
    directory = Path(directory)
    meta_path = directory / COMPONENT_FILE
    if not meta_path.exists():
        raise ConfigError(f"{where}.pretrained: {directory} has no {COMPONENT_FILE} (save a component there with "
                          "save_component or `python -m pretrain_stack.pretrain`)", key=f"{where}.pretrained")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != kind:
        raise ConfigError(f"{where}.pretrained: {directory} holds a {meta.get('kind')!r} component, "
                          f"expected {kind!r}", key=f"{where}.pretrained")
    return dict(meta["config"])


def read_component_weights(directory: str | Path, where: str) -> dict[str, torch.Tensor]:
    """The tensors saved in `directory` (weights.pt), read with `weights_only=True` (no pickled code runs)."""
    path = Path(directory) / WEIGHTS_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for missing or unreadable files
        raise ConfigError(f"{where}.pretrained: cannot read {path}: {exc}", key=f"{where}.pretrained") from exc


def load_component(registry: Registry, directory: str | Path, where: str) -> nn.Module:
    """Rebuild a saved component and load its weights with `weights_only=True`."""
    config = read_component_config(directory, registry.kind, where)
    module = registry.build(config, where=where)
    module.load_state_dict(read_component_weights(directory, where))
    return module


EMBEDDINGS = Registry("embeddings")
ENCODERS = Registry("encoders")
TGT_EMBEDDINGS = Registry("tgt_embeddings")
DECODERS = Registry("decoders")
TARGETS = Registry("targets")
REGISTRIES = {r.kind: r for r in (EMBEDDINGS, ENCODERS, TGT_EMBEDDINGS, DECODERS, TARGETS)}
