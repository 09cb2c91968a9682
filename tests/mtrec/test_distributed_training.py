"""Distributed training end to end (slow): 2-worker runs under every sharding type match single-process training
(loss curve, test AUC within 0.002); a worker killed mid-training is recovered from the last checkpoint with exact
step and data accounting (local processes and Ray Train); Ray binds only to loopback and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mtrec
from mtrec.distributed import train_distributed

pytestmark = pytest.mark.slow

EPOCHS = 3
TYPES = ["data_parallel", "table_wise", "column_wise", "row_wise"]


def _fresh(data: mtrec.datasets.Dataset) -> mtrec.MultiTaskModel:
    return mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")


@pytest.fixture(scope="module")
def single(adult):
    """Single-process training, the reference: (per-epoch losses, test metrics)."""
    model = _fresh(adult)
    result = mtrec.train(model, adult.train, valid=adult.valid, epochs=EPOCHS, seed=0, progress=False)
    return [h["loss"] for h in result.history], mtrec.evaluate(model, adult.test)


@pytest.mark.parametrize("kind", TYPES)
def test_two_workers_match_single_process(adult, single, tmp_path, kind):
    """Same data (the global order): the 2-worker run is the single-process computation split over workers."""
    model = _fresh(adult)
    result = train_distributed(model, adult.train, adult.valid, workers=2, launcher="processes", progress=False,
                               distributed={"sharding": kind, "data_order": "global", "storage_path": str(tmp_path)},
                               epochs=EPOCHS, seed=0)
    losses, reference = single
    assert result.steps == result.planned_steps == EPOCHS * 16
    assert {entry["sharding_type"] for entry in result.plan} == {kind}
    assert np.allclose([h["loss"] for h in result.history], losses, rtol=2e-3), ([h["loss"] for h in result.history],
                                                                                 losses)
    metrics = mtrec.evaluate(model, adult.test)
    for task in adult.tasks:
        assert abs(metrics[task]["auc"] - reference[task]["auc"]) < 0.002, (task, metrics, reference)


def test_sharded_data_order_converges_to_the_single_process_auc(adult, tmp_path):
    """Each worker reading only its shard (the default): the full recipe lands within 0.002 AUC of single-process."""
    reference_model = _fresh(adult)
    mtrec.train(reference_model, adult.train, valid=adult.valid, seed=0, progress=False)
    reference = mtrec.evaluate(reference_model, adult.test)
    model = _fresh(adult)
    result = train_distributed(model, adult.train, adult.valid, workers=2, launcher="processes", progress=False,
                               distributed={"sharding": "row_wise", "storage_path": str(tmp_path)}, seed=0)
    assert result.steps == 16 * len(result.history)
    metrics = mtrec.evaluate(model, adult.test)
    for task in adult.tasks:
        assert abs(metrics[task]["auc"] - reference[task]["auc"]) < 0.002, (task, metrics, reference)


def _weights(model: mtrec.MultiTaskModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.require_network().state_dict().items()}


def test_killed_worker_resumes_exactly_local_processes(adult, tmp_path):
    common = {"sharding": "row_wise", "checkpoint_every": 5, "storage_path": str(tmp_path)}
    clean = _fresh(adult)
    train_distributed(clean, adult.train, adult.valid, workers=2, launcher="processes", progress=False,
                      distributed=common, epochs=2, seed=0)
    model = _fresh(adult)
    result = train_distributed(model, adult.train, adult.valid, workers=2, launcher="processes", progress=False,
                               distributed={**common, "fail_once_at_step": 12, "max_failures": 1}, epochs=2, seed=0)
    assert (Path(result.run_dir) / "failure_injected").exists()
    assert result.resumes == [10] and result.steps == result.planned_steps == 32
    assert result.ledger == [[1, 0, 16], [2, 0, 16]]
    a, b = _weights(clean), _weights(model)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run must end exactly where the clean run ends"


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _ray_processes() -> set[int]:
    """Live processes below this one that belong to Ray (the embedded cluster and its workers)."""
    found = set()
    for pid in _descendants(os.getpid()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if stat != "Z" and "ray" in cmdline.lower():
            found.add(pid)
    return found


def _listeners() -> list[tuple[str, set[int]]]:
    """(local address, pids) of every listening TCP socket."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        pids = {int(p.split("=")[1]) for p in fields[-1].split(",") if p.startswith("pid=")}
        rows.append((fields[3], pids))
    return rows


def _our_listeners() -> list[str]:
    """Listening addresses of this process's descendants, as 'address (process name)'."""
    ours = _descendants(os.getpid())
    out = []
    for addr, pids in _listeners():
        for pid in pids & ours:
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")[:80]
            except OSError:
                name = "?"
            out.append(f"{addr} ({name})")
    return out


def _is_loopback(entry: str) -> bool:
    host = entry.split(" ", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::ffff:127.0.0.1", "::1") or host.startswith("127.")


def test_ray_train_recovers_a_killed_worker_on_loopback_only(adult, tmp_path):
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(_our_listeners())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    model = _fresh(adult)
    try:
        result = mtrec.train(model, adult.train, valid=adult.valid, epochs=2, seed=0, progress=False, workers=2,
                             distributed={"sharding": "table_wise", "checkpoint_every": 4, "fail_once_at_step": 6,
                                          "max_failures": 1, "storage_path": str(tmp_path)})
    finally:
        stop.set()
        watcher.join()
    assert seen, "the watcher should have seen the embedded cluster's listeners"
    assert all(_is_loopback(addr) for addr in seen), sorted(set(seen))
    assert result.resumes == [4] and result.steps == result.planned_steps == 32
    assert result.ledger == [[1, 0, 16], [2, 0, 16]]
    loaded = mtrec.load(result.checkpoint)
    assert np.array_equal(loaded.predict(adult.test).to_numpy(), model.predict(adult.test).to_numpy())
    for task, m in mtrec.evaluate(model, adult.test).items():
        assert m["auc"] > 0.8, (task, m)
    deadline = time.time() + 30
    while _ray_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_processes() and not _our_listeners()
