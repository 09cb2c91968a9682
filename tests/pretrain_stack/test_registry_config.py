"""Registry and config errors name the key; overrides apply as defaults < file < command line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import yaml
from torch import nn

from pretrain_stack import ENCODERS, ConfigError, Registry, build_model, load_config
from pretrain_stack.pretrain import PretrainConfig

SASREC = "pretrain_stack/configs/sasrec.yaml"


class Toy(nn.Module):
    """A component with one required, one typed optional and one list parameter."""

    def __init__(self, width: int, rate: float = 0.5, tags: list[str] | None = None) -> None:
        super().__init__()
        self.width, self.rate, self.tags = width, rate, tags


@pytest.fixture
def registry() -> Registry:
    reg = Registry("toys")
    reg.register("toy")(Toy)
    return reg


@dataclass
class Train:
    epochs: int = 1
    lr: float = 0.1
    seed: int = 0


@dataclass
class Data:
    seed: int = 7
    name: str = "ml"


@dataclass
class Schema:
    train: Train = field(default_factory=Train)
    data: Data = field(default_factory=Data)
    output_dir: str = "out"


def test_unknown_component_lists_known_names(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="unknown component 'nope'.*known: toy") as err:
        registry.build({"name": "nope"}, where="model.encoder")
    assert err.value.key == "toys.name"


def test_duplicate_registration_is_rejected(registry: Registry) -> None:
    class Other(nn.Module):
        pass

    registry.register("toy")(Toy)
    with pytest.raises(ValueError, match="'toy' is already registered"):
        registry.register("toy")(Other)


@pytest.mark.parametrize("spec, key", [
    ({"name": "toy", "width": 3, "bogus": 1}, "enc.bogus"),
    ({"name": "toy", "width": "wide"}, "enc.width"),
    ({"name": "toy", "width": 3, "rate": True}, "enc.rate"),
    ({"name": "toy", "width": 3, "tags": [1]}, "enc.tags"),
    ({"name": "toy"}, "enc.width"),
    ({"width": 3}, "enc.name"),
])
def test_component_errors_name_the_key(registry: Registry, spec: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        registry.build(spec, where="enc")
    assert err.value.key == key
    assert key in str(err.value)


def test_build_fills_context_and_accepts_int_for_float(registry: Registry) -> None:
    toy = registry.build({"name": "toy", "rate": 1}, where="enc", context={"width": 5})
    assert (toy.width, toy.rate) == (5, 1)
    assert toy.component_config == {"name": "toy", "width": 5, "rate": 1}


def test_model_section_errors_name_the_key() -> None:
    cfg = yaml.safe_load(open(SASREC))["model"]
    with pytest.raises(ConfigError) as err:
        build_model({**cfg, "encoderz": {}}, vocab_size=10, max_len=8)
    assert err.value.key == "model.encoderz"
    with pytest.raises(ConfigError) as err:
        build_model({k: v for k, v in cfg.items() if k != "target"}, vocab_size=10, max_len=8)
    assert err.value.key == "model.target"
    with pytest.raises(ConfigError) as err:
        build_model({**cfg, "encoder": {**cfg["encoder"], "layers": "two"}}, vocab_size=10, max_len=8)
    assert err.value.key == "model.encoder.layers"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_precedence_defaults_file_override(tmp_path, suffix: str) -> None:
    body = {"train": {"epochs": 5, "lr": 0.01}, "output_dir": "from_file"}
    path = tmp_path / f"cfg{suffix}"
    path.write_text(json.dumps(body) if suffix == ".json" else yaml.safe_dump(body))
    cfg = load_config(Schema, path, ["--epochs", "9"])
    assert cfg.train.epochs == 9  # override beats file
    assert cfg.train.lr == 0.01  # file beats default
    assert cfg.data.name == "ml"  # default
    assert cfg.output_dir == "from_file"


def test_bare_and_dotted_overrides_agree(tmp_path) -> None:
    bare = load_config(Schema, None, ["--epochs", "3", "--output-dir", "x"])
    dotted = load_config(Schema, None, ["--train.epochs=3", "--output_dir", "x"])
    assert bare == dotted
    assert bare.train.epochs == 3 and bare.output_dir == "x"


def test_ambiguous_bare_key_names_both_paths() -> None:
    with pytest.raises(ConfigError, match="train.seed.*data.seed|data.seed.*train.seed") as err:
        load_config(Schema, None, ["--seed", "1"])
    assert err.value.key == "seed"
    assert load_config(Schema, None, ["--data.seed", "1"]).data.seed == 1


@pytest.mark.parametrize("tokens, key", [
    (["--bogus", "3"], "bogus"),
    (["--train.bogus", "3"], "train.bogus"),
    (["--epochs", "many"], "train.epochs"),
    (["--lr", "[1]"], "train.lr"),
])
def test_override_errors_name_the_key(tokens: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Schema, None, tokens)
    assert err.value.key == key


@pytest.mark.parametrize("body, key", [
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"train": {"epochs": "3"}}, "train.epochs"),
    ({"train": 3}, "train"),
    ({"extra": 1}, "extra"),
])
def test_file_errors_name_the_key(tmp_path, body: dict, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError) as err:
        load_config(Schema, path)
    assert err.value.key == key


def test_invalid_and_missing_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(Schema, bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Schema, tmp_path / "missing.yaml")


def test_pretrain_config_validates_model_sections_at_load() -> None:
    cfg = load_config(PretrainConfig, SASREC, ["--epochs", "2", "--model.encoder.layers", "3"])
    assert cfg.train.epochs == 2 and cfg.model["encoder"]["layers"] == 3
    assert cfg.data.max_len == 50  # bare key resolves into the data section
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, SASREC, ["--model.encoder.bogus", "1"])
    assert err.value.key == "model.encoder.bogus"
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, SASREC, ["--model.encoder.name", "nope"])
    assert err.value.key == "encoders.name"
    assert "transformer" in ENCODERS
