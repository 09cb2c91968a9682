"""Case 3: saving never deletes what is not an mtrec checkpoint, and replaces a checkpoint only when asked."""

from __future__ import annotations

import os

import pytest
import torch

import mtrec
from mtrec.outputs import temporaries


def _weights(path):
    return torch.load(path / "weights.pt", weights_only=True)["network"]


def test_save_refuses_a_directory_holding_user_files(small_model, tmp_path):
    target = tmp_path / "d"
    (target / "sub").mkdir(parents=True)
    (target / "precious.csv").write_text("x\n")
    for overwrite in (False, True):
        with pytest.raises(mtrec.OutputError, match="not an mtrec output"):
            mtrec.save(small_model, target, overwrite=overwrite)
    assert (target / "precious.csv").read_text() == "x\n" and (target / "sub").is_dir()
    assert sorted(p.name for p in target.iterdir()) == ["precious.csv", "sub"]
    assert temporaries(target) == []


def test_save_into_the_working_directory_is_refused(small_model, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mtrec.OutputError):
        mtrec.save(small_model, ".", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_save_refuses_a_file_and_a_checkpoint_with_a_stranger_inside(small_model, tmp_path):
    afile = tmp_path / "scores.parquet"
    afile.write_bytes(b"data")
    with pytest.raises(mtrec.OutputError, match="not a directory"):
        mtrec.save(small_model, afile, overwrite=True)
    assert afile.read_bytes() == b"data"
    ckpt = mtrec.save(small_model, tmp_path / "ckpt")
    (ckpt / "my_notes.md").write_text("keep")
    with pytest.raises(mtrec.OutputError, match="my_notes.md"):
        mtrec.save(small_model, ckpt, overwrite=True)
    assert (ckpt / "my_notes.md").read_text() == "keep"
    mtrec.load(ckpt)


def test_existing_checkpoint_is_replaced_only_with_overwrite(small_model, tmp_path):
    ckpt = mtrec.save(small_model, tmp_path / "ckpt")
    (ckpt / "train_report.json").write_text("{}")
    before = _weights(ckpt)
    other = mtrec.build_model("shared_bottom", schema=small_model.schema, tasks=small_model.tasks, dataset="adult")
    other.build_network(small_model.vocabs, seed=1)
    with pytest.raises(mtrec.OutputError, match="overwrite"):
        mtrec.save(other, ckpt)
    assert all(torch.equal(before[k], v) for k, v in _weights(ckpt).items())
    mtrec.save(other, ckpt, overwrite=True)
    after = _weights(ckpt)
    assert any(not torch.equal(before[k], v) for k, v in after.items())
    assert not (ckpt / "train_report.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_an_empty_directory_is_used(small_model, tmp_path):
    (tmp_path / "empty").mkdir()
    path = mtrec.save(small_model, tmp_path / "empty")
    assert mtrec.load(path).tasks == small_model.tasks


def test_quantized_save_follows_the_same_rules(small_model, tmp_path):
    from mtrec.quant import QuantizedModel
    from mtrec.quant.presets import preset_plan

    quantized = QuantizedModel.from_model(small_model, preset_plan(small_model, "int8"))
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "precious.csv").write_text("x")
    with pytest.raises(mtrec.OutputError):
        mtrec.save(quantized, tmp_path / "q", overwrite=True)
    assert (tmp_path / "q" / "precious.csv").exists()
    path = mtrec.save(quantized, tmp_path / "q2")
    with pytest.raises(mtrec.OutputError, match="overwrite"):
        mtrec.save(quantized, path)
    mtrec.save(quantized, path, overwrite=True)
    assert isinstance(mtrec.load(path), QuantizedModel)
