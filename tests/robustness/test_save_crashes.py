"""Case 4: saves under kill -9 and under concurrency: the checkpoint always loads, the next save leaves no
temporary, and concurrent savers to one path never fail (the last complete save wins)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
import torch

import mtrec
from mtrec.outputs import temporaries

_FORK = multiprocessing.get_context("fork")


def _save_forever(model, path, started) -> None:
    torch.set_num_threads(1)
    started.set()
    while True:
        mtrec.save(model, path, overwrite=True)


def _save_n(model, path, n: int, errors) -> None:
    torch.set_num_threads(1)
    for i in range(n):
        try:
            mtrec.save(model, path, overwrite=True)
        except Exception as exc:  # counted: the test asserts there are none
            errors.put(f"save {i}: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("kills", [pytest.param(25, marks=pytest.mark.slow), 8])
def test_kill_9_during_saves_never_breaks_the_checkpoint(small_model, adult, tmp_path, kills):
    path = mtrec.save(small_model, tmp_path / "ckpt")
    rows = adult.test.head(64)
    expected = small_model.predict(rows).to_numpy()
    rng = random.Random(0)
    left_behind = 0
    for _ in range(kills):
        started = _FORK.Event()
        child = _FORK.Process(target=_save_forever, args=(small_model, path, started))
        child.start()
        assert started.wait(30)
        time.sleep(rng.uniform(0.01, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        left_behind += bool(temporaries(path))
        assert (mtrec.load(path).predict(rows).to_numpy() == expected).all()
    assert left_behind > 0, "no kill landed inside a save: the test did not exercise crashes"
    mtrec.save(small_model, path, overwrite=True)
    assert temporaries(path) == []
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


@pytest.mark.parametrize("saves", [pytest.param(100, marks=pytest.mark.slow), 25])
def test_two_processes_saving_to_one_path(small_model, tmp_path, saves):
    path = tmp_path / "ckpt"
    errors = _FORK.Queue()
    workers = [_FORK.Process(target=_save_n, args=(small_model, path, saves, errors)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
        assert w.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    mtrec.load(path)
    assert temporaries(path) == []
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_a_leftover_backup_of_this_process_does_not_block_saves(small_model, tmp_path):
    path = mtrec.save(small_model, tmp_path / "ckpt")
    (tmp_path / f".ckpt.old-{os.getpid()}").mkdir()
    (tmp_path / f".ckpt.tmp-{os.getpid()}-zz").mkdir()
    for _ in range(3):
        mtrec.save(small_model, path, overwrite=True)
    mtrec.load(path)
