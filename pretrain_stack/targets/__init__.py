"""Targets (losses and heads), each registered by name into TARGETS."""

from pretrain_stack.targets import cls, lm, mlm, multitask_bce  # noqa: F401
