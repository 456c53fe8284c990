"""One object shared by every thread of a process while at least one block uses it.

A job's open files (:mod:`stacube.algo.files`) and its tiles' free stack memory
(:mod:`stacube.algo.buffers`) live as long as the job runs, wherever its tiles run (threads of
the process), without passing them down every call: the code that reads asks for the
:attr:`ProcessShared.current` object, which is None outside a job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessShared(Generic[T]):
    """Holds an object from the start of the first :meth:`use` block to the end of the last
    one (nested or concurrent blocks in any thread share it), then closes it."""

    def __init__(self, close: Callable[[T], None]):
        self._close = close
        self._lock = threading.Lock()
        self._current: T | None = None
        self._users = 0

    @property
    def current(self) -> T | None:
        """The shared object while a block runs, else None."""
        return self._current

    @contextmanager
    def use(self, make: Callable[[], T]) -> Iterator[T]:
        """The shared object (made with ``make`` when no block holds one) for the block."""
        with self._lock:
            if self._current is None:
                self._current = make()
            self._users += 1
            shared = self._current
        try:
            yield shared
        finally:
            with self._lock:
                self._users -= 1
                last = self._users == 0
                if last:
                    self._current = None
            if last:
                self._close(shared)
