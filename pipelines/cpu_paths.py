"""Portable CPU code paths for the commands that make pixels (``llvbench synth``, ``preview``).

Why: numpy, OpenCV (with Intel IPP inside) and OpenBLAS each pick SIMD kernels for the CPU they
run on, and those kernels round differently (FMA or not, other lane counts, other summation
orders). The same recipes gave other bytes in 18 of the 38 task folders on an AVX2 AMD EPYC host
than on an AVX-512 Sapphire Rapids one; on one host, switching any of the three to older kernels
changes some tasks' bytes (tests/test_cpu_paths.py). Pinned to the code every x86-64 CPU runs, the
shards depend only on the recipe and the library versions (``constraints.txt``), not on the host:
numpy runs its baseline kernels only (``NPY_ENABLE_CPU_FEATURES`` naming no dispatch target),
OpenBLAS the Nehalem kernels with one thread, OpenCV neither its dispatched kernels nor IPP
(``cv2.setUseOptimized(False)``). That costs synthesis little time: none measurable at 128 px,
0–15 % at 256 px (docs/shards.md).

numpy and OpenBLAS read their settings when numpy is imported, so ``use_portable_cpu_paths`` must
run before that: the ``llvbench`` entry point calls it first thing, and worker processes inherit
the environment (a process that imported numpy before keeps its kernels).
``LLVBENCH_CPU_PATHS=native`` keeps the host's fastest kernels. What each shard
was made with is recorded in its manifest entry (``taskgen.software``).
"""
from __future__ import annotations

import logging
import os
import platform
import sys
from typing import MutableMapping

log = logging.getLogger(__name__)

MODE_ENV = "LLVBENCH_CPU_PATHS"  # "portable" (the default for the pixel-making commands) or "native"
PORTABLE, NATIVE = "portable", "native"
# A baseline feature on every x86-64 CPU: numpy enables no dispatch target beyond its baseline.
# (Naming unknown or baseline features is harmless there; disabling one would fail numpy's import.)
NUMPY_ONLY_BASELINE = "SSE2"
OPENBLAS_PORTABLE_CORE = "Nehalem"  # SSE4.2-era kernels: every x86-64-v2 CPU runs them


def is_x86_64(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def portable_environment(machine: str | None = None) -> dict[str, str]:
    """The variables that pin numpy and OpenBLAS to kernels every CPU of this architecture runs."""
    env = {MODE_ENV: PORTABLE, "OPENBLAS_NUM_THREADS": "1"}  # thread splits could change sums
    if is_x86_64(machine):  # other architectures: one baseline each; the names below would not apply
        env.update({"NPY_ENABLE_CPU_FEATURES": NUMPY_ONLY_BASELINE, "OPENBLAS_CORETYPE": OPENBLAS_PORTABLE_CORE})
    return env


def wants_native(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(MODE_ENV, "").strip().lower() == NATIVE


def use_portable_cpu_paths(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set the portable variables in ``environ`` (this process and the workers it starts); True if
    set. Nothing changes with ``LLVBENCH_CPU_PATHS=native``, nor in a process that has imported
    numpy already (a test, a notebook): its kernels are fixed, and its workers must match them."""
    if wants_native(environ):
        log.info("%s=native: synthesis uses this CPU's fastest kernels; shards may differ by host", MODE_ENV)
        return False
    if environ is os.environ and "numpy" in sys.modules:
        log.debug("numpy is imported already: this process keeps the host's kernels (the shard entries say which)")
        return False
    env = portable_environment()
    if "NPY_ENABLE_CPU_FEATURES" in env:  # numpy refuses to import with both set; ours disables more
        environ.pop("NPY_DISABLE_CPU_FEATURES", None)
    environ.update(env)
    return True


def apply_portable_opencv(environ: MutableMapping[str, str] = os.environ) -> bool:
    """In a process of a portable run (``LLVBENCH_CPU_PATHS=portable``), switch OpenCV to its
    baseline code without IPP; True if switched. OpenCV reads this at call time, so workers call it too."""
    if environ.get(MODE_ENV) != PORTABLE:
        return False
    import cv2

    cv2.setUseOptimized(False)  # also turns IPP off
    return True
