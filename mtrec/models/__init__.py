"""Everything a saved network holds, registered into pretrain_stack: the six multi-task backbones (single,
shared_bottom, mmoe, ple, stem, mptrec), the `task_sparse_features` embedding (STEM's per-task copies), the
`mptrec` target, and the heads of tasks added later (`task_heads` registry: prompt, expert-gate, tower and task-embedding heads).

Importing this package registers them all. Recipes live in mtrec/configs/<model>_<dataset>.yaml (mtrec.recipe).
"""

from __future__ import annotations

from mtrec.models import (mmoe, mptrec, ple, prompt, sequence, shared_bottom, single, stem, targets,  # noqa: F401
                          task_embedding_head, task_embeddings, tower)
