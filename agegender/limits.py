"""Sizes checked before the work starts, so an absurd shape is one line instead of an out-of-memory kill or a
traceback from a worker: nets (num_output, batch_size, --batch) must fit in the machine's memory."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from agegender.errors import AgegenderError

if TYPE_CHECKING:
    from agegender.layers.net import Net


def physical_memory() -> int:
    """Bytes of RAM (POSIX sysconf); 1 TiB when the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def net_bytes(net: Net, training: bool) -> tuple[int, str]:
    """(float32 bytes, the largest item) the net needs at least: every blob once (twice with its gradient when
    training) and every parameter once (four times when training: values, gradients, two solver histories)."""
    items = [(math.prod(shape), f"blob '{name}' {'x'.join(map(str, shape))}")
             for name, shape in net.blob_shapes.items()]
    params = [(math.prod(shape), f"{node.describe()} weights {'x'.join(map(str, shape))}")
              for node in net.nodes for shape in node.blob_shapes]
    total = 4 * (sum(n for n, _ in items) * (2 if training else 1) + sum(n for n, _ in params) * (4 if training else 1))
    return total, max(items + params)[1] if items or params else "-"


def check_net_memory(net: Net, training: bool, what_to_lower: str) -> None:
    """One-line error when the net cannot fit in this machine's memory, naming its largest blob or weights."""
    need, largest = net_bytes(net, training)
    have = physical_memory()
    if need > have:
        raise AgegenderError(f"{net.source} ({net.phase}) needs at least {gib(need)} of memory (largest: {largest}) "
                             f"but this machine has {gib(have)}; lower {what_to_lower}")
