"""Multi-task backbones registered into pretrain_stack: single, shared_bottom, mmoe, ple, stem, mptrec.

Importing this package registers the six encoders, the `task_sparse_features` embedding (STEM's per-task
copies) and the `mptrec` target. Recipes live in mtrec/configs/<model>_<dataset>.yaml.
"""

from __future__ import annotations

from pathlib import Path

from mtrec.models import mmoe, mptrec, ple, shared_bottom, single, stem, targets, task_embeddings  # noqa: F401

MODELS = ("single", "shared_bottom", "mmoe", "ple", "stem", "mptrec")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
