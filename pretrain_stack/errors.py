"""Errors raised by the stack: each names the config key at fault."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is unknown, missing or of the wrong type; `key` is its dotted path."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
