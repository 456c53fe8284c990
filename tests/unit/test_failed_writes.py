"""After a job's write fails, nothing writes into its staging area once it is discarded.

Two ways writes outlive the failure that ends a job: tiles still running on the executor's other
threads, and the rest of a zarr batch (zarr 3 gathers a batch's writes without cancelling the
others when one fails). Both are waited for before the staging area is removed.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from contextlib import closing

import pytest

from stacube.jobs.executors import ThreadExecutor
from stacube.storage.objects import settle_zarr_writes


def test_closing_a_thread_executor_early_waits_for_the_running_tiles():
    executor = ThreadExecutor(3)
    started, finished = set(), set()
    first_three = threading.Barrier(3)

    def tile(n):
        started.add(n)
        if n < 3:
            first_three.wait(timeout=10)
        if n == 0:
            raise OSError(28, "No space left on device")
        time.sleep(0.3)
        finished.add(n)
        return n

    try:
        with closing(executor.map_unordered(tile, [(n,) for n in range(12)])) as outcomes:
            for _, outcome in outcomes:
                if isinstance(outcome, OSError):
                    break
        # every tile that started beside the failed one has ended; those not started never run
        assert {1, 2} <= finished and finished == started - {0}, (started, finished)
        assert len(started) < 12
        time.sleep(0.5)
        assert finished == started - {0}
    finally:
        executor.close()


def test_zarr_writes_left_running_by_a_failed_batch_end_before_a_discard(tmp_path):
    zarr = pytest.importorskip("zarr")
    from zarr.storage import LocalStore

    class FullDisk(LocalStore):
        """The group document fails at once; its attributes are written a moment later."""

        async def set(self, key, value):
            if key == ".zgroup":
                raise OSError(28, "No space left on device")
            await asyncio.sleep(0.3)
            await super().set(key, value)

    path = tmp_path / "cube.zarr"
    with pytest.raises(OSError):
        zarr.open_group(store=FullDisk(path), mode="w", zarr_format=2, attributes={"title": "x"})
    settle_zarr_writes()
    shutil.rmtree(path, ignore_errors=True)
    time.sleep(0.5)
    assert not path.exists(), sorted(p.name for p in path.rglob("*"))
