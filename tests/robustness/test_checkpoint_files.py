"""Issue 13 case 12: a checkpoint directory follows the umask like any directory the user creates, and a
checkpoint's files are its own: a symbolic link inside one (to weights, vocabularies, the manifest or anything
else) is refused on load instead of followed."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import mtrec
from mtrec.quant import QuantizedModel, preset_plan


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


@pytest.fixture()
def umask():
    """Set a umask for one test and restore the previous one."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_checkpoint_directory_follows_the_umask(model, tmp_path, umask, mask):
    umask(mask)
    path = mtrec.save(model, tmp_path / "ckpt")
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask
    for file in path.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask, file.name


def test_quantized_checkpoint_directory_follows_the_umask(model, tmp_path, umask):
    umask(0o022)
    path = mtrec.save(QuantizedModel.from_model(model, preset_plan(model, "int8")), tmp_path / "q")
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["weights.pt", "vocabularies.parquet", "manifest.json"])
def test_symlinked_file_inside_a_checkpoint_is_refused(adult, model, tmp_path, name):
    path = mtrec.save(model, tmp_path / "ckpt")
    outside = tmp_path / f"outside-{name}"
    (path / name).rename(outside)
    (path / name).symlink_to(outside)
    with pytest.raises(mtrec.CheckpointError, match=f"{name} is a symbolic link"):
        mtrec.load(path)


def test_symlinked_extra_entry_is_refused_and_a_symlinked_checkpoint_dir_is_fine(adult, model, tmp_path):
    path = mtrec.save(model, tmp_path / "ckpt")
    link = tmp_path / "alias"
    link.symlink_to(path, target_is_directory=True)
    rows = adult.test.head(200)
    assert np.array_equal(mtrec.load(link).predict(rows).to_numpy(), model.predict(rows).to_numpy())
    (path / "notes").symlink_to(tmp_path)
    with pytest.raises(mtrec.CheckpointError, match="notes is a symbolic link"):
        mtrec.load(path)
