"""Independent coalition models of a family, trained on a pool of processes.

Once the base exists, every coalition model is a function of its own data only (the seed
derives from the data digest, finetune.seed_of), so models can be trained in any order and in
any process; so is the control (mask 0), which fine-tunes from the base like them (unless the
plan starts coalitions from the control: then the control is trained first). Each worker is a spawned process with one intra-op thread (as
limit_cpu_threads) and deterministic algorithms, exactly like the sequential path, so the
weights are the same bit for bit (tests/training/test_pool.py). Workers report every step on a
shared counter; the parent polls it into the family's one progress bar.

``workers == 1`` is the sequential, in-process path (one core, or a GPU: its kernels are the
parallelism there, and several processes on one device would only contend for it).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from royalflow.attribution.diffusion.unet import limit_cpu_threads
from royalflow.attribution.families.digits import weight_file
from royalflow.platform.process import lower_thread_priority
from royalflow.training.finetune import Trainer
from royalflow.training.quiet import quiet_libraries

MAX_TRAIN_WORKERS = 8  # a bound on processes (each holds torch and a model: ~300 MB)
POLL_SECONDS = 0.2  # how often the parent moves the bar from the workers' step counter
PRESTART_NICENESS = 5  # workers spawned beside the base (prestart) yield to it (see _spawn)


def worker_count(device: torch.device, models: int, requested: int | None = None) -> int:
    """``requested`` if given, else one worker per core, at most one per model and MAX_TRAIN_WORKERS;
    1 (sequential) on accelerators."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be at least 1, got {requested}")
        return requested
    if device.type != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, models, MAX_TRAIN_WORKERS))


class _Counter:
    """The Trainer's progress sink inside a worker: steps go to the shared counter."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def advance(self, _task: Any, advance: float = 1) -> None:
        with self.value.get_lock():
            self.value.value += int(advance)


_TRAINER: Trainer | None = None  # one per worker process, built by _start


def _start(counter: Any, spec: dict[str, Any]) -> None:
    global _TRAINER
    quiet_libraries()  # the parent's warning filters do not cross a spawn (its environment does)
    limit_cpu_threads(spec["device"])
    torch.use_deterministic_algorithms(True, warn_only=True)  # as train_family, in the parent
    _TRAINER = Trainer(**spec, bar=_Counter(counter), task=None)  # type: ignore[arg-type]


def _coalition(mask: int, data: Any, base: Path, control: Path) -> Path:
    if _TRAINER is None:
        raise RuntimeError("worker started without its trainer")
    return _model(_TRAINER, mask, data, base, control)


def _model(trainer: Trainer, mask: int, data: Any, base: Path, control: Path) -> Path:
    """Mask 0 is the control (v of the empty coalition, no data); any other a coalition model."""
    return trainer.control(base) if mask == 0 else trainer.coalition(mask, data, base, control)


def _ready() -> None:
    """A no-op job: it makes the pool spawn a worker (and run its initializer) ahead of time."""


class ModelPool:
    """``train({mask: data})``: the coalition models of a family, sequentially (workers == 1) or on
    a process pool started on first use and kept for the family's later batches."""

    def __init__(self, trainer: Trainer, base: Path, control: Path, workers: int) -> None:
        self.trainer, self.base, self.control, self.workers = trainer, base, control, workers
        self._pool: ProcessPoolExecutor | None = None
        self._counter: Any = None
        self._shown = 0  # workers' steps already on the bar
        self._spawner: threading.Thread | None = None  # prestart's, until _start joins it
        self._spawn_error: BaseException | None = None

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._join_spawner(raise_error=False)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def parallel(self) -> bool:
        """Whether train() now runs every model in the workers (duplicates are cache copies here),
        so that this process's global torch RNG is left alone while it trains."""
        return self.workers > 1 and self._pool is not None

    def prestart(self) -> None:
        """Spawn the workers now (each imports torch and builds its trainer: seconds of CPU), for
        example while the base trains on one core, instead of when the first batch is due.

        On a thread of its own: a spawn writes the worker's arguments into a pipe that the worker
        reads only as it imports what they need, so ``Process.start`` returns after the worker's
        imports, one worker after the other (measured: the base waited 10 s for two workers)."""
        if self.workers > 1 and self._pool is None and self._spawner is None:
            self._spawner = threading.Thread(target=self._spawn, name="pool-prestart", daemon=True)
            self._spawner.start()

    def _spawn(self) -> None:
        # Workers spawned beside the base start at a lower priority (inherited from this thread):
        # their imports, seconds of CPU each, then yield to the base, which they all wait for.
        lower_thread_priority(PRESTART_NICENESS)
        try:
            pool = self._create()
            for _ in range(self.workers):
                pool.submit(_ready)
        except BaseException as exc:  # re-raised by _start, on the caller's thread
            self._spawn_error = exc

    def _join_spawner(self, *, raise_error: bool = True) -> None:
        if self._spawner is not None:
            self._spawner.join()
            self._spawner = None
        error, self._spawn_error = self._spawn_error, None
        if error is not None and raise_error:
            raise error

    def train(self, jobs: dict[int, Any]) -> None:
        """Train ``{mask: data}`` (mask 0: the control, data None), skipping models on disk."""
        t = self.trainer
        todo = {m: d for m, d in jobs.items() if not (t.target / weight_file(m)).exists()}  # resumed runs
        if self.workers == 1 or (self._pool is None and len(todo) < 2):  # a pool's start costs seconds
            for mask, data in todo.items():
                _model(t, mask, data, self.base, self.control)
            return
        # Coalitions with the same data (a split owner's parts) have one model: train it once, in
        # the pool; the others are then cache hits, copied here.
        first: dict[str, int] = {}
        for mask, data in todo.items():
            first.setdefault("control" if mask == 0 else data.canonical().digest(), mask)
        pool = self._start()
        pending: set[Future[Path]] = {pool.submit(_coalition, m, todo[m], self.base, self.control) for m in first.values()}
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
            self._show()
            for future in done:
                future.result()  # a worker's error is the family's error
        for mask in sorted(todo.keys() - set(first.values())):
            _model(t, mask, todo[mask], self.base, self.control)

    def _start(self) -> ProcessPoolExecutor:
        self._join_spawner()  # a prestart still spawning: its pool, once every worker is up
        return self._create()

    def _create(self) -> ProcessPoolExecutor:
        if self._pool is None:
            t = self.trainer
            context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            self._counter = context.Value("q", 0)
            spec = {"target": t.target, "cache": t.cache, "config": t.config, "plan": t.plan, "public": t.public,
                    "device": t.device, "levels": t.levels}
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start,
                                             initargs=(self._counter, spec))
        return self._pool

    def _show(self) -> None:
        """Advance the bar by the steps the workers made since the last look."""
        steps = self._counter.value
        self.trainer.bar.advance(self.trainer.task, steps - self._shown)
        self._shown = steps
