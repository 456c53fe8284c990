"""Interchangeable executors for the tiles of a job: in-process, threads of this process, a
local process pool, Dask.

Every executor maps a picklable function over argument tuples and yields ``(args, outcome)`` as
tiles finish (order not guaranteed), where ``outcome`` is the return value or the exception the
call raised, so the job code decides what to retry, wherever the tile ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from typing import Any


class SerialExecutor:
    """Runs tiles one after the other in this process."""

    workers = 1

    def map_unordered(self, fn: Callable, args: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        for a in args:
            try:
                yield a, fn(*a)
            except Exception as exc:  # handed to the caller, which decides
                yield a, exc

    def close(self) -> None:
        pass


class _PoolExecutor:
    """Tiles on a ``concurrent.futures`` pool of ``workers`` (default: one per core), created at
    first use; a pool that an outcome shows broken (:meth:`_breaks_pool`) is dropped after the
    round and made again for the next. When the caller stops early (a tile failed for good), the
    tiles not started are cancelled and the running ones are waited for: none writes into a
    staging area after the job discarded it."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool = None

    def _new_pool(self):
        raise NotImplementedError

    def _breaks_pool(self, exc: BaseException) -> bool:
        return False

    def map_unordered(self, fn: Callable, args: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        if self._pool is None:
            self._pool = self._new_pool()
        futures = {self._pool.submit(fn, *a): a for a in args}
        broken = False
        try:
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:
                    broken = broken or self._breaks_pool(exc)
                    yield futures[fut], exc
        finally:
            for fut in futures:
                fut.cancel()
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            else:
                wait(futures)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ProcessExecutor(_PoolExecutor):
    """Runs tiles in a pool of worker processes (``workers`` defaults to the number of cores).

    A worker that dies (killed, out of memory) breaks the pool: its tiles come back as
    ``BrokenProcessPool`` errors and the pool is rebuilt for the next round.
    """

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def _breaks_pool(self, exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        if self._pool is None:
            return []
        return [p.pid for p in getattr(self._pool, "_processes", {}).values()]


class ThreadExecutor(_PoolExecutor):
    """Runs tiles on ``workers`` threads of this process (default: one per core).

    A tile's reads (GDAL) and kernels (numpy, the compiled loops) release the GIL, so tiles
    run side by side as in a process pool, without a start-up per worker (each worker process
    imports the stack again, and numba's code generator where the loops were not compiled ahead
    of time: ~2 s of CPU on the machine of README's figures). The local default (``STACUBE_EXECUTOR=threads``).
    """

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="stacube-tile")


class DaskExecutor:
    """Runs tiles on a Dask distributed cluster (``--dask tcp://scheduler:8786``)."""

    def __init__(self, address: str):
        from distributed import Client

        self.client = Client(address)
        self.workers = len(self.client.scheduler_info().get("workers", {})) or 1

    def map_unordered(self, fn: Callable, args: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        from distributed import as_completed as dask_completed

        futures = {self.client.submit(fn, *a, pure=False): a for a in args}
        for fut in dask_completed(list(futures)):
            try:
                yield futures[fut], fut.result()
            except Exception as exc:
                yield futures[fut], exc

    def close(self) -> None:
        self.client.close()


def make_executor(workers: int | None = None, dask: str | None = None, kind: str = "threads"):
    """``dask``: a Dask scheduler address; else ``workers`` <= 1: in-process; otherwise
    ``workers`` (0/None: one per core) threads of this process (``kind="threads"``) or worker
    processes (``kind="processes"``)."""
    if dask:
        return DaskExecutor(dask)
    if workers is not None and workers <= 1:
        return SerialExecutor()
    n = workers or os.cpu_count() or 1
    if n <= 1:
        return SerialExecutor()
    return ThreadExecutor(n) if kind == "threads" else ProcessExecutor(n)
