"""Sharded checkpoints (torch.distributed.checkpoint): every worker writes its own shards, rank 0 the metadata.

A checkpoint directory holds the DCP files (weights under `network.`, the combined optimizer under `optim.`),
`manifest.json` (the same manifest as `mtrec.save`, kind "multitask-sharded", so `mtrec.load` reads it), the
vocabularies' file it lists and
`train_state.json` (step counters and the data ledger a resumed run continues from). The manifest lists every
file with its sha256; loading checks them first and parses nothing with plain pickle (mtrec.distributed.dcp_reader).
DCP reshards on load, so a checkpoint loads into an unsharded network, or into another plan or number of workers,
exactly.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer

from mtrec.checkpoint import (FILES, MANIFEST, CheckpointError, file_digest, manifest_of, model_files,
                              model_from_manifest, read_manifest, verified_file)
from mtrec.data.vocab import Vocabularies
from mtrec.distributed.dcp_reader import DCP_METADATA, safe_load
from mtrec.distributed.wrap import NETWORK_PREFIX, unwrap_key
from mtrec.model import MultiTaskModel

SHARDED_KIND = "multitask-sharded"
TRAIN_STATE = "train_state.json"


def model_manifest(model: MultiTaskModel, vocabs: Vocabularies | None = None, run_dir: Path | None = None
                   ) -> dict[str, Any]:
    """What rebuilds `model` without its weights (name, tasks, recipe, schema, vocabularies, extensions), with the
    vocabularies' file written once into the run directory (every checkpoint copies it, workers read it); without
    a run directory the manifest lists no files (checkpoints then hold weights and state only)."""
    spec = model.spec(vocabs)
    if run_dir is None:
        return manifest_of(spec, SHARDED_KIND)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, write in model_files(spec).items():
        write(run_dir / name)
        files[name] = file_digest(run_dir / name)
    return {**manifest_of(spec, SHARDED_KIND), FILES: files}


def run_files(manifest: dict[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """The files of the run directory every checkpoint holds a copy of ({name: path})."""
    return {name: Path(run_dir) / name for name in manifest.get(FILES, {})}


def _network_state(model: DistributedModelParallel) -> dict[str, Any]:
    return {unwrap_key(k): v for k, v in model.state_dict().items()}


def _without_empty(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested dicts without empty sub-dicts (stateless optimizers such as SGD leave those, and DCP
    does not store them, so a load would look for keys that were never written)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _without_empty(value)
            if not value:
                continue
        out[key] = value
    return out


def _merge_into(full: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Copy loaded values back into the full nested dict (tensors were filled in place; this carries the rest)."""
    for key, value in loaded.items():
        if isinstance(value, dict) and isinstance(full.get(key), dict):
            _merge_into(full[key], value)
        else:
            full[key] = value


def _is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def save_sharded(path: str | Path, model: DistributedModelParallel, optimizer: CombinedOptimizer,
                 manifest: dict[str, Any], train_state: dict[str, Any], files: dict[str, Path] | None = None) -> Path:
    """Collective: every rank writes its shards of weights and optimizer state to `path`; rank 0 adds the JSON
    and copies `files` (the vocabularies) in. The manifest lists every file with its sha256 (each rank hashes the
    DCP files it can see, so per-rank directories that Ray Train merges later are covered too)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    metadata = dcp.save(_without_empty({"network": _network_state(model), "optim": optimizer.state_dict()}),
                        checkpoint_id=str(path))
    digests = _gathered_digests(path, sorted({info.relative_path for info in metadata.storage_data.values()}))
    if _is_rank0():
        for name, source in (files or {}).items():
            shutil.copyfile(source, path / name)
        (path / TRAIN_STATE).write_text(json.dumps(train_state, indent=2))
        own = {name: file_digest(path / name) for name in [*(files or {}), TRAIN_STATE, DCP_METADATA]}
        listed = {**manifest.get(FILES, {}), **digests, **own}
        (path / MANIFEST).write_text(json.dumps({**manifest, FILES: listed}, indent=2, default=str))
    return path


def _gathered_digests(path: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Collective: {name: digest} of the DCP data files `names`, each hashed by the lowest rank that sees it."""
    present = [name for name in names if (path / name).is_file()]
    if not dist.is_initialized():
        seen = [present]
    else:
        seen = [None] * dist.get_world_size()
        dist.all_gather_object(seen, present)
    rank = dist.get_rank() if dist.is_initialized() else 0
    mine = [name for name in present if next(r for r, got in enumerate(seen) if name in got) == rank]
    digests = {name: file_digest(path / name) for name in mine}
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, digests)
        digests = {k: v for part in parts for k, v in part.items()}
    missing = sorted(set(names) - set(digests))
    if missing:
        raise CheckpointError(f"sharded checkpoint {path}: no rank sees the written files {missing}")
    return digests


def _materialize_dense_state(optimizer: CombinedOptimizer) -> None:
    """Create the lazy state of the non-fused optimizers (a zero-gradient step), so DCP can load into it in place."""
    for key, part in optimizer.optimizers:
        if key != "embedding" and not part.state:
            part.init_state()
            for param in part.params.values():
                param.grad = None


def load_sharded(path: str | Path, model: DistributedModelParallel, optimizer: CombinedOptimizer | None = None
                 ) -> dict[str, Any]:
    """Collective: load weights (and optimizer state) from a sharded checkpoint, resharding as needed; returns
    the checkpoint's train state. Load the optimizer state only into the same table layout it was saved from."""
    path = Path(path)
    manifest = read_manifest(path)
    if optimizer is not None:
        _materialize_dense_state(optimizer)
    full_optim = optimizer.state_dict() if optimizer is not None else {}
    state = _without_empty({"network": _network_state(model), "optim": full_optim})
    safe_load(state, path, manifest)
    model.load_state_dict({NETWORK_PREFIX + k: v for k, v in state["network"].items()})
    if optimizer is not None:
        _merge_into(full_optim, state.get("optim", {}))
        optimizer.load_state_dict(full_optim)
    return read_train_state(path, manifest)


def read_train_state(path: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The step counters and ledger saved with a sharded checkpoint, checked against its manifest first."""
    manifest = manifest if manifest is not None else read_manifest(path)
    file = verified_file(path, manifest, TRAIN_STATE)
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"sharded checkpoint {path}: {TRAIN_STATE} is corrupt ({exc})") from exc


def materialize_meta(network: nn.Module) -> None:
    """Give meta-device parameters (tables built for sharding only) real, uninitialized CPU storage."""
    for module in network.modules():
        if any(t.is_meta for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]):
            module.to_empty(device="cpu", recurse=False)


def load_network_weights(path: str | Path, network: nn.Module, manifest: dict[str, Any] | None = None) -> None:
    """Load a sharded checkpoint's weights into a plain (unsharded) network, in this process, exactly
    (tables the network built on the meta device get CPU storage first)."""
    path = Path(path)
    manifest = manifest if manifest is not None else read_manifest(path)
    materialize_meta(network)
    state = {"network": network.state_dict()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        safe_load(state, path, manifest, no_dist=True)
    network.load_state_dict(state["network"])


def load_model(path: str | Path) -> MultiTaskModel:
    """An unsharded MultiTaskModel from a sharded checkpoint (what `mtrec.load` does for one)."""
    manifest = read_manifest(path)
    if manifest.get("kind") != SHARDED_KIND:
        raise CheckpointError(f"checkpoint {path} is not a sharded multitask checkpoint")
    model = model_from_manifest(manifest, where=f"checkpoint {path}", directory=path)
    with torch.no_grad():
        load_network_weights(path, model.require_network(), manifest)
    model.require_network().eval()
    return model
