"""Interchangeable executors for the tiles of a job: in-process, or a local process pool.

Every executor maps a picklable function over tile arguments and yields results as tiles
finish (order not guaranteed), so the job code does not care where a tile runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


class SerialExecutor:
    """Runs tiles one after the other in this process."""

    workers = 1

    def map_unordered(self, fn: Callable, args: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        for a in args:
            yield a, fn(*a)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Runs tiles in a pool of worker processes (``workers`` defaults to the number of cores)."""

    def __init__(self, workers: int | None = None):
        import multiprocessing

        self.workers = workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                         mp_context=multiprocessing.get_context("spawn"))

    def map_unordered(self, fn: Callable, args: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        futures = {self._pool.submit(fn, *a): a for a in args}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_executor(workers: int | None) -> SerialExecutor | ProcessExecutor:
    """``workers`` <= 1: in-process; otherwise a process pool of that size (0/None: all cores)."""
    if workers is not None and workers <= 1:
        return SerialExecutor()
    n = workers or os.cpu_count() or 1
    return SerialExecutor() if n <= 1 else ProcessExecutor(n)
