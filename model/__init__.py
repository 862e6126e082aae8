"""llvbench models: GenLV (and later the baselines), found by name.

Python entry point (DESIGN.md): ``model.build(name, **overrides) -> torch.nn.Module``.
``import model`` does not import torch; the architecture module is imported by ``build``.
"""
from __future__ import annotations

from .registry import (ArchSpec, OfficialWeights, UnknownArchitectureError, build, get_architecture,
                       list_architectures, register_architecture)

__all__ = ["build", "list_architectures", "get_architecture", "register_architecture", "ArchSpec",
           "OfficialWeights", "UnknownArchitectureError"]
