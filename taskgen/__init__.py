"""llvbench task generation: image sources, the registered pure task functions, shards.

Python entry points (DESIGN.md): ``taskgen.list_tasks()`` and ``taskgen.get_task(name)``.
Built-in task modules are imported on first use, so ``import taskgen`` stays cheap.
"""
from __future__ import annotations

import importlib
import logging
from importlib import metadata

from .registry import CANONICAL_ORDER, TaskSpec, register_task, sample_rng, task_index

__all__ = ["list_tasks", "get_task", "task_names", "register_task", "sample_rng", "task_index",
           "TaskSpec", "CANONICAL_ORDER", "UnknownTaskError", "task_package", "third_party_tasks",
           "describe_third_party"]

_BUILTIN_MODULES = (
    "taskgen.tasks.restoration",
    "taskgen.tasks.enhancement",
    "taskgen.tasks.edge",
    "taskgen.tasks.stylization",
    "taskgen.tasks.photographic",
    "taskgen.tasks.unseen",
)
_loaded = False


class UnknownTaskError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _load_builtin_tasks() -> None:
    global _loaded
    if _loaded:
        return
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    # Third-party tasks register themselves when their entry point module is imported.
    # One broken plug-in must not break every command: it is logged, named, and left out.
    for entry in metadata.entry_points(group="llvbench.tasks"):
        try:
            entry.load()
        except Exception as err:
            package = getattr(entry.dist, "name", None) or "?"
            logging.getLogger(__name__).warning(
                "task plug-in %r (%s, package %s) not loaded: %s: %s", entry.name, entry.value, package,
                type(err).__name__, err)
    _loaded = True


def list_tasks(category: str | None = None, *, training_only: bool = False,
               split: str | None = None) -> list[TaskSpec]:
    """Registered tasks in canonical (paper table) order; filter by category, training mix or split."""
    from .registry import _sort_key, registered

    _load_builtin_tasks()
    specs = sorted(registered().values(), key=_sort_key)
    if category is not None:
        specs = [s for s in specs if s.category == category]
    if training_only:
        specs = [s for s in specs if s.in_training_mix]
    if split is not None:
        specs = [s for s in specs if split in s.splits]
    return specs


def task_names(category: str | None = None) -> list[str]:
    return [s.name for s in list_tasks(category)]


def get_task(name: str) -> TaskSpec:
    from .registry import registered

    _load_builtin_tasks()
    try:
        return registered()[name]
    except KeyError:
        known = ", ".join(task_names())
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}") from None


def task_package(spec: TaskSpec) -> str:
    """Top-level package of the module defining the task function: ``taskgen`` for built-ins."""
    return spec.fn.__module__.split(".")[0]


def third_party_tasks(specs) -> dict[str, str]:
    """Task name -> its package, for the tasks among ``specs`` that come from outside taskgen."""
    return {s.name: task_package(s) for s in specs if task_package(s) != "taskgen"}


def describe_third_party(specs) -> str:
    """``colour_quantize (mylab), ...`` for the tasks not from taskgen; empty when there are none.

    Installed plug-ins join ``tasks: all`` silently otherwise, so synth and ``llvbench tasks`` say so.
    """
    return ", ".join(f"{name} ({package})" for name, package in third_party_tasks(specs).items())


def resolve_tasks(spec: str | list[str] | None) -> list[TaskSpec]:
    """Parse a comma list of task names or categories ('all', 'restoration', 'jpeg,canny')."""
    if spec is None or spec == "all" or spec == []:
        return list_tasks()
    if spec == "unseen":
        return list_tasks(split="unseen")
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[TaskSpec] = []
    for raw in (n.strip() for n in names):
        if not raw:
            continue
        group = list_tasks(raw) if raw in ("restoration", "enhancement", "edge", "stylization") else [get_task(raw)]
        out.extend(s for s in group if s not in out)
    return out
