"""Encoders, each registered by name into ENCODERS."""

from pretrain_stack.encoders import mlp, transformer  # noqa: F401
