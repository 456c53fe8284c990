"""A short load run (``benchmarks/load.py``): 20 clients for 10 s on STAC searches and mosaic
tiles; no error, and the server's memory after a warm-up stays within bounds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from load import register_search, report, run_load

MiB = 1024 * 1024


def run_async(coroutine):
    """``asyncio.run`` in a thread of its own (a browser test of the session may own this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_twenty_clients_get_no_error_and_memory_stays_bounded(live_server):
    search_id = register_search(live_server.base)
    warm = run_async(run_load(live_server.base, clients=8, duration=4, search_id=search_id))
    assert warm.error_count == 0, warm.error_examples
    stats = run_async(run_load(live_server.base, clients=20, duration=10, search_id=search_id,
                                 server_pid=live_server.proc.pid))
    print(report(stats, clients=20))
    assert stats.error_count == 0, stats.error_examples
    assert all(len(v) >= 3 for v in stats.latencies.values()), {k: len(v) for k, v in stats.latencies.items()}
    start, end = stats.rss_at(0), stats.rss_at(1)
    assert start > 0 and end - start < 0.5 * start + 150 * MiB, (start / MiB, end / MiB)
    assert "Exception in ASGI application" not in live_server.log_text()
