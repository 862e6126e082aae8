"""Where the official reference data lives (shared/reference beside the checkout) and how to read it.

``LLVBENCH_REFERENCE`` overrides the location; tests that need a file skip when it is absent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LLVBENCH_REFERENCE", REPO.parent / "shared" / "reference"))
TOLERANCE = 1e-4  # the fixtures README's float32 tolerance


def manifest_path(name: str) -> Path:
    return REFERENCE / "checkpoints" / f"{name}.json"


def fixture_path(name: str) -> Path:
    return REFERENCE / "fixtures" / f"{name}.npz"


def load_fixture(path: Path):
    """An official fixture -> (meta dict, {param key: tensor}, {input name: tensor}, {output name: tensor})."""
    import torch

    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(bytes(data.pop("meta")))

    def group(prefix: str) -> dict:
        return {k[len(prefix):]: torch.from_numpy(v) for k, v in data.items() if k.startswith(prefix)}

    return meta, group("param:"), group("input:"), group("output:")
