"""`add_task`: teach a trained model one more binary task, by default with its backbone frozen (prompt tuning)."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtrec.data.batches import EncodedFrame
from mtrec.data.io import read_frame
from mtrec.data.validation import require_both_classes
from mtrec.errors import DataError, OptionError
from mtrec.model import MultiTaskModel
from mtrec.tasks import baselines
from mtrec.tasks.cache import RepresentationCache, representations
from mtrec.tasks.cnf import cnf
from mtrec.tasks.fit import FIT_OPTIONS, RECIPE_KEYS, FitConfig, FitResult, fit_head, intra_op_threads
from mtrec.tasks.freezing import count_parameters, frozen
from mtrec.tasks.probe import probe_new_task, warn_if_weaker
from mtrec.models.heads import TaskHead
from mtrec.models.inputs import network_inputs
from mtrec.models.prompt import prompt_head, tower_head
from mtrec.models.task_embedding_head import task_embedding_head
from mtrec.tasks.raw_inputs import RawInputCache
from mtrec.recipe import TrainConfig

FROZEN_METHODS = ("prompt", "tower", "task_embedding")
BACKBONE_METHODS = ("finetune", "child_tuning", "pecl", "cnf")
METHODS = (*FROZEN_METHODS, *BACKBONE_METHODS, "joint")
HEAD_OPTIONS = frozenset({"tower_hidden", "proj_hidden", "temperature", "prompt_init_std"})
METHOD_OPTIONS = {"task_embedding": frozenset({"embedding_dim", "side_hidden", "side_features"}),
                  "child_tuning": frozenset({"reserve_p", "fisher_batches"}),
                  "pecl": frozenset({"fraction", "ewc_lambda", "fisher_batches"}),
                  "cnf": frozenset({"fraction", "cnf_lambda", "rho", "adaptive", "probe_batches", "fisher_batches"})}
CACHE_OPTIONS = frozenset({"max_cache_bytes", "chunk_rows"})


@dataclass
class AddTaskResult:
    """What adding a task did: its trained size against the whole model, time, per-epoch history, valid AUC."""

    task: str
    method: str
    trainable_params: int
    total_params: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    valid_auc: float | None = None
    best_epoch: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    probe_raw_auc: float | None = None  # linear probe of the new label on the raw input (mtrec/tasks/probe.py)
    probe_frozen_auc: float | None = None  # ... and on the frozen representations, same rows

    @property
    def trainable_share(self) -> float:
        """Trainable parameters as a share of the model's parameters after adding the task."""
        return self.trainable_params / max(self.total_params, 1)


def check_task_name(model: MultiTaskModel, name: str) -> None:
    """ValueError (DataError naming the column) unless `name` is a new, usable task name."""
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"add_task: the task name must be a non-empty string without '.', got {name!r}")
    if name in model.tasks:
        raise DataError(f"add_task: column {name!r} is already a task of the model (tasks: {model.tasks}); "
                        "choose another name", column=name)
    if name in model.schema.features():
        raise DataError(f"add_task: column {name!r} is a feature of the model and cannot be a task label",
                        column=name)


def split_options(method: str, options: dict[str, Any], recipe: TrainConfig) -> tuple[FitConfig, dict[str, Any],
                                                                                     dict[str, Any], dict[str, Any]]:
    """(fit settings, head options, method options, cache options); TypeError naming any unknown option.
    Methods that move the backbone default to the model recipe's training settings."""
    allowed = FIT_OPTIONS | METHOD_OPTIONS.get(method, frozenset())
    if method != "joint":
        allowed |= HEAD_OPTIONS
    if method in FROZEN_METHODS:
        allowed |= CACHE_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise OptionError(f"add_task(method={method!r}): unknown option(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(sorted(allowed))}")
    defaults: dict[str, Any] = {}
    if method in BACKBONE_METHODS:
        defaults = {"threads": 0, **{k: getattr(recipe, k) for k in RECIPE_KEYS}}
    elif method == "joint":
        defaults = {"threads": 0}
    cfg = FitConfig(**{**defaults, **{k: v for k, v in options.items() if k in FIT_OPTIONS}})
    cfg.validate()
    head, extra, cache = ({k: v for k, v in options.items() if k in keys}
                         for keys in (HEAD_OPTIONS, METHOD_OPTIONS.get(method, frozenset()), CACHE_OPTIONS))
    return cfg, head, extra, cache


def representation_shapes(model: MultiTaskModel, encoded: EncodedFrame) -> dict[str, tuple[int, ...]]:
    """Shapes of the backbone's representations on two rows (to size a head)."""
    network = model.require_network()
    with frozen(network), torch.no_grad():
        reps = representations(network, network_inputs(encoded.take(np.arange(min(2, len(encoded))))))
    return {k: tuple(v.shape) for k, v in reps.items()}


def make_head(model: MultiTaskModel, method: str, encoded: EncodedFrame, seed: int,
              options: dict[str, Any], method_options: dict[str, Any] | None = None) -> TaskHead:
    """The method's head for this backbone, initialized from `seed` (task_embedding: the prompt head, same init,
    wrapped with the new task's own tables over `side_features`, default every sparse feature)."""
    shapes = representation_shapes(model, encoded)
    builder = tower_head if method == "tower" else prompt_head
    torch.manual_seed(seed)
    try:
        head = builder(model.name, shapes, **options)
        if method != "task_embedding":
            return head
        side = dict(method_options or {})
        wanted = side.pop("side_features", None)
        specs = model.spec().vocabs.feature_specs()
        unknown = sorted(set(wanted or ()) - {f["name"] for f in specs})
        if unknown:
            raise DataError(f"add_task: side_features names {unknown[0]!r}, which is not a sparse feature of the "
                            f"model ({', '.join(f['name'] for f in specs)})", column=unknown[0])
        features = [f for f in specs if wanted is None or f["name"] in wanted]
        return task_embedding_head(head, features, len(model.schema.dense), **side)
    except TypeError as exc:
        raise OptionError(f"add_task(method={method!r}) on a {model.name!r} backbone: {exc}") from exc


def add_task(model: MultiTaskModel, name: str, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
             method: str = "prompt", progress: bool = True, probe: bool = True, **options: Any) -> AddTaskResult:
    """Add binary task `name` (its label column in `train_df`) to a trained model, in place.

    `prompt` (default) and `tower` train only a new head on cached frozen representations, so the old tasks'
    predictions stay bit-identical; `task_embedding` adds to the prompt head the new task's own small embedding
    tables on the raw input (old tasks still bit-identical); finetune / child_tuning / pecl / cnf also move the
    backbone (cnf: C&F, constrained by flatness importance, mtrec/tasks/cnf.py); joint retrains the whole model
    from scratch. Options: epochs, batch_size, lr, embedding_lr, weight_decay, patience, seed, eval_batch_size,
    threads; head: tower_hidden, proj_hidden, temperature, prompt_init_std; task_embedding: embedding_dim,
    side_hidden, side_features; child_tuning: reserve_p, fisher_batches; pecl: fraction, ewc_lambda,
    fisher_batches; cnf: fraction, cnf_lambda, rho, adaptive, probe_batches, fisher_batches; cache:
    max_cache_bytes, chunk_rows.
    `probe` (default on, except for joint) first fits linear probes of the label on the raw input and on the frozen
    representations of the same rows (AddTaskResult.probe_*_auc) and warns when the frozen ones are clearly weaker.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise OptionError(f"add_task: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(model, MultiTaskModel):
        raise OptionError(f"add_task needs an fp32 MultiTaskModel, got {type(model).__name__}; add the task before "
                        "quantizing")
    model.require_network()
    check_task_name(model, name)
    cfg, head_options, method_options, cache_options = split_options(method, options, model.recipe.train)
    train_frame = read_frame(train_df)
    valid_frame = read_frame(valid) if valid is not None else None
    encoded = model.encode(train_frame, tasks=[name])
    require_both_classes(encoded.labels_array(), [name])
    if method == "joint":
        return _add_joint(model, name, train_frame, valid_frame, cfg, options, progress, start)
    encoded_valid = model.encode(valid_frame, tasks=[name]) if valid_frame is not None else None
    details: dict[str, Any] = {"encode_seconds": time.perf_counter() - start}
    probed = probe_new_task(model, encoded, encoded_valid, seed=cfg.seed) if probe else None
    if probed is not None:
        details["probe_seconds"] = probed.seconds
        warn_if_weaker(name, method, probed)
    with intra_op_threads(cfg.threads):
        head = make_head(model, method, encoded, cfg.seed, head_options, method_options)
        if method in FROZEN_METHODS:
            fit, trainable = _fit_frozen(model, head, encoded, encoded_valid, cfg, cache_options, progress, details)
        else:
            fit, trainable = _fit_backbone(model, method, head, encoded, encoded_valid, cfg, method_options,
                                           progress, details)
    model.attach_task(name, head, {"method": method})
    return AddTaskResult(task=name, method=method, trainable_params=trainable, total_params=model.num_parameters(),
                         seconds=time.perf_counter() - start, history=fit.history, valid_auc=fit.valid_auc,
                         best_epoch=fit.best_epoch, details=details,
                         probe_raw_auc=probed.raw_auc if probed is not None else None,
                         probe_frozen_auc=probed.frozen_auc if probed is not None else None)


def _fit_frozen(model: MultiTaskModel, head: TaskHead, encoded: EncodedFrame, encoded_valid: EncodedFrame | None,
                cfg: FitConfig, cache_options: dict[str, Any], progress: bool,
                details: dict[str, Any]) -> tuple[FitResult, int]:
    """Cache the frozen representations once, then train the head alone."""
    network = model.require_network()
    kwargs = {"chunk_rows": cache_options.get("chunk_rows", 8192),
              "max_bytes": cache_options.get("max_cache_bytes", 2 << 30), "progress": progress}
    cache_start = time.perf_counter()
    train = RepresentationCache(network, encoded, head.reads, head.constants, **kwargs)
    valid = RepresentationCache(network, encoded_valid, head.reads, head.constants, **kwargs) \
        if encoded_valid is not None else None
    if head.raw_inputs:
        train = RawInputCache(train, encoded)
        valid = RawInputCache(valid, encoded_valid) if valid is not None else None
    fit_start = time.perf_counter()
    details.update(cache_seconds=fit_start - cache_start, cache_in_memory=train.in_memory)
    fit = fit_head(head, train, valid, cfg, progress)
    details["fit_seconds"] = time.perf_counter() - fit_start
    return fit, count_parameters(head)


def _fit_backbone(model: MultiTaskModel, method: str, head: TaskHead, encoded: EncodedFrame,
                  encoded_valid: EncodedFrame | None, cfg: FitConfig, method_options: dict[str, Any],
                  progress: bool, details: dict[str, Any]) -> tuple[FitResult, int]:
    """Run a backbone-moving method; on any failure the backbone's weights are restored. cnf also leaves the
    model the flatness statistics for the next addition."""
    network = model.require_network()
    snapshot = copy.deepcopy(network.state_dict())
    try:
        if method == "cnf":
            fit, trainable, keep, sources = cnf(network, head, encoded, encoded_valid, cfg, model.flatness,
                                                progress=progress, **method_options)
            model.set_flatness(keep)
            details["importance_elements"] = sources
            return fit, trainable
        run = {"finetune": baselines.finetune, "child_tuning": baselines.child_tuning, "pecl": baselines.pecl}[method]
        return run(network, head, encoded, encoded_valid, cfg, progress=progress, **method_options)
    except BaseException:
        network.load_state_dict(snapshot)
        raise


def _add_joint(model: MultiTaskModel, name: str, train_frame: pd.DataFrame, valid_frame: pd.DataFrame | None,
               cfg: FitConfig, options: dict[str, Any], progress: bool, start: float) -> AddTaskResult:
    """Retrain from scratch on old + new tasks with the model's recipe, then swap the new network in."""
    recipe_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in options.items() if k in recipe_keys and k not in ("seed", "threads")}
    with intra_op_threads(cfg.threads):
        fresh, result = baselines.joint(model, name, train_frame, valid_frame, cfg.seed, progress, **given)
    model.replace_with(fresh)
    history = [{**h, "valid_auc": h["valid"][name]["auc"]} if "valid" in h else h for h in result.history]
    total = model.num_parameters()
    return AddTaskResult(task=name, method="joint", trainable_params=total, total_params=total,
                         seconds=time.perf_counter() - start, history=history,
                         valid_auc=result.best_valid[name]["auc"] if result.best_valid else None,
                         best_epoch=result.best_epoch)
