"""Finding a generalist by name: built-ins, the ``llvbench.generalists`` entry points, or
``package.module:attr``.

A spec resolves, in this order, to

1. a built-in (``identity``, ``prompt-target``, ``checkpoint``; see ``bench.builtins``);
2. an entry point named ``spec`` in the group ``llvbench.generalists`` of any installed package;
3. ``package.module:attr`` (``attr`` may be dotted): imported directly, nothing to install;
4. a checkpoint path (a folder with ``config.json`` or ``model.safetensors``, or a
   ``.safetensors`` file): the ``checkpoint`` built-in;
5. with a ``checkpoint=`` option, an architecture name: the ``checkpoint`` built-in, which checks
   that the folder's config names that architecture.

The object found may be a generalist instance (used as is; options are then an error), or a class
or factory called with the options (``checkpoint=PATH``, ``device=...``, plug-in specific ones).
Two options belong to the bench, not the factory: ``self_ensemble=N`` (2, 4 or 8) wraps whatever
was found in ``bench.ensemble.SelfEnsemble`` (the mean of N rotated/flipped predictions), and
``shrink=true`` wraps that in ``bench.shrink.PromptFitShrink`` (the change to the query scaled by a
factor fitted on the prompt pair).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from .protocol import GeneralistError, is_generalist

ENTRY_POINT_GROUP = "llvbench.generalists"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinGeneralist:
    name: str
    factory: Callable
    description: str


_BUILTINS: dict[str, BuiltinGeneralist] = {}


class GeneralistNotFound(GeneralistError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_generalist(name: str, description: str):
    """Decorator registering a factory (usually a class) as the built-in generalist ``name``."""
    def decorator(factory):
        if name in _BUILTINS and _BUILTINS[name].factory is not factory:
            raise ValueError(f"generalist {name!r} is registered twice")
        _BUILTINS[name] = BuiltinGeneralist(name, factory, description)
        return factory
    return decorator


def _builtins() -> dict[str, BuiltinGeneralist]:
    importlib.import_module("bench.builtins")  # registers on first import
    return _BUILTINS


def _entry_points() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def shadowed_entry_points() -> dict[str, str]:
    """{name: 'module:attr'} of the installed entry points named like a built-in: ``--model NAME``
    loads the built-in, so such a plug-in is reachable only by its import path."""
    builtins = _builtins()
    return {name: ep.value for name, ep in _entry_points().items() if name in builtins}


def _shadowing_warning(name: str, value: str) -> str:
    return (f"entry point {name!r} ({value}) has the name of a built-in generalist, which --model {name} "
            f"loads instead; load the plug-in as --model {value} (and give it another name)")


def available_generalists() -> dict[str, str]:
    """{name: description} of the built-ins and of every installed entry point; an entry point
    named like a built-in is logged as a warning (the built-in wins)."""
    found = {name: b.description for name, b in _builtins().items()}
    shadowed = shadowed_entry_points()
    for name, value in shadowed.items():
        log.warning("%s", _shadowing_warning(name, value))
    for name, ep in _entry_points().items():
        if name not in shadowed:
            found[name] = f"entry point {ep.value}"
    return found


def _builtin_classes() -> set:
    return {b.factory for b in _builtins().values() if isinstance(b.factory, type)}


def wrapped(generalist):
    """The generalist a bench wrapper (self-ensemble, shrink) wraps, else None."""
    from .ensemble import SelfEnsemble
    from .shrink import PromptFitShrink

    return generalist.inner if isinstance(generalist, (SelfEnsemble, PromptFitShrink)) else None


def implementation(generalist) -> str:
    """``module.Class`` of the object behind a generalist; a bench wrapper names the one it wraps,
    ``bench.ensemble.SelfEnsemble[module.Class]``. Recorded with results, so two models of one
    name are told apart."""
    kind = type(generalist)
    text = f"{kind.__module__}.{kind.__qualname__}"
    inner = wrapped(generalist)
    return text if inner is None else f"{text}[{implementation(inner)}]"


def is_builtin(generalist) -> bool:
    """True for an instance of a built-in generalist's class (or a bench wrapper of one)."""
    inner = wrapped(generalist)
    return type(generalist) in _builtin_classes() if inner is None else is_builtin(inner)


def check_builtin_name(generalist, where: str) -> None:
    """GeneralistError when a generalist takes a built-in's name without being that built-in: its
    results would be filed, and reused, as the built-in's."""
    builtin = _builtins().get(generalist.name)
    if builtin is not None and type(generalist) is not builtin.factory:
        raise GeneralistError(f"{where} builds a generalist named {generalist.name!r} ({implementation(generalist)}), "
                              f"the name of the built-in {generalist.name!r}: give it another name")


def _import_attr(spec: str):
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise GeneralistNotFound(f"{spec!r}: expected 'package.module:attr'")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name) and module_name[len(err.name):][:1] in ("", "."):
            # the module itself (or its package) is not on the path: a typo or an uninstalled module
            raise GeneralistNotFound(f"{spec!r}: no module named {err.name!r}; it must be installed or on "
                                     "PYTHONPATH (the llvbench command does not search the current folder: "
                                     f"PYTHONPATH=. llvbench ...)") from err
        raise GeneralistError(f"{spec!r}: cannot import {module_name!r} ({err})") from err
    except ImportError as err:
        raise GeneralistError(f"{spec!r}: cannot import {module_name!r} ({err})") from err
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise GeneralistNotFound(f"{spec!r}: module {module_name!r} has no attribute {attr_path!r}") from None
    return obj


def _is_checkpoint_path(path: Path) -> bool:
    from .checkpoint import CONFIG_NAME, WEIGHTS_NAME

    if path.is_dir():
        return (path / CONFIG_NAME).is_file() or (path / WEIGHTS_NAME).is_file()
    return path.is_file() and path.suffix == ".safetensors"


def _architectures() -> list[str]:
    try:
        from model import list_architectures
    except ImportError:  # the bench without the model package: no architectures to name
        return []
    return list_architectures()


def _looks_like_path(spec: str) -> bool:
    from .checkpoint import OFFICIAL_SUFFIXES

    return "/" in spec or "\\" in spec or spec.startswith(".") or spec.endswith((".safetensors", *OFFICIAL_SUFFIXES))


def _explain_unresolved(spec: str) -> None:
    """Raise the specific reason a spec that is not a generalist name failed, if there is one: an
    architecture without a checkpoint, a path that does not exist, or a path holding no checkpoint."""
    from .checkpoint import CONFIG_NAME, WEIGHTS_NAME

    if spec in _architectures():
        raise GeneralistNotFound(f"architecture {spec!r} needs a checkpoint: --checkpoint PATH "
                                 "(a checkpoint folder or file of that architecture)")
    path = Path(spec)
    if path.is_dir():
        raise GeneralistNotFound(f"{spec} holds no checkpoint ({CONFIG_NAME} + {WEIGHTS_NAME})")
    if path.is_file():
        raise GeneralistNotFound(f"{spec} is not a checkpoint (a .safetensors file, or a folder with "
                                 f"{CONFIG_NAME} + {WEIGHTS_NAME}; an official .pth needs --model ARCH --checkpoint FILE)")
    if _looks_like_path(spec):
        raise GeneralistNotFound(f"no such file or folder: {spec}")


def _resolve(spec: str, options: dict):
    """spec -> (object to instantiate, options to pass, where it came from)."""
    builtins = _builtins()
    if spec in builtins:
        shadowed = shadowed_entry_points().get(spec)
        if shadowed is not None:
            log.warning("%s", _shadowing_warning(spec, shadowed))
        return builtins[spec].factory, options, f"built-in {spec!r}"
    entry = _entry_points().get(spec)
    if entry is not None:
        try:
            return entry.load(), options, f"entry point {spec!r} ({entry.value})"
        except Exception as err:
            raise GeneralistError(f"entry point {spec!r} ({entry.value}) failed to load: "
                                  f"{type(err).__name__}: {err}") from err
    if ":" in spec:
        return _import_attr(spec), options, spec
    if _is_checkpoint_path(Path(spec)) and "checkpoint" not in options:
        return builtins["checkpoint"].factory, {"checkpoint": spec, **options}, f"checkpoint folder {spec}"
    if "checkpoint" in options:
        if spec not in _architectures() and "builder" not in options:  # a builder builds its own names
            raise GeneralistNotFound(f"unknown generalist or architecture {spec!r} for the checkpoint"
                                     + did_you_mean(spec, sorted({*builtins, *_architectures()})))
        return builtins["checkpoint"].factory, {"arch": spec, **options}, f"checkpoint of architecture {spec!r}"
    _explain_unresolved(spec)
    raise GeneralistNotFound(f"unknown generalist {spec!r}{did_you_mean(spec, sorted(available_generalists()))} "
                             "(or give 'package.module:attr', a checkpoint folder, or an architecture name with "
                             "--checkpoint)")


def load_generalist(spec, **options):
    """A generalist from a spec string (see the module docstring) or a generalist object itself."""
    from .ensemble import SelfEnsemble, check_transforms
    from .shrink import PromptFitShrink, check_shrink

    who = spec if isinstance(spec, str) else spec.name
    try:  # checked before anything is built
        transforms = check_transforms(options.pop("self_ensemble", 1), who)
        shrink = check_shrink(options.pop("shrink", False), who)
    except ValueError as err:
        raise GeneralistError(str(err)) from None
    generalist = _load(spec, options)
    if transforms != 1:
        generalist = SelfEnsemble(generalist, transforms)
    return PromptFitShrink(generalist) if shrink else generalist


def _load(spec, options: dict):
    if is_generalist(spec):
        if options:
            raise GeneralistError(f"{spec.name}: options {sorted(options)} given for a ready generalist object")
        check_builtin_name(spec, "the generalist object")
        return spec
    obj, options, where = _resolve(str(spec), options)
    if is_generalist(obj):
        if options:
            raise GeneralistError(f"{where} is a ready generalist object; it takes no options "
                                  f"(got {', '.join(sorted(options))})")
        check_builtin_name(obj, where)
        return obj
    if not callable(obj):
        raise GeneralistError(f"{where} is neither a generalist nor a factory (got {type(obj).__name__})")
    try:
        generalist = obj(**options)
    except TypeError as err:
        given = f"the options {sorted(options)}" if options else "no options"
        raise GeneralistError(f"{where} cannot be built with {given}: {err}") from err
    if not is_generalist(generalist):
        raise GeneralistError(f"{where} built a {type(generalist).__name__}, which lacks a string 'name' "
                              "or a predict(query, prompt_input, prompt_target) method")
    check_builtin_name(generalist, where)
    return generalist


def did_you_mean(name, known) -> str:
    """"; did you mean 'x'?" for the nearest of ``known``, else "; known: a, b, ..." (in the given order)."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def check_spec(spec: str, options: dict | None = None) -> None:
    """GeneralistNotFound unless ``spec`` names something to load (a built-in, an entry point, an
    importable ``module:attr``, a checkpoint) and its ``checkpoint`` option, a path, exists.
    Builds nothing: a model that exists but fails to build is a load failure of its evaluation,
    not a usage error."""
    checkpoint = (options or {}).get("checkpoint")
    if isinstance(checkpoint, (str, Path)) and not Path(checkpoint).exists():
        raise GeneralistNotFound(f"no such checkpoint file or folder: {checkpoint} (the checkpoint option)")
    if not is_generalist(spec):
        _resolve(str(spec), dict(options or {}))


def parse_options(pairs: list[str] | None) -> dict:
    """Command-line ``KEY=VALUE`` strings -> options; values parse as JSON when they can (1, 0.5, true)."""
    import json

    options = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r} is not KEY=VALUE")
        try:
            options[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = raw
    return options
