"""Synthetic multi-task data of any size: Zipf ids over many tables, labels from a known logistic model.

Every (table, id) has a latent vector (hashed from the seed, so no table is stored, whatever the cardinality).
A row's representation h is a weighted sum of its ids' latents (bags averaged) plus a projection of its
dense features. Latent dimensions form one block shared by all tasks and one block per task; task t's logit
is bias_t + w_t . h, where w_t mixes a common shared direction (correlated tasks) with its own block, and
labels are Bernoulli(sigmoid(logit)). The last `new_tasks` tasks (default one) are held back as new tasks.

Hidden features (`hidden_tables` > 0): the last single-valued tables feed a separate latent block that no
pre-training task reads; the last `hidden_tasks` held-back tasks put the share `hidden_weight` of their logit's
variance on it. A model trained on the pre-training tasks has no reason to learn those tables, so such tasks test
whether an added task can still read input the backbone ignored.

Rows are generated in fixed blocks of `block_rows`, each from its own seeded generator, so a row depends only
on the spec and its position: any chunking yields the same rows, and 10M+ rows stream without being held.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtrec.data.datasets import Dataset
from mtrec.data.schema import Schema

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape and label model of a synthetic dataset (`tables` counts all sparse features, bags included;
    `shared` is the fraction of each task's logit weight on the latent block all tasks share)."""

    tables: int = 8
    cardinality: int = 10_000
    tasks: int = 3
    seed: int = 0
    multi_valued: int = 1
    dense: int = 2
    zipf: float = 1.1
    max_bag: int = 5
    shared_dim: int = 4
    task_dim: int = 2
    signal: float = 2.5
    shared: float = 0.6
    block_rows: int = 8192
    new_tasks: int = 1
    hidden_tables: int = 0
    hidden_tasks: int = 0
    hidden_weight: float = 0.7
    hidden_dim: int = 2

    def __post_init__(self) -> None:
        if self.tables < 1 or not 0 <= self.multi_valued <= self.tables:
            raise ValueError(f"need tables >= 1 and 0 <= multi_valued <= tables, got {self.tables}, "
                             f"{self.multi_valued}")
        for name in ("cardinality", "tasks", "max_bag", "shared_dim", "task_dim", "block_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dense < 0 or self.zipf <= 0 or not 0 <= self.shared <= 1:
            raise ValueError(f"need dense >= 0, zipf > 0 and 0 <= shared <= 1, got {self.dense}, {self.zipf}, "
                             f"{self.shared}")
        if self.new_tasks < 0 or self.hidden_dim < 1 or not 0 <= self.hidden_weight <= 1:
            raise ValueError(f"need new_tasks >= 0, hidden_dim >= 1 and 0 <= hidden_weight <= 1, got "
                             f"{self.new_tasks}, {self.hidden_dim}, {self.hidden_weight}")
        if not 0 <= self.hidden_tables <= self.tables - self.multi_valued:
            raise ValueError(f"hidden_tables must be in [0, {self.tables - self.multi_valued}] (single-valued "
                             f"tables), got {self.hidden_tables}")
        if not 0 <= self.hidden_tasks <= self.new_tasks or (self.hidden_tasks and not self.hidden_tables):
            raise ValueError(f"hidden_tasks must be in [0, new_tasks={self.new_tasks}] and needs hidden_tables > 0, "
                             f"got {self.hidden_tasks}")

    @property
    def single_names(self) -> list[str]:
        """Single-valued sparse columns."""
        return [f"s{i}" for i in range(self.tables - self.multi_valued)]

    @property
    def multi_names(self) -> list[str]:
        """Multi-valued sparse columns (bags of 1..max_bag ids)."""
        return [f"m{i}" for i in range(self.multi_valued)]

    @property
    def dense_names(self) -> list[str]:
        """Dense float columns (standard normal)."""
        return [f"d{i}" for i in range(self.dense)]

    @property
    def task_names(self) -> list[str]:
        """Pre-training tasks."""
        return [f"task{i}" for i in range(self.tasks)]

    @property
    def new_task_names(self) -> list[str]:
        """The held-back tasks, generated from the same model (the last `hidden_tasks` also read hidden tables)."""
        return [f"task{self.tasks + k}" for k in range(self.new_tasks)]

    @property
    def hidden_names(self) -> list[str]:
        """Single-valued tables that only the hidden tasks read (the pre-training tasks ignore them)."""
        return self.single_names[len(self.single_names) - self.hidden_tables:] if self.hidden_tables else []

    @property
    def hidden_task_names(self) -> list[str]:
        """Held-back tasks whose logit reads the hidden tables."""
        return self.new_task_names[self.new_tasks - self.hidden_tasks:] if self.hidden_tasks else []

    def schema(self) -> Schema:
        """The schema of the generated frames (pre-training tasks only)."""
        return Schema(sparse=[*self.single_names, *self.multi_names], dense=self.dense_names,
                      tasks=self.task_names, multi_valued=self.multi_names, source="synthetic")

    def arrays(self, start: int, stop: int) -> dict[str, Any]:
        """Rows [start, stop) as arrays: ids per single column, (lengths, values) per bag, dense, labels."""
        if not 0 <= start <= stop:
            raise ValueError(f"bad row range [{start}, {stop})")
        b = self.block_rows
        parts = [self._block(k) for k in range(start // b, -(-stop // b))]
        out: dict[str, Any] = {}
        for name in [*self.single_names, *self.dense_names, *self.task_names, *self.new_task_names, "_logits"]:
            out[name] = np.concatenate([p[name] for p in parts])[start % b: start % b + stop - start] \
                if parts else np.zeros(0)
        for name in self.multi_names:
            lengths = np.concatenate([p[name][0] for p in parts]) if parts else np.zeros(0, np.int64)
            values = np.concatenate([p[name][1] for p in parts]) if parts else np.zeros(0, np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            lo, hi = start % b, start % b + stop - start
            out[name] = (lengths[lo:hi], values[offsets[lo]:offsets[hi]])
        return out

    def frame(self, start: int, stop: int) -> pd.DataFrame:
        """Rows [start, stop) as a DataFrame (index = global row positions; bags as int64 arrays)."""
        a = self.arrays(start, stop)
        cols: dict[str, Any] = {n: a[n] for n in self.single_names}
        for n in self.multi_names:
            lengths, values = a[n]
            cols[n] = np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
        cols.update({n: a[n] for n in self.dense_names})
        cols.update({n: a[n].astype(np.int8) for n in [*self.task_names, *self.new_task_names]})
        return pd.DataFrame(cols, index=pd.RangeIndex(start, stop))

    def logits(self, start: int, stop: int) -> np.ndarray:
        """The true logits [rows, tasks + 1] of rows [start, stop) (the best any model can do)."""
        return self.arrays(start, stop)["_logits"]

    def _block(self, k: int) -> dict[str, Any]:
        """Generate block k (rows k*block_rows ...) from its own generator."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, k]))
        n = self.block_rows
        params = _params(self)
        out: dict[str, Any] = {}
        h = np.zeros((n, params["dim"]))
        hidden = np.zeros((n, self.hidden_dim))
        hidden_names = self.hidden_names
        for t, name in enumerate(self.single_names):
            ids = _zipf_ids(rng, n, self.cardinality, self.zipf)
            out[name] = ids
            if name in hidden_names:
                k = hidden_names.index(name)
                hidden += _latent(ids, params["hidden_salt"][k]) / np.sqrt(len(hidden_names))
            else:
                h += params["table_scale"][t] * _latent(ids, params["salt"][t])
        for j, name in enumerate(self.multi_names):
            t = len(self.single_names) + j
            lengths = rng.integers(1, self.max_bag + 1, size=n).astype(np.int64)
            values = _zipf_ids(rng, int(lengths.sum()), self.cardinality, self.zipf)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            bag = np.add.reduceat(_latent(values, params["salt"][t]), starts, axis=0) / lengths[:, None]
            h += params["table_scale"][t] * bag * np.sqrt(lengths)[:, None]
            out[name] = (lengths, values)
        x = rng.standard_normal((n, self.dense))
        h += x @ params["dense_proj"]
        for j, name in enumerate(self.dense_names):
            out[name] = x[:, j].astype(np.float32)
        logits = params["bias"] + h @ params["weights"].T
        if hidden_names:
            logits = logits + hidden @ params["hidden_weights"].T
        labels = rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))
        for t, name in enumerate([*self.task_names, *self.new_task_names]):
            out[name] = labels[:, t]
        out["_logits"] = logits
        return out


@functools.lru_cache(maxsize=16)
def _params(spec: SyntheticSpec) -> dict[str, Any]:
    """The label model: per-table weights and hash salts, dense projection, task weights and biases."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
    n_tasks = spec.tasks + spec.new_tasks
    dim = spec.shared_dim + n_tasks * spec.task_dim
    scale = np.exp(rng.normal(0.0, 0.5, spec.tables))
    table_scale = scale / np.sqrt((scale ** 2).sum() + 0.25 * (spec.dense > 0))
    dense_proj = rng.normal(0.0, 0.5 / np.sqrt(max(spec.dense, 1)), (spec.dense, dim))
    common = rng.standard_normal(spec.shared_dim)
    weights = np.zeros((n_tasks, dim))
    for t in range(n_tasks):
        w_shared = common + 0.3 * rng.standard_normal(spec.shared_dim)
        w_own = rng.standard_normal(spec.task_dim)
        lo = spec.shared_dim + t * spec.task_dim
        weights[t, :spec.shared_dim] = np.sqrt(spec.shared) * w_shared / np.linalg.norm(w_shared)
        weights[t, lo:lo + spec.task_dim] = np.sqrt(1 - spec.shared) * w_own / np.linalg.norm(w_own)
    weights *= spec.signal
    salt = rng.integers(0, 2 ** 63, size=(spec.tables, dim), dtype=np.uint64)
    params = {"dim": dim, "table_scale": table_scale, "dense_proj": dense_proj, "weights": weights,
              "bias": rng.uniform(-2.0, 0.0, n_tasks), "salt": salt}
    if spec.hidden_tables:  # drawn after everything else: specs without hidden tables keep their rows
        params["hidden_salt"] = rng.integers(0, 2 ** 63, size=(spec.hidden_tables, spec.hidden_dim), dtype=np.uint64)
        hidden_weights = np.zeros((n_tasks, spec.hidden_dim))
        for t in range(n_tasks - spec.hidden_tasks, n_tasks):
            w = rng.standard_normal(spec.hidden_dim)
            hidden_weights[t] = spec.signal * np.sqrt(spec.hidden_weight) * w / np.linalg.norm(w)
            weights[t] *= np.sqrt(1 - spec.hidden_weight)
        params["hidden_weights"] = hidden_weights
    return params


@functools.lru_cache(maxsize=8)
def _zipf_cdf(cardinality: int, a: float) -> np.ndarray:
    """CDF of a Zipf(a) distribution truncated to ids 0..cardinality-1 (id 0 most frequent)."""
    p = 1.0 / np.arange(1, cardinality + 1, dtype=np.float64) ** a
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def _zipf_ids(rng: np.random.Generator, n: int, cardinality: int, a: float) -> np.ndarray:
    """n Zipf-distributed ids in [0, cardinality)."""
    ids = np.searchsorted(_zipf_cdf(cardinality, a), rng.random(n), side="right")
    return np.minimum(ids, cardinality - 1).astype(np.int64)


def _latent(ids: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Hashed latent vectors [len(ids), dim], uniform with zero mean and unit variance (splitmix64)."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64)[:, None] * _GOLDEN + salt[None, :]
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (u - 0.5) * np.sqrt(12.0)


def make_spec(**kwargs: Any) -> SyntheticSpec:
    """A SyntheticSpec from keyword arguments, with a clear error for unknown ones."""
    known = set(asdict(SyntheticSpec()))
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"unknown synthetic option(s) {unknown}; known: {sorted(known)}")
    return SyntheticSpec(**kwargs)


def synthetic_chunks(rows: int, chunk_rows: int, start: int = 0, **spec: Any) -> Iterator[pd.DataFrame]:
    """Rows [start, start+rows) as DataFrames of at most chunk_rows rows; never holds more than one chunk."""
    if rows < 0 or chunk_rows < 1:
        raise ValueError(f"need rows >= 0 and chunk_rows >= 1, got {rows}, {chunk_rows}")
    s = make_spec(**spec)
    for lo in range(start, start + rows, chunk_rows):
        yield s.frame(lo, min(lo + chunk_rows, start + rows))


def write_synthetic_parquet(path: str | Path, rows: int, chunk_rows: int = 1_000_000, start: int = 0,
                            **spec: Any) -> Path:
    """Stream synthetic rows [start, start + rows) into one Parquet file (one row group per chunk); returns the
    path (written to a temporary name and renamed, so a crash leaves no partial file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows < 1 or chunk_rows < 1 or start < 0:
        raise ValueError(f"need rows >= 1, chunk_rows >= 1 and start >= 0, got {rows}, {chunk_rows}, {start}")
    s = make_spec(**spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    try:
        for lo in range(start, start + rows, chunk_rows):
            a = s.arrays(lo, min(lo + chunk_rows, start + rows))
            cols: dict[str, pa.Array] = {n: pa.array(a[n]) for n in s.single_names}
            for n in s.multi_names:
                lengths, values = a[n]
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                cols[n] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
            cols.update({n: pa.array(a[n]) for n in s.dense_names})
            cols.update({n: pa.array(a[n].astype(np.int8)) for n in [*s.task_names, *s.new_task_names]})
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def write_synthetic_dataset(out: str | Path, rows: int, files: int = 1, row_group_rows: int = 131_072,
                            progress: bool = True, **spec: Any) -> dict[str, list[Path]]:
    """Write `rows` synthetic rows as sharded Parquet: out/train (`files` files, the first 80% of the rows, as
    `load("synthetic")` splits), out/valid and out/test (10% each, in files of about the train files' size), with
    row groups of `row_group_rows` rows; returns the paths per split. Refuses an existing, non-empty `out`."""
    from tqdm.auto import tqdm

    if rows < 3 or files < 1:
        raise ValueError(f"need rows >= 3 and files >= 1, got {rows}, {files}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    n_tr, n_va = int(0.8 * rows), int(0.1 * rows)
    bounds = {"train": (0, n_tr), "valid": (n_tr, n_tr + n_va), "test": (n_tr + n_va, rows)}
    per_file = max(1, -(-n_tr // files))
    written: dict[str, list[Path]] = {}
    with tqdm(total=rows, unit=" rows", unit_scale=True, desc="writing", disable=not progress) as bar:
        for split, (lo, hi) in bounds.items():
            written[split] = []
            for k, first in enumerate(range(lo, hi, per_file)):
                n = min(per_file, hi - first)
                written[split].append(write_synthetic_parquet(out / split / f"part-{k:05d}.parquet", n,
                                                              chunk_rows=row_group_rows, start=first, **spec))
                bar.update(n)
    return written


def synthetic(rows: int = 100_000, tables: int = 8, cardinality: int = 10_000, tasks: int = 3, seed: int = 0,
              multi_valued: int = 1, dense: int = 2, chunk_rows: int | None = None, **spec: Any) -> Dataset:
    """A synthetic Dataset split by position 80/10/10 (rows are i.i.d.); chunk_rows bounds generation memory."""
    s = make_spec(tables=tables, cardinality=cardinality, tasks=tasks, seed=seed, multi_valued=multi_valued,
                  dense=dense, **spec)
    if rows < 3:
        raise ValueError(f"rows must be >= 3 to split train/valid/test, got {rows}")
    step = chunk_rows or rows
    df = pd.concat(list(synthetic_chunks(rows, step, **asdict(s))))
    n_tr, n_va = int(0.8 * rows), int(0.1 * rows)
    return Dataset("synthetic", s.schema(), s.task_names, s.new_task_names,
                   df.iloc[:n_tr], df.iloc[n_tr:n_tr + n_va], df.iloc[n_tr + n_va:])
