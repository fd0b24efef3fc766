"""Coalition models trained on a process pool are the sequential run's, bit for bit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from royalflow.training.digits import Dataset, TrainingPlan, train_family
from royalflow.training.pool import MAX_TRAIN_WORKERS, worker_count

PLAN = TrainingPlan(steps_base=3, steps_finetune=4, batch=8, samples=4)


def dataset(seed: int, label: int, count: int = 12) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 17, (count, 8, 8)), np.full(count, label, dtype=np.int64))


def digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.glob("*.safetensors"))}


def test_parallel_training_writes_the_sequential_weights_bit_for_bit(tmp_path: Path) -> None:
    # alice and bob hold the same data: their pair model is trained for the cluster evidence too.
    owners = {"alice": dataset(1, 0), "bob": dataset(1, 0), "carol": dataset(2, 1)}
    paths = {workers: train_family(tmp_path / f"workers-{workers}", "tiny", "1", dataset(0, 10), owners, mode="exact",
                                   plan=PLAN, device="cpu", progress=False, workers=workers)
             for workers in (1, 2)}
    files = {workers: digests(path) for workers, path in paths.items()}
    assert len(files[1]) == 7  # base, control, 3 single owners, the pair {alice, bob}, the grand coalition
    assert files[2] == files[1]
    manifests = {w: json.loads((p / "manifest.json").read_text()) for w, p in paths.items()}
    assert manifests[2]["weights"] == manifests[1]["weights"]
    assert manifests[2]["training"]["base_weights"] == manifests[1]["training"]["base_weights"]
    assert manifests[2]["clusters"] == manifests[1]["clusters"] == [["alice", "bob"], ["carol"]]


def test_worker_count_is_one_per_core_and_model_within_the_limit() -> None:
    cpu = torch.device("cpu")
    assert worker_count(cpu, 1) == 1
    assert 1 <= worker_count(cpu, 100) <= MAX_TRAIN_WORKERS
    assert worker_count(cpu, 100, requested=3) == 3
    assert worker_count(torch.device("cuda"), 100) == 1  # one accelerator: its kernels are the parallelism
    with pytest.raises(ValueError):
        worker_count(cpu, 4, requested=0)


def test_prestart_spawns_the_workers_without_holding_up_the_caller(tmp_path: Path) -> None:
    # A spawn returns only once the worker has read its arguments, after its imports (seconds):
    # the prestart's thread waits for that, the caller (training the base) does not.
    from rich.progress import Progress

    from royalflow.attribution.diffusion.unet import DEFAULT_CONFIG
    from royalflow.training.finetune import Trainer
    from royalflow.training.pool import ModelPool

    with Progress(disable=True) as bar:
        trainer = Trainer(tmp_path, tmp_path, {**DEFAULT_CONFIG, "num_class_embeds": 11}, PLAN, dataset(0, 10),
                          torch.device("cpu"), 17, bar, bar.add_task("x", total=1))
        with ModelPool(trainer, tmp_path / "base.safetensors", tmp_path / "control.safetensors", 2) as pool:
            pool.prestart()
            spawning = pool._spawner
            assert spawning is not None and spawning.is_alive()  # still spawning: the caller went on
            started = pool._start()  # joins the prestart: its pool, with its workers
            assert started is pool._pool and pool.parallel and not spawning.is_alive()
