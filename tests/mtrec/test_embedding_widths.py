"""Per-table embedding widths end to end: a model whose tables differ in width trains, saves and reloads with
identical predictions, and every table has the width asked for."""

from __future__ import annotations

import numpy as np
import pytest

import mtrec
from pretrain_stack.errors import ConfigError

WIDTHS = {"age": 12, "fnlwgt": 8, "gender": 4, "race": 4}


def test_a_model_with_a_width_per_table_trains_saves_and_reloads(adult, tmp_path):
    part = {"name": "sparse_features", "embedding_dim": 4, "embedding_dims": WIDTHS}
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult",
                              overrides={"model.embedding.parts": [part, {"name": "dense_features"}]})
    result = mtrec.train(model, adult.train.iloc[:4096], epochs=1, batch_size=512, seed=0, progress=False)
    assert result.steps == 8
    emb = model.network.embedding.parts["sparse_features"]
    widths = {c.name: c.embedding_dim for c in emb.ebc.embedding_bag_configs()}
    assert widths == {f"t_{f}": WIDTHS.get(f, 4) for f in adult.schema.sparse}
    assert emb.output_dim == sum(WIDTHS.values()) + 4 * (len(adult.schema.sparse) - len(WIDTHS))
    loaded = mtrec.load(mtrec.save(model, tmp_path / "widths"))
    rows = adult.test.iloc[:2000]
    assert np.array_equal(loaded.predict(rows).to_numpy(), model.predict(rows).to_numpy())


def test_a_width_the_fused_kernels_cannot_train_names_its_table(adult):
    part = {"name": "sparse_features", "embedding_dim": 4, "embedding_dims": {"race": 6}}
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult",
                              overrides={"model.embedding.parts": [part, {"name": "dense_features"}]})
    with pytest.raises(ConfigError, match="embedding_dims.race: table t_race is 6 wide"):
        mtrec.train(model, adult.train.iloc[:1024], epochs=1, batch_size=512, seed=0, progress=False)
