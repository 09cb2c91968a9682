"""Packaging: the distribution name is one the package index does not already give to another project, while the
import name, the `mtrec` command and the version checkpoints record stay mtrec's own."""

from __future__ import annotations

import tomllib
from pathlib import Path

import mtrec
from mtrec.checkpoint import library_versions

ROOT = Path(__file__).resolve().parents[2]


def test_distribution_name_command_and_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "mtrec-prompt"  # "mtrec" in the index is an unrelated project
    assert project["scripts"] == {"mtrec": "mtrec.cli:main"} and project["version"] == mtrec.__version__
    assert library_versions()["mtrec"] == mtrec.__version__
