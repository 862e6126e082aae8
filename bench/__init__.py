"""llvbench bench: the generalist protocol, built-in generalists, metrics, evaluation, leaderboards.

Python entry point (DESIGN.md): ``bench.load_generalist(spec, **options)``. ``import bench`` needs
neither torch nor pandas; they are imported where a generalist runs or a table is built.
"""
from __future__ import annotations

from .protocol import BadOutput, Generalist, GeneralistError, check_output, describe, is_generalist
from .registry import (ENTRY_POINT_GROUP, GeneralistNotFound, available_generalists, load_generalist,
                       parse_options, register_generalist)

__all__ = ["load_generalist", "available_generalists", "register_generalist", "parse_options",
           "Generalist", "GeneralistError", "GeneralistNotFound", "BadOutput", "check_output", "describe",
           "is_generalist", "ENTRY_POINT_GROUP"]
