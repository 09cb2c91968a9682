"""Check config values against type annotations (int, float, bool, str, Optional, list, dict, Literal)."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pretrain_stack.errors import ConfigError


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def matches(value: Any, tp: Any) -> bool:
    """Whether `value` fits annotation `tp` (string annotations and Any always fit)."""
    if tp is Any or tp is typing.Any or isinstance(tp, str) or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(tp)
        return not args or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_type(value: Any, tp: Any, key: str) -> None:
    """Raise ConfigError naming `key` when `value` does not fit `tp`."""
    if not matches(value, tp):
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r} ({type(value).__name__})", key=key)

