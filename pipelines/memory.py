"""Process-wide malloc settings the entry points apply before heavy CPU work (never at import).

Why: torch's CPU tensors come from the C library's malloc. glibc serves a block over its mmap
threshold (dynamic, at most 32 MiB) with a fresh mmap and unmaps it on free, so every such tensor
faults in all its pages again: one 8×127×128×128 float activation of a 128-px eval batch is 66 MiB.
On this project's 2-core machine that page-faulting made elementwise ops run at a tenth of their
in-place speed and GenLV inference 1.4–1.6× slower (benchmarks/bench_malloc.py, docs/bench.md).
"""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory at the top of the heap goes back to the OS only beyond this (glibc's default: 128 KiB;
# mallopt takes an int, hence 2 GiB).
TRIM_THRESHOLD_BYTES = 2**31 - 1
OPT_OUT_ENV = "LLVBENCH_SYSTEM_MALLOC"  # set to 1 to leave malloc as the C library configures it


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back; True if applied.

    Turns off mmap for large blocks (they come from the heap, and glibc still maps memory when the
    heap cannot grow) and raises the trim threshold. The process then keeps its peak memory until it
    exits, which the llvbench commands do when their job is done. A no-op returning False off glibc
    (macOS, musl) or with ``LLVBENCH_SYSTEM_MALLOC=1``. Settings are inherited by forked workers.
    """
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        log.debug("%s is set: malloc left as configured", OPT_OUT_ENV)
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt exists but ignores these
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("not glibc: malloc left as configured")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not applied:
        log.debug("mallopt refused the settings: malloc left as configured")
    return applied
