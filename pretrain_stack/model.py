"""Model = embedding + encoder (+ target embedding + decoder) + target, assembled from registries by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import DECODERS, EMBEDDINGS, ENCODERS, TARGETS, TGT_EMBEDDINGS, Registry

SECTIONS = ("embedding", "encoder", "tgt_embedding", "decoder", "target")


class EmbeddingStack(nn.Module):
    """Named embedding parts combined by sum (same width) or concat (along the last dim), then dropout."""

    def __init__(self, parts: dict[str, nn.Module], combine: str = "sum", dropout: float = 0.0,
                 layer_norm: bool = False, hidden_size: int | None = None) -> None:
        super().__init__()
        if combine not in ("sum", "concat"):
            raise ConfigError(f"embedding.combine: expected 'sum' or 'concat', got {combine!r}", key="embedding.combine")
        self.parts = nn.ModuleDict(parts)
        self.combine = combine
        self.norm = nn.LayerNorm(hidden_size) if layer_norm and hidden_size else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    @property
    def output_dim(self) -> int:
        dims = [getattr(p, "output_dim", 0) for p in self.parts.values()]
        return sum(dims) if self.combine == "concat" else max(dims)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        outs = [part(batch) for part in self.parts.values()]
        if self.combine == "sum":
            out = outs[0]
            for o in outs[1:]:
                out = out + o
        else:
            out = torch.cat(outs, dim=-1)
        return self.dropout(self.norm(out))


class Model(nn.Module):
    """The five-part model. `forward(batch)` returns the target's dict (losses and outputs)."""

    def __init__(self, embedding: nn.Module, encoder: nn.Module, target: nn.Module,
                 tgt_embedding: nn.Module | None = None, decoder: nn.Module | None = None) -> None:
        super().__init__()
        if (tgt_embedding is None) != (decoder is None):
            raise ConfigError("tgt_embedding and decoder must be given together", key="decoder")
        self.embedding = embedding
        self.encoder = encoder
        self.tgt_embedding = tgt_embedding
        self.decoder = decoder
        self.target = target

    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Hidden states the target reads: encoder output, or decoder output for encoder-decoder models."""
        hidden = self.encoder(self.embedding(batch), batch)
        if self.decoder is not None:
            hidden = self.decoder(self.tgt_embedding(batch), hidden, batch)
        return hidden

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.target(self.encode(batch), batch)


def _embedding_section(spec: Any, registry: Registry, where: str, context: dict[str, Any],
                       require_all: bool = True, build: bool = True) -> EmbeddingStack | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("parts"), list) or not spec["parts"]:
        raise ConfigError(f"{where}: expected a mapping with a non-empty list 'parts'", key=f"{where}.parts")
    extra = set(spec) - {"parts", "combine", "dropout", "layer_norm"}
    if extra:
        raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key (allowed: parts, combine, dropout, layer_norm)",
                          key=f"{where}.{sorted(extra)[0]}")
    parts: dict[str, nn.Module] = {}
    for i, part in enumerate(spec["parts"]):
        key = f"{where}.parts[{i}]"
        label = part.get("name", f"part{i}") if isinstance(part, dict) else f"part{i}"
        if label in parts:
            label = f"{label}_{i}"
        if build:
            parts[label] = registry.build(part, where=key, context=context)
        else:
            registry.validate(part, key, context, require_all=require_all)
    if not build:
        return None
    return EmbeddingStack(parts, combine=spec.get("combine", "sum"), dropout=float(spec.get("dropout", 0.0)),
                          layer_norm=bool(spec.get("layer_norm", False)), hidden_size=context.get("hidden_size"))


def validate_model_config(model_cfg: dict[str, Any], context: dict[str, Any] | None = None) -> None:
    """Check every section's keys and types without building (values the data supplies may be missing)."""
    _walk(model_cfg, context or {}, build=False)


def build_model(model_cfg: dict[str, Any], **context: Any) -> Model:
    """Assemble a Model from a config mapping; `context` supplies values from the data (vocab_size, schema...)."""
    return _walk(model_cfg, context, build=True)


def _walk(model_cfg: dict[str, Any], context: dict[str, Any], build: bool) -> Model:
    if not isinstance(model_cfg, dict):
        raise ConfigError("model: expected a mapping", key="model")
    unknown = set(model_cfg) - set(SECTIONS) - {"hidden_size"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"model.{key}: unknown section (allowed: hidden_size, {', '.join(SECTIONS)})", key=f"model.{key}")
    for required in ("embedding", "encoder", "target"):
        if not model_cfg.get(required):
            raise ConfigError(f"model.{required}: missing", key=f"model.{required}")
    ctx = dict(context)
    if "hidden_size" in model_cfg:
        ctx.setdefault("hidden_size", model_cfg["hidden_size"])
    embedding = _embedding_section(model_cfg["embedding"], EMBEDDINGS, "model.embedding", ctx,
                                   require_all=build, build=build)
    if embedding is not None:
        ctx.setdefault("input_dim", embedding.output_dim)
    tgt_embedding = None
    if model_cfg.get("tgt_embedding"):
        tgt_embedding = _embedding_section(model_cfg["tgt_embedding"], TGT_EMBEDDINGS, "model.tgt_embedding", ctx,
                                           require_all=build, build=build)
    if bool(model_cfg.get("tgt_embedding")) != bool(model_cfg.get("decoder")):
        raise ConfigError("model.decoder: tgt_embedding and decoder must be given together", key="model.decoder")
    sections = {"encoder": ENCODERS, "decoder": DECODERS, "target": TARGETS}
    built: dict[str, nn.Module | None] = {}
    for name, registry in sections.items():
        spec = model_cfg.get(name)
        if not spec:
            built[name] = None
            continue
        if build:
            module = registry.build(spec, where=f"model.{name}", context=ctx)
            built[name] = module
            out_dim = getattr(module, "output_dim", None)
            if out_dim is not None:
                ctx["input_dim"] = out_dim
        else:
            registry.validate(spec, f"model.{name}", ctx, require_all=False)
    if not build:
        return None  # type: ignore[return-value]
    return Model(embedding, built["encoder"], built["target"], tgt_embedding=tgt_embedding, decoder=built["decoder"])
