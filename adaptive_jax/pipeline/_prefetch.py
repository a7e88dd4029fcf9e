"""Prepare batches ahead of the step, in background threads, in order.

A jitted step runs on the device (or on XLA's own threads) without Python's
lock, so while it runs, other threads can hash and pad the next batches:
`Prefetcher(batches, prepare)` reads `batches` in one thread, applies
`prepare` to them in `workers` threads, and hands the results back in the
order of `batches`, at most `depth` of them ahead of the consumer. numpy
releases Python's lock inside its array loops, so the workers run beside the
step and beside each other.

An error, in `prepare` or in reading `batches`, is raised by `next` at the
place of the batch it happened at (the results before it come first), and
ends the iteration; the end of `batches` ends it too. `close()` (or leaving a
`with` block, or reaching the end) stops the threads.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()  # the reader's mark: no more batches
_POLL_S = 0.05  # how often a blocked thread looks whether to stop


class _ReadError:
    """The reader's mark: reading the batches raised `error`."""

    def __init__(self, error: BaseException):
        self.error = error


def _take_slot(slots: threading.Semaphore, stop: threading.Event) -> bool:
    """Waits for a free slot; False once the prefetcher is stopping."""
    while not stop.is_set():
        if slots.acquire(timeout=_POLL_S):
            return not stop.is_set()
    return False


def _read(
    items: Iterator,
    fn: Callable,
    pool: concurrent.futures.Executor,
    order: queue.Queue,
    slots: threading.Semaphore,
    stop: threading.Event,
) -> None:
    """The reader thread: takes a slot per batch, puts its future in `order`.
    It holds no reference to the `Prefetcher`, which may then be collected."""
    try:
        while _take_slot(slots, stop):
            try:
                item = next(items)
            except StopIteration:
                order.put(_END)
                return
            except BaseException as error:  # noqa: BLE001 (handed to the consumer)
                order.put(_ReadError(error))
                return
            order.put(pool.submit(fn, item))
    finally:
        close = getattr(items, "close", None)  # a generator's own cleanup
        if close is not None:
            close()


def _shut_down(
    stop: threading.Event,
    reader: threading.Thread,
    pool: concurrent.futures.Executor,
) -> None:
    stop.set()
    reader.join()
    pool.shutdown(wait=True, cancel_futures=True)


class Prefetcher(Iterator[R], Generic[T, R]):
    """`map(fn, items)`, computed ahead in background threads, in order.

    Args:
      items: the batches (any iterable; read in a thread of its own).
      fn: what to do to each, e.g. `lambda b: fc.prepare(b, columns)`; it
        runs in the worker threads, so it must not hold Python's lock for
        long (numpy does not).
      workers: threads running `fn`, >= 1. With more than one, several
        batches are prepared at once; the order of the results stays that
        of `items`.
      depth: results computed or being computed ahead of the consumer,
        >= `workers`: the bound on the memory held.

    Raises:
      ValueError: `workers` < 1 or `depth` < `workers`.

    Example:
      >>> with Prefetcher(range(5), lambda x: x * x, workers=2) as squares:
      ...     list(squares)
      [0, 1, 4, 9, 16]
    """

    def __init__(
        self,
        items: Iterable[T],
        fn: Callable[[T], R],
        *,
        workers: int = 1,
        depth: int = 2,
    ):
        if workers < 1:
            raise ValueError(f"Prefetcher: workers must be >= 1, got {workers}")
        if depth < workers:
            raise ValueError(
                f"Prefetcher: depth must be >= workers ({workers}), got {depth}: "
                "a worker without a slot would wait"
            )
        self._slots = threading.Semaphore(depth)
        self._order: queue.Queue = queue.Queue()  # futures, in the items' order
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="aj-prefetch"
        )
        self._reader = threading.Thread(
            target=_read,
            args=(iter(items), fn, pool, self._order, self._slots, stop),
            name="aj-prefetch-read",
            daemon=True,
        )
        self._reader.start()
        # Stops the threads on close(), or when the prefetcher is collected.
        self._finalizer = weakref.finalize(self, _shut_down, stop, self._reader, pool)

    def __iter__(self) -> Prefetcher[T, R]:
        return self

    def __next__(self) -> R:
        if not self._finalizer.alive:
            raise StopIteration
        entry = self._next_entry()
        if entry is _END:
            self.close()
            raise StopIteration
        if isinstance(entry, _ReadError):
            self.close()
            raise entry.error
        try:
            result = entry.result()
        except BaseException:
            self.close()
            raise
        self._slots.release()
        return result

    def _next_entry(self) -> object:
        while True:
            try:
                return self._order.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._reader.is_alive() and self._order.empty():
                    raise RuntimeError("Prefetcher: the reader thread died") from None

    def close(self) -> None:
        """Stops the threads: the reader stops taking batches (after the one
        it is reading, if any) and the batches in flight are dropped. Safe to
        call more than once."""
        self._finalizer()

    def __enter__(self) -> Prefetcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
