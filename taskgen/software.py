"""What shapes a shard's bytes besides its recipe: the image libraries' versions and the CPU code
paths they run (``pipelines.cpu_paths``). Recorded in every shard entry of the manifest; a shard
is reused only by a run with the same description."""
from __future__ import annotations

import os
import platform


def numpy_kernels() -> str:
    """numpy's SIMD dispatch targets in use beyond its compiled baseline, or ``baseline``."""
    import numpy as np

    try:
        umath = np._core._multiarray_umath
    except AttributeError:  # numpy < 2
        umath = np.core._multiarray_umath
    enabled = [t for t in getattr(umath, "__cpu_dispatch__", []) if umath.__cpu_features__.get(t)]
    return "+".join(enabled) or "baseline"


def opencv_kernels() -> str:
    """OpenCV's dispatched SIMD features and IPP in use, or ``baseline``."""
    import cv2

    if not cv2.useOptimized():
        return "baseline"
    # "SSE SSE2 SSE3 *SSE4.1 *AVX2 *AVX512-SKX?": '*' marks dispatched code, '?' a feature this CPU lacks
    dispatched = [f[1:] for f in cv2.getCPUFeaturesLine().split() if f.startswith("*") and not f.endswith("?")]
    ipp = f"+ipp {cv2.ipp.getIppVersion()}" if cv2.ipp.useIPP() else ""
    return ("+".join(dispatched) or "baseline") + ipp


def software_description() -> str:
    """One line naming the library versions and CPU paths of this process, e.g. ``numpy 2.4.6,
    opencv 5.1.0, ...; x86_64 kernels: numpy baseline, opencv baseline, openblas Nehalem``."""
    import cv2
    import numpy as np
    import PIL
    import scipy
    import skimage

    versions = f"numpy {np.__version__}, opencv {cv2.__version__}, scipy {scipy.__version__}, " \
               f"scikit-image {skimage.__version__}, pillow {PIL.__version__}"
    openblas = os.environ.get("OPENBLAS_CORETYPE") or "auto"
    return (f"{versions}; {platform.machine().lower()} kernels: numpy {numpy_kernels()}, "
            f"opencv {opencv_kernels()}, openblas {openblas}")
