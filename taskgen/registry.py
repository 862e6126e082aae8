"""The task registry: the one place the CLI, shards, training and bench look tasks up.

A task is a pure function ``fn(image, rng, **aux) -> (input, target, params)`` where ``image`` is
uint8 RGB HWC, ``rng`` a ``numpy.random.Generator`` and ``params`` a JSON-serialisable dict of every
drawn value.  Tasks that need scene depth set ``needs_depth=True`` and accept ``depth=`` (float32
HxW in [0, 1], 1 = far); called without it they fall back to a documented proxy, so the plain
``fn(image, rng)`` contract of DESIGN.md always holds.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

CATEGORIES = ("restoration", "enhancement", "edge", "stylization")
METRICS = ("psnr", "mae")
# "unseen" holds the held-out tasks of the unseen-task track (test-only, never trained on).
SPLITS = ("train", "test", "unseen")

# Display order (the paper's table order) and the task_index used for seeding.  Appending is
# safe; reordering or renaming changes every generated sample of the moved tasks.
CANONICAL_ORDER = (
    # restoration (Table 1 order); rain is evaluated in two styles as the paper's columns
    "gaussian_noise", "poisson_noise", "salt_pepper", "gaussian_blur", "jpeg", "ringing", "rl",
    "inpainting", "rain_simple", "rain_complex", "haze", "mixed",
    # enhancement
    "low_light", "retouch", "local_laplacian", "tone_multiscale", "underwater_contrast",
    "underwater_color", "sdr_to_hdr", "hdr_to_sdr",
    # edge
    "canny", "laplacian", "perceptual_edges",
    # stylization
    "pencil", "photographic", "rtv", "vermeer", "jojo", "raphael", "fauvism", "divisionism",
    "cloisonnism",
    # held-out tasks of the unseen-task track (in_training_mix=False)
    "vignetting_removal", "motion_deblur", "sepia", "emboss", "colour_inversion", "gamma_change",
)

TaskFn = Callable[..., tuple]


@dataclass(frozen=True)
class TaskSpec:
    """Metadata of one registered task plus its pure generator function."""

    name: str
    category: str
    metric: str
    target_domain: str
    description: str
    fn: TaskFn = field(repr=False, compare=False)
    departs_from_paper: str = ""
    needs_depth: bool = False
    hdr: str = ""  # "input" or "target" when that side is a uint16 HDR image
    in_training_mix: bool = True  # False: a held-out task, only in the "unseen" split

    @property
    def index(self) -> int:
        return task_index(self.name)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this task is synthesised for."""
        return ("train", "test") if self.in_training_mix else ("unseen",)

    def generate(self, image: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None):
        """Run the task with the optional aux inputs it declared; returns (input, target, params)."""
        if self.needs_depth and depth is not None:
            return self.fn(image, rng, depth=depth)
        return self.fn(image, rng)

    def as_row(self) -> dict:
        return {
            "name": self.name,
            "category": self.category,
            "metric": self.metric,
            "target_domain": self.target_domain,
            "description": self.description,
            "departs_from_paper": self.departs_from_paper,
            "needs_depth": self.needs_depth,
            "hdr": self.hdr,
            "in_training_mix": self.in_training_mix,
            "splits": list(self.splits),
        }


_REGISTRY: dict[str, TaskSpec] = {}
_TASK_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Words that --tasks and the mismatch track read as something other than a task.
RESERVED_NAMES = frozenset(CATEGORIES) | {"all", "unseen", "clean"}


def register_task(*, name: str, category: str, metric: str, target_domain: str,
                  description: str, departs_from_paper: str = "", needs_depth: bool = False,
                  hdr: str = "", in_training_mix: bool = True):
    """Decorator registering a pure task function under ``name``."""
    if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
        # Sample keys are TASK/SPLIT/INDEX and shard files TASK-PART.tar; WebDataset cuts member
        # names at the first dot, so a dot, slash or dash in a name would corrupt both.
        raise ValueError(f"task name {name!r} must be snake_case: lowercase letters, digits and '_', "
                         "starting with a letter or '_'")
    if name in RESERVED_NAMES:
        raise ValueError(f"task name {name!r} is reserved (a category, 'all', 'unseen' or the mismatch "
                         "track's 'clean'); choose another")
    if category not in CATEGORIES:
        raise ValueError(f"task {name!r}: category {category!r} is not one of {CATEGORIES}")
    if metric not in METRICS:
        raise ValueError(f"task {name!r}: metric {metric!r} is not one of {METRICS}")
    if hdr not in ("", "input", "target"):
        raise ValueError(f"task {name!r}: hdr must be '', 'input' or 'target'")

    def decorator(fn: TaskFn) -> TaskFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            old = _REGISTRY[name].fn
            raise ValueError(f"task {name!r} is already registered by {old.__module__}.{old.__qualname__}; "
                             f"{fn.__module__}.{fn.__qualname__} needs another name")
        _REGISTRY[name] = TaskSpec(name=name, category=category, metric=metric,
                                   target_domain=target_domain, description=description, fn=fn,
                                   departs_from_paper=departs_from_paper, needs_depth=needs_depth,
                                   hdr=hdr, in_training_mix=in_training_mix)
        return fn

    return decorator


def task_index(name: str) -> int:
    """Stable integer id of a task for seeding: its canonical position, else a name hash."""
    if name in CANONICAL_ORDER:
        return CANONICAL_ORDER.index(name)
    return 1000 + zlib.crc32(name.encode()) % (1 << 24)


def split_index(split: str) -> int:
    if split in SPLITS:
        return SPLITS.index(split)
    return 100 + zlib.crc32(split.encode()) % (1 << 16)


def sample_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    """The generator for one sample, independent of partitioning and worker count (DESIGN.md)."""
    return np.random.default_rng([int(seed), task_index(task), split_index(split), int(index)])


def _sort_key(spec: TaskSpec):
    return (spec.index, spec.name)


def registered() -> dict[str, TaskSpec]:
    return _REGISTRY
