"""Train a sequence recipe on MovieLens-100k and report HR@10 / NDCG@10 beside a popularity baseline.

`python -m pretrain_stack.pretrain --config pretrain_stack/configs/sasrec.yaml [--key value ...]`: evaluates
the valid split every epoch (keeping the best epoch's weights, stopping early), the test split at the end, and
writes `<output_dir>/metrics.json`, the whole model state (`model.pt`), the encoder and embedding parts
as reusable components (`encoder/`, `embedding/<part>/`, loadable with `pretrained: <dir>`) and the item
vocabulary (`items.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pretrain_stack.config import load_config, to_dict
from pretrain_stack.data.sequences import (Batch, Objective, SequenceTask, Split, UserSequences, build_sequences,
                                           load_ratings)
from pretrain_stack.errors import ConfigError
from pretrain_stack.metrics import PROTOCOL, EvalSet, build_eval_set, popularity_scores, ranking_metrics
from pretrain_stack.model import EmbeddingStack, Model, build_model, validate_model_config
from pretrain_stack.registry import save_component
from pretrain_stack.wheel_data import DatasetNotFetched

ITEMS_FILE = "items.json"
METRIC_NAMES = ("hr@10_sampled", "ndcg@10_sampled", "hr@10_full", "ndcg@10_full")


@dataclass
class DataConfig:
    """Which user sequences to train on and how to cut, mask and evaluate them."""

    path: str | None = None
    max_users: int | None = None
    objective: Literal["auto", "lm", "mlm", "seq2seq"] = "auto"
    max_len: int = 200
    stride: int | None = None
    mask_prob: float = 0.2
    mask_last_prob: float = 0.1
    max_tgt: int = 10
    num_negatives: int = 100
    eval_seed: int = 2024


@dataclass
class TrainConfig:
    """Optimisation, early stopping and runtime settings.

    `patience` is the number of epochs without a better valid `select_metric` before stopping (0: never).
    `threads` defaults to 1: on a 2-core machine shared with other jobs, two intra-op threads made these small
    models 5-10x slower (OpenMP threads spin-waiting on each other), one thread never did.
    """

    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 5
    select_metric: Literal["hr@10_sampled", "ndcg@10_sampled", "hr@10_full", "ndcg@10_full"] = "ndcg@10_sampled"
    eval_batch_size: int = 256
    threads: int = 1
    device: str = "auto"
    progress: bool = True


@dataclass
class PretrainConfig:
    """A recipe: the model sections (checked against the registries at load) plus data, train and output."""

    recipe: str = "custom"
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/pretrain"

    def validate(self) -> None:
        """Check the model sections and the settings that depend on each other."""
        validate_model_config(self.model)
        objective_of(self)
        for key in ("max_len", "max_tgt", "num_negatives"):
            if getattr(self.data, key) < 1:
                raise ConfigError(f"data.{key}: must be >= 1", key=f"data.{key}")
        if self.data.max_tgt > self.data.max_len:
            raise ConfigError("data.max_tgt: must not exceed data.max_len", key="data.max_tgt")
        for key in ("epochs", "batch_size", "eval_batch_size", "threads"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"train.{key}: must be >= 1", key=f"train.{key}")


def objective_of(cfg: PretrainConfig) -> Objective:
    """The data objective: as set, or seq2seq with a decoder, else the target's name (lm or mlm)."""
    if cfg.data.objective != "auto":
        return cfg.data.objective
    if cfg.model.get("decoder"):
        return "seq2seq"
    name = (cfg.model.get("target") or {}).get("name")
    if name not in ("lm", "mlm"):
        raise ConfigError(f"model.target.name: pretrain trains item-prediction targets (lm, mlm), got {name!r}; "
                          "set data.objective for other targets", key="model.target.name")
    return name


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor of a batch."""
    return {k: v.to(device) for k, v in batch.items()}


def train_epoch(model: Model, batches: Iterator[Batch], total: int, optimizer: torch.optim.Optimizer,
                cfg: TrainConfig, device: torch.device, desc: str) -> float:
    """One pass over the training batches with a tqdm bar showing the running loss; returns the mean loss."""
    model.train()
    running, steps = 0.0, 0
    bar = tqdm(batches, total=total, desc=desc, disable=not cfg.progress, leave=False, dynamic_ncols=True)
    for batch in bar:
        loss = model(to_device(batch, device))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        running += float(loss.detach())
        steps += 1
        bar.set_postfix(loss=f"{running / steps:.4f}")
    bar.close()
    return running / max(steps, 1)


@torch.no_grad()
def score_users(model: Model, task: SequenceTask, split: Split, batch_size: int, device: torch.device) -> np.ndarray:
    """Next-item scores over the whole vocabulary for every user after their split history ([U, V])."""
    if not hasattr(model.target, "scores"):
        raise ConfigError("model.target: has no item scores to rank", key="model.target")
    model.eval()
    out = []
    for batch in task.eval_batches(split, batch_size):
        positions = batch.pop("positions").to(device)
        hidden = model.encode(to_device(batch, device))
        picked = hidden[torch.arange(len(positions), device=device), positions]
        out.append(model.target.scores(picked).float().cpu().numpy())
    return np.concatenate(out)


def eval_sets(data: UserSequences, num_negatives: int, seed: int) -> dict[str, EvalSet]:
    """Valid and test ranking problems with fixed negatives (the test set's seed is offset by one)."""
    return {split: build_eval_set(data.sequences, data.targets(split), data.vocab.num_items, data.vocab.size,
                                  num_negatives, seed + i)
            for i, split in enumerate(("valid", "test"))}


def save_outputs(model: Model, out_dir: Path, item_ids: np.ndarray | None = None) -> None:
    """Whole model state, plus the encoder and each embedding part as reusable components, and the item
    vocabulary (`items.json`: the original id of token i + 1) so another model can map its items onto the rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if item_ids is not None:
        (out_dir / ITEMS_FILE).write_text(json.dumps({"pad": 0, "item_ids": np.asarray(item_ids).tolist()}))
    torch.save(model.state_dict(), out_dir / "model.pt")
    save_component(model.encoder, out_dir / "encoder", "encoders")
    if isinstance(model.embedding, EmbeddingStack):
        for label, part in model.embedding.parts.items():
            if getattr(part, "component_config", None) is not None:
                save_component(part, out_dir / "embedding" / label, "embeddings")


def format_table(result: dict[str, Any]) -> str:
    """A small human-readable table of the valid and test metrics, model beside popularity."""
    head = (f"{'split':<6} {'scorer':<18} {'HR@10 samp':>10} {'NDCG@10 samp':>12} {'HR@10 full':>10} "
            f"{'NDCG@10 full':>12}")
    lines = [f"recipe {result['recipe']}: best epoch {result['best_epoch']} of {result['epochs_run']}, "
             f"{result['wall_seconds']:.1f} s", head]
    for split in ("valid", "test"):
        for scorer in ("model", "popularity"):
            m = result[split][scorer]
            name = result["recipe"] if scorer == "model" else scorer
            lines.append(f"{split:<6} {name:<18} {m['hr@10_sampled']:>10.4f} {m['ndcg@10_sampled']:>12.4f} "
                         f"{m['hr@10_full']:>10.4f} {m['ndcg@10_full']:>12.4f}")
    return "\n".join(lines)


def run(cfg: PretrainConfig) -> dict[str, Any]:
    """Train, select the best epoch on valid, evaluate test, write outputs; returns what metrics.json holds."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.threads)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(previous_threads)


def fit(model: Model, task: SequenceTask, valid_set: EvalSet, cfg: PretrainConfig, device: torch.device,
        rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train with early stopping on valid; loads the best epoch's weights and returns it and the history."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state": None, "valid": None}
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        loss = train_epoch(model, task.train_batches(cfg.train.batch_size, rng),
                           task.num_train_batches(cfg.train.batch_size), optimizer, cfg.train, device,
                           f"{cfg.recipe} epoch {epoch}/{cfg.train.epochs}")
        valid = ranking_metrics(score_users(model, task, "valid", cfg.train.eval_batch_size, device), valid_set)
        history.append({"epoch": epoch, "loss": loss, "valid": valid, "seconds": time.perf_counter() - t0})
        if cfg.train.progress:
            tqdm.write(f"epoch {epoch}: loss {loss:.4f}  valid " +
                       "  ".join(f"{k} {v:.4f}" for k, v in valid.items()), file=sys.stderr)
        if valid[cfg.train.select_metric] > best["score"]:
            best = {"score": valid[cfg.train.select_metric], "epoch": epoch, "valid": valid,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        elif cfg.train.patience and epoch - best["epoch"] >= cfg.train.patience:
            break
    model.load_state_dict(best["state"])
    return best, history


def _run(cfg: PretrainConfig) -> dict[str, Any]:
    """The body of `run`, under the configured thread count."""
    start = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    objective = objective_of(cfg)
    data = build_sequences(load_ratings(cfg.data.path), max_users=cfg.data.max_users)
    task = SequenceTask(data, objective, cfg.data.max_len, stride=cfg.data.stride, mask_prob=cfg.data.mask_prob,
                        mask_last_prob=cfg.data.mask_last_prob, max_tgt=cfg.data.max_tgt)
    sets = eval_sets(data, cfg.data.num_negatives, cfg.data.eval_seed)
    model = build_model(cfg.model, vocab_size=data.vocab.size, max_len=cfg.data.max_len).to(device)
    best, history = fit(model, task, sets["valid"], cfg, device, rng)
    test = ranking_metrics(score_users(model, task, "test", cfg.train.eval_batch_size, device), sets["test"])
    popular = popularity_scores(data.train(), data.vocab.size)
    pop = {split: ranking_metrics(np.broadcast_to(popular, (len(s.targets), len(popular))), s)
           for split, s in sets.items()}
    seeds = f"{cfg.data.eval_seed} for valid, {cfg.data.eval_seed + 1} for test"
    result = {
        "recipe": cfg.recipe, "objective": objective, "device": str(device),
        "test": {"model": test, "popularity": pop["test"]},
        "valid": {"model": best["valid"], "popularity": pop["valid"]},
        "best_epoch": best["epoch"], "epochs_run": len(history), "history": history,
        "wall_seconds": time.perf_counter() - start,
        "num_users": len(data.sequences), "num_items": data.vocab.num_items,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "protocol": {k: v.format(n=cfg.data.num_negatives, seed=seeds) for k, v in PROTOCOL.items()},
        "config": to_dict(cfg),
    }
    out_dir = Path(cfg.output_dir)
    save_outputs(model, out_dir, data.item_ids)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry: config errors and missing data are one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m pretrain_stack.pretrain", allow_abbrev=False,
                                     description="Train a sequence recipe; any other --key value overrides the config.")
    parser.add_argument("--config", required=True, help="recipe file (YAML or JSON)")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(PretrainConfig, args.config, overrides)
        result = run(cfg)
    except (ConfigError, DatasetNotFetched) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"wrote {Path(cfg.output_dir) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
