"""pretrain_stack: a modular model stack (TencentPretrain-style). Knows nothing of mtrec.

Every model is embedding + encoder (+ target embedding + decoder) + target, each looked up by name in a
registry, so a new model is a config file. Importing this package registers the built-in components.
"""

from pretrain_stack import decoders, embeddings, encoders, targets  # noqa: F401  (registers components)
from pretrain_stack.config import load_config
from pretrain_stack.errors import ConfigError
from pretrain_stack.model import EmbeddingStack, Model, build_model, validate_model_config
from pretrain_stack.registry import (DECODERS, EMBEDDINGS, ENCODERS, REGISTRIES, TARGETS, TGT_EMBEDDINGS, Registry,
                                     load_component, save_component)

__all__ = [
    "ConfigError", "Registry", "Model", "EmbeddingStack", "build_model", "validate_model_config", "load_config",
    "save_component", "load_component", "EMBEDDINGS", "ENCODERS", "TGT_EMBEDDINGS", "DECODERS", "TARGETS", "REGISTRIES",
]
