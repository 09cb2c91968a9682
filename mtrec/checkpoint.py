"""The checkpoint format: a directory with manifest.json (format, versions, kind, name, tasks, recipe, schema,
a description of the vocabularies, added tasks), the vocabularies as a columnar file (vocabularies.parquet,
listed in the manifest's "files" with its sha256 and checked before it is read) and the weights, for every kind of
model (fp32 "multitask", "multitask-sharded", "quantized"); one `manifest_of` describes a model, `model_files`
writes what it lists besides the weights, and one `model_from_manifest` rebuilds its architecture. Checkpoints of
format 1 that hold their vocabularies as JSON lists in the manifest still load.

Written to a temporary sibling directory and published by mtrec.outputs (atomic, never replacing anything that is
not an mtrec checkpoint, an existing checkpoint only with overwrite), so a crash never leaves half a checkpoint;
the directory follows the umask. A symbolic link anywhere inside a checkpoint is refused on load, never followed.
Weights load with `weights_only=True`; a corrupt, truncated or incompatible checkpoint raises CheckpointError.
Nothing here imports training code: loading and predicting need only the model and the data layer.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from mtrec.data.schema import Schema
from mtrec.data.vocab import VOCAB_FILE, Vocabularies
from mtrec.errors import DataError
from mtrec.model import ModelSpec, MultiTaskModel
from mtrec.outputs import check_output, publish, temporary_for
from mtrec.recipe import Recipe

if TYPE_CHECKING:
    from mtrec.quant.quantized import QuantizedModel

FORMAT = "mtrec-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
FP32_KIND = "multitask"
FILES = "files"
# entries a checkpoint directory holds besides the files its manifest lists: the CLI's reports, a sharded
# checkpoint's DCP metadata and shards and its train state
CHECKPOINT_ENTRIES = (MANIFEST, WEIGHTS, "*_report.json", ".metadata", "*.distcp", "train_state.json")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read: missing, corrupt, truncated or written by an incompatible version."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint depends on."""
    from mtrec import __version__

    out = {"python": platform.python_version(), "mtrec": __version__}  # the code's own (distribution mtrec-prompt)
    for pkg in ("torch", "torchrec", "fbgemm-gpu-cpu", "ray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> dict[str, Any]:
    """{"sha256", "bytes"} of a file, as a manifest's "files" lists it."""
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def verified_file(path: str | Path, manifest: dict[str, Any], name: str) -> Path:
    """The checkpoint's file `name` after checking it against the manifest's "files" (listed, a regular file of
    the listed size and sha256); CheckpointError otherwise."""
    file = Path(path) / name
    entry = (manifest.get(FILES) or {}).get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise CheckpointError(f"checkpoint {path}: {name} is not listed with a checksum in {MANIFEST}")
    if file.is_symlink() or not file.is_file():
        raise CheckpointError(f"checkpoint {path}: {name} is missing")
    if file.stat().st_size != entry.get("bytes", file.stat().st_size) or _sha256(file) != entry["sha256"]:
        raise CheckpointError(f"checkpoint {path}: {name} is corrupt or truncated (checksum mismatch)")
    return file


def foreign_to_checkpoint(path: Path) -> str | None:
    """What in directory `path` is not part of an mtrec checkpoint (None: every entry is one a checkpoint holds:
    its manifest, weights, the files the manifest lists, reports and DCP shards), so replacing it loses nothing."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"no readable {MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"{MANIFEST} is not an mtrec manifest"
    listed = set(manifest.get(FILES) or {})
    for entry in path.iterdir():
        ours = entry.name in listed or any(fnmatch.fnmatchcase(entry.name, p) for p in CHECKPOINT_ENTRIES)
        if not ours or entry.is_symlink() or not entry.is_file():
            return f"it holds {entry.name!r}"
    return None


def check_checkpoint_output(path: str | Path, overwrite: bool = False) -> Path:
    """Fail before any training if a checkpoint could not be saved at `path` (OutputError)."""
    return check_output(path, overwrite, foreign_to_checkpoint)


def write_checkpoint(path: str | Path, manifest: dict[str, Any], tensors: dict[str, Any],
                     extra_files: dict[str, Callable[[Path], None]] | None = None, overwrite: bool = False) -> Path:
    """Write manifest + tensors (+ extra files written by callbacks, listed in the manifest's "files" with their
    sha256) as directory `path`, whole or not at all; an existing checkpoint is replaced only with `overwrite`,
    atomically, and anything else is never replaced (OutputError)."""
    path = check_checkpoint_output(path, overwrite)
    tmp = temporary_for(path)
    try:
        torch.save(tensors, tmp / WEIGHTS)
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
        files = {**manifest.get(FILES, {}), **{name: file_digest(tmp / name) for name in extra_files or {}}}
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions(),
                **manifest, "weights_sha256": _sha256(tmp / WEIGHTS), FILES: files}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, default=str))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, path, overwrite, foreign_to_checkpoint)


def refuse_symlinks(path: Path) -> None:
    """CheckpointError naming the first symbolic link inside checkpoint directory `path` (the directory itself
    may be one): a checkpoint's files are its own, a link would make loading read whatever it points to."""
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(root, name)):
                inside = Path(root, name).relative_to(path)
                raise CheckpointError(f"checkpoint {path}: {inside} is a symbolic link; a checkpoint must hold "
                                      f"its own files (copy the target in instead)")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a checkpoint directory, checked for format and version (and for symbolic links inside)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
    refuse_symlinks(path)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST}: not an mtrec checkpoint") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is corrupt ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is not an mtrec manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {manifest.get('format_version')} is not supported "
                              f"(this mtrec reads version {FORMAT_VERSION})")
    return manifest


def read_tensors(path: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Load weights.pt safely (weights_only) after checking its size and hash against the manifest."""
    weights = Path(path) / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is missing")
    expected = manifest.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is corrupt or truncated (checksum mismatch)")
    try:
        return torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors... for damaged files
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} cannot be read ({type(exc).__name__}: {exc})") from exc


def manifest_of(model: MultiTaskModel | QuantizedModel | ModelSpec, kind: str, **extra: Any) -> dict[str, Any]:
    """The manifest entries that rebuild `model` without its weights (kind, name, tasks, recipe, schema,
    vocabularies, added tasks), plus `extra` entries of the kind (a quantized plan, ...)."""
    spec = model if isinstance(model, ModelSpec) else model.spec()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions(), "kind": kind,
            "name": spec.name, "tasks": list(spec.tasks), "recipe": spec.recipe.to_dict(),
            "schema": spec.schema.to_dict(), "vocabularies": spec.vocabs.manifest_entry(VOCAB_FILE),
            "extensions": [dict(e) for e in spec.extensions], **extra}


def model_files(model: MultiTaskModel | QuantizedModel | ModelSpec) -> dict[str, Callable[[Path], None]]:
    """Writers of the files a model's manifest lists besides the weights: the vocabularies' columnar file."""
    spec = model if isinstance(model, ModelSpec) else model.spec()
    return {VOCAB_FILE: spec.vocabs.write}


def read_vocabularies(manifest: dict[str, Any], directory: str | Path | None, where: str = "manifest"
                      ) -> Vocabularies:
    """The vocabularies a manifest describes: its columnar file in `directory` (checked against the manifest
    first), or the JSON lists a format-1 manifest holds."""
    entry = manifest.get("vocabularies")
    try:
        if isinstance(entry, dict) and entry.get("format_version") == 1:
            return Vocabularies.from_dict(entry)
        if not isinstance(entry, dict) or "file" not in entry:
            raise CheckpointError(f"{where}: manifest has no vocabularies entry")
        if directory is None:
            raise CheckpointError(f"{where}: the vocabularies are in {entry['file']}, but no directory was given")
        return Vocabularies.read(verified_file(directory, manifest, entry["file"]), entry)
    except DataError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc


def model_from_manifest(manifest: dict[str, Any], where: str = "manifest", seed: int = 0,
                        directory: str | Path | None = None, vocabs: Vocabularies | None = None) -> MultiTaskModel:
    """A MultiTaskModel with its network built (seeded init, added tasks restored) from a checkpoint manifest and
    its vocabularies (`vocabs`, or read from the checkpoint `directory`); every checkpoint kind (fp32, sharded,
    quantized) rebuilds its architecture through this one function."""
    try:
        recipe = Recipe.from_dict(manifest["recipe"])
        schema = Schema.from_dict(manifest["schema"])
        vocabs = vocabs if vocabs is not None else read_vocabularies(manifest, directory, where)
        tasks, name = manifest["tasks"], manifest["name"]
        extensions = manifest.get("extensions", [])
        added = {e["task"] for e in extensions}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: manifest is incomplete or invalid ({exc})") from exc
    if list(schema.sparse) != vocabs.sparse or list(schema.dense) != vocabs.dense:
        raise CheckpointError(f"{where}: the manifest's schema (sparse {schema.sparse}, dense {schema.dense}) does "
                              f"not match its vocabularies (sparse {vocabs.sparse}, dense {vocabs.dense})")
    model = MultiTaskModel(name, schema, [t for t in tasks if t not in added], recipe)
    model.build_network(vocabs, seed=seed, load_pretrained=False)
    try:
        for extension in extensions:
            model.restore_extension(extension)
    except ValueError as exc:
        raise CheckpointError(f"{where}: an added task cannot be rebuilt ({exc})") from exc
    return model


def save_model(model: MultiTaskModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write an fp32 model checkpoint atomically (replacing a checkpoint at `path` only with overwrite)."""
    network = model.require_network()
    tensors: dict[str, Any] = {"network": network.state_dict()}
    if model.flatness:
        tensors["flatness"] = model.flatness
    return write_checkpoint(path, manifest_of(model, FP32_KIND), tensors, model_files(model), overwrite=overwrite)


def load_model(path: str | Path, manifest: dict[str, Any] | None = None) -> MultiTaskModel:
    """Rebuild an fp32 model from its checkpoint directory (weights load with weights_only=True)."""
    manifest = manifest if manifest is not None else read_manifest(path)
    if manifest.get("kind") != FP32_KIND:
        raise CheckpointError(f"checkpoint {path} holds a {manifest.get('kind')!r} model, not a multitask model")
    model = model_from_manifest(manifest, where=f"checkpoint {path}", directory=path)
    state = read_tensors(path, manifest)
    try:
        model.require_network().load_state_dict(state["network"])
        model.set_flatness(state.get("flatness", {}))
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match the model in the manifest ({exc})") from exc
    model.require_network().eval()
    return model
