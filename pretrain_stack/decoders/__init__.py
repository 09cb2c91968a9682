"""Decoders, each registered by name into DECODERS."""

from pretrain_stack.decoders import transformer  # noqa: F401
