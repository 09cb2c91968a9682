"""The package's layering: loading a checkpoint and predicting needs nothing from training or task-adding code,
the model alone keeps its tasks, schema, extensions and loss consistent, and heads rebuild from a registry."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest

import mtrec
from mtrec.models.heads import HEADS, build_head
from pretrain_stack.errors import ConfigError

PREDICT_ONLY = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import mtrec
    model = mtrec.load(sys.argv[1])
    rows = pd.read_parquet(sys.argv[2])
    probs = model.predict(rows)
    # `mtrec.train` itself is an empty namespace package that mtrec's lazy exports bind early (so that the
    # function mtrec.train is never shadowed by it): only modules with code count
    loaded = sorted(m for m in sys.modules if m.startswith(("mtrec.train.", "mtrec.tasks")))
    print(json.dumps({"columns": list(probs.columns), "rows": len(probs), "loaded": loaded}))
""")


@pytest.fixture(scope="module")
def checkpoints(trained_adult_mptrec, adult, tmp_path_factory):
    """An fp32 checkpoint with an added task, and a quantized one of it, plus a few rows to score."""
    model = copy.deepcopy(trained_adult_mptrec[0])
    mtrec.add_task(model, "education", adult.train.head(4000), valid=adult.valid.head(1000), epochs=1,
                   progress=False)
    root = tmp_path_factory.mktemp("layering")
    fp32 = mtrec.save(model, root / "fp32")
    quantized = mtrec.save(mtrec.quantize(model, calibration=adult.valid.head(2000), mode="fully_quant", progress=False),
                           root / "int8")
    rows = root / "rows.parquet"
    adult.test.head(50).to_parquet(rows)
    return {"fp32": fp32, "int8": quantized, "rows": rows}


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_load_and_predict_import_no_training_code(checkpoints, kind):
    out = subprocess.run([sys.executable, "-c", PREDICT_ONLY, str(checkpoints[kind]), str(checkpoints["rows"])],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["columns"] == ["income", "married", "education"] and report["rows"] == 50
    assert report["loaded"] == [], report["loaded"]


def test_attach_task_keeps_the_model_consistent(checkpoints):
    model = mtrec.load(checkpoints["fp32"])
    assert model.tasks == ["income", "married", "education"]
    assert model.schema.tasks == model.tasks and model.network.target.tasks == model.tasks
    assert len(model.network.target.weights) == 3 and [e["task"] for e in model.extensions] == ["education"]
    head = model.network.task_heads.heads["education"]
    with pytest.raises(mtrec.DataError, match="already a task"):
        model.attach_task("education", head, {"method": "prompt"})
    assert model.tasks == ["income", "married", "education"]


def test_heads_rebuild_from_the_registry(checkpoints):
    model = mtrec.load(checkpoints["fp32"])
    spec = model.extensions[0]["head"]
    assert spec["kind"] in HEADS and spec["kind"] == "mptrec_prompt"
    rebuilt = build_head(spec)
    assert type(rebuilt) is type(model.network.task_heads.heads["education"]) and rebuilt.spec() == spec
    with pytest.raises(ConfigError, match="unknown component 'magic'"):
        build_head({"kind": "magic", "args": {}})
    with pytest.raises(ConfigError, match="extensions.head.bogus"):
        build_head({"kind": spec["kind"], "args": {**spec["args"], "bogus": 1}})


def test_replace_with_takes_the_whole_model(trained_adult_mptrec, adult):
    model = copy.deepcopy(trained_adult_mptrec[0])
    other = copy.deepcopy(model)
    other.tasks.append("x")
    model.replace_with(other)
    assert model.network is other.network and model.tasks == ["income", "married", "x"]
    stem = mtrec.build_model("stem", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    with pytest.raises(ValueError, match="cannot replace"):
        model.replace_with(stem)


def test_a_recipe_naming_mtrec_components_loads_before_any_model_is_imported() -> None:
    code = ("import sys\nfrom mtrec.recipe import load_recipe\nassert 'mtrec.models.sequence' not in sys.modules\n"
            "recipe = load_recipe('mptrec', dataset='movielens_seq')\n"
            "print([p['name'] for p in recipe.model['embedding']['parts']])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['sparse_features', 'sequence', 'dense_features']"
