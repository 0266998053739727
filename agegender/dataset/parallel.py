"""Per-image work on a few threads, results in input order.

Threads, not processes: OpenCV's decode, resize, noise and encode release the GIL, and a decoded 256x256 image
(192 KiB) would cost more to pickle between processes than to make.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` threads (in this thread when workers <= 1), at most 32 results per
    worker ahead of the consumer so memory stays small."""
    if workers <= 1:
        yield from map(fn, items)
        return
    ahead = 32 * workers  # ~12 MiB of 256x256 images: decoding goes on while the LMDB writer syncs
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
