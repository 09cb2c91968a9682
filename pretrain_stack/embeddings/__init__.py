"""Embedding parts, each registered by name into EMBEDDINGS (and TGT_EMBEDDINGS where it fits)."""

from pretrain_stack.embeddings import dense_features, item, position, segment, sparse_features  # noqa: F401
