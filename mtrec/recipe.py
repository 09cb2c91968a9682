"""Training settings and model recipes (YAML under mtrec/configs), validated on load with errors naming the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretrain_stack import validate_model_config
from pretrain_stack.config import load_config
from pretrain_stack.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODELS = ("single", "shared_bottom", "mmoe", "ple", "stem", "mptrec")
EMBEDDING_OPTIMIZERS = ("adagrad", "rowwise_adagrad", "sgd")


@dataclass(frozen=True)
class FlatnessConfig:
    """Sharpness-aware training of the dense parameters (`train.flatness`): each step first takes the dense
    gradient g at the weights w, moves them to w + e with e = rho * g / ||g|| (adaptive, ASAM: e = rho * T^2 g /
    ||T g|| with T = |w| + eta, so the radius is relative to each weight's size), and descends with the gradient
    there; the embedding tables keep their fused optimizer, updated once per step. `every` k > 1 makes only every
    k-th step sharpness-aware (the others are plain steps), to trade flatness against time. Plain SAM is the
    default: on Adult (seed 0) cnf after SAM pre-training kept the old tasks closer than after ASAM (income -0.0034
    against -0.0096 at the same cnf_lambda and a new-task AUC 0.8680 against 0.8696)."""

    rho: float = 0.05
    adaptive: bool = False
    eta: float = 0.01
    every: int = 1

    @classmethod
    def from_value(cls, value: Any, where: str = "train.flatness") -> FlatnessConfig | None:
        """None (off), a FlatnessConfig, or a mapping of its fields; ConfigError naming the key otherwise."""
        if value is None or isinstance(value, FlatnessConfig):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping (rho, adaptive, eta, every), got {value!r}", key=where)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in value:
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(known))})",
                                  key=f"{where}.{key}")
        cfg = cls(**value)

        def number(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool)

        checks = {"rho": number(cfg.rho) and cfg.rho > 0, "eta": number(cfg.eta) and cfg.eta >= 0,
                  "every": isinstance(cfg.every, int) and not isinstance(cfg.every, bool) and cfg.every >= 1,
                  "adaptive": isinstance(cfg.adaptive, bool)}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"{where}.{key}: invalid value {getattr(cfg, key)!r} (rho > 0, eta >= 0, "
                                  "every an int >= 1, adaptive true/false)", key=f"{where}.{key}")
        return cfg


@dataclass
class TrainConfig:
    """How a multi-task model is trained: dense Adam + fused FBGEMM optimizer for the embedding tables."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    embedding_lr: float = 0.05
    embedding_optimizer: str = "adagrad"
    weight_decay: float = 0.0
    patience: int = 2
    seed: int = 0
    eval_batch_size: int = 8192
    max_steps: int | None = None
    threads: int = 0
    autocast_bf16: bool | None = None  # None: bf16 where the CPU has native bf16 (train/execution.py)
    compile: bool | None = None  # None: torch.compile when measured to win on a long enough run
    shuffle: bool = True  # False: every epoch visits the rows in their given order (frames and file streams)
    flatness: dict[str, Any] | None = None  # sharpness-aware dense steps: FlatnessConfig fields (None: plain steps)

    def validate(self) -> None:
        """Range checks that types alone cannot express."""
        if self.embedding_optimizer not in EMBEDDING_OPTIMIZERS:
            raise ConfigError(f"train.embedding_optimizer: expected one of {', '.join(EMBEDDING_OPTIMIZERS)}, "
                              f"got {self.embedding_optimizer!r}", key="train.embedding_optimizer")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be >= 1, got {getattr(self, key)}", key=f"train.{key}")
        for key in ("lr", "embedding_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"train.{key}: must be > 0, got {getattr(self, key)}", key=f"train.{key}")
        FlatnessConfig.from_value(self.flatness)


@dataclass
class Recipe:
    """A model recipe: the pretrain_stack model sections plus its training settings."""

    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Check every model section against its component and the training ranges."""
        import mtrec.models  # noqa: F401  (registers mtrec's components, e.g. `sequence`, before they are looked up)

        validate_model_config(self.model)
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for manifests."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        """Rebuild (and validate) a recipe saved with to_dict."""
        from pretrain_stack.config import from_dict

        recipe = from_dict(cls, data)
        recipe.validate()
        return recipe


def recipe_path(model: str, dataset: str | None = None) -> Path | None:
    """The shipped recipe file for (model, dataset); None for a dataset without one (a user's own data gets a
    recipe derived from it, mtrec/recipe_defaults.py). An unknown model fails naming the known ones."""
    known = sorted({p.stem.rsplit("_", 1)[0] for p in CONFIG_DIR.glob("*_*.yaml")})
    if model not in known:
        raise ConfigError(f"model: no recipe for {model!r} (known models: {', '.join(known)})", key="model")
    for name in ([dataset, dataset.split("-")[0]] if dataset else []):
        path = CONFIG_DIR / f"{model}_{name}.yaml"
        if path.exists():
            return path
    return None


def load_recipe(model: str | Path, dataset: str | None = None,
                overrides: dict[str, Any] | list[str] | None = None) -> Recipe:
    """Load a recipe by file path, or the shipped one of (model, dataset), with overrides applied."""
    path = Path(model) if str(model).endswith((".yaml", ".yml", ".json")) else recipe_path(str(model), dataset)
    if path is None:
        shipped = sorted({p.stem.rsplit("_", 1)[1] for p in CONFIG_DIR.glob(f"{model}_*.yaml")})
        raise ConfigError(f"dataset: no shipped {model} recipe for {dataset!r} (shipped: {', '.join(shipped)}); "
                          "mtrec.build_model derives one from your data", key="dataset")
    return load_config(Recipe, path, overrides)
