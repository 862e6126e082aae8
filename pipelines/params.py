"""Reading one section of params.yaml over a stage's defaults (shared by every stage).

Layers, later ones win: the stage's defaults, the params file's section, the section of the
profile overlay the params file selects (top-level ``profile: NAME`` ->
``profiles/NAME.yaml`` next to the params file; ``cpu`` means no overlay), then the command
line (applied by each stage's ``configure``).
"""
from __future__ import annotations

import contextlib
import copy
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from bench.registry import did_you_mean  # noqa: F401 - the stages and scripts import it from here

PROFILE_KEY = "profile"
# The sections a params file may hold besides ``profile``: one per DVC stage that reads it (dvc.yaml).
SECTIONS = ("synth", "train", "eval", "report")
NO_OVERLAY = "cpu"           # the params file itself is the CPU profile
PROFILES_DIR = "profiles"
# Paths that dvc.yaml interpolates (${eval.out}, ...) or names as stage outputs. DVC resolves
# them from params.yaml alone, so a profile that moved them would write where DVC does not look.
DVC_FIXED_KEYS = ("out", "leaderboard", "summary", "metrics")
# Input paths: dvc.yaml tracks what params.yaml names (${train.shards}, the report's ${eval.out}, ...),
# so a profile that moved them would have the stages read files DVC does not watch.
DVC_INPUT_KEYS = ("shards", "results", "train_logs")


def load_yaml_mapping(path: Path) -> dict:
    """The YAML file at ``path`` as a dict (empty file: {}); anything else is an error naming it."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def available_profiles(params_path: str | Path) -> list[str]:
    """Profile names a params file may select: ``cpu`` and every ``profiles/*.yaml`` next to it."""
    folder = Path(params_path).parent / PROFILES_DIR
    found = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return [NO_OVERLAY] + [name for name in found if name != NO_OVERLAY]


def profile_path(params_path: str | Path, profile) -> Path | None:
    """The overlay file of ``profile`` (None for ``cpu`` or no profile); unknown names are an error."""
    if profile in (None, NO_OVERLAY):
        return None
    known = available_profiles(params_path)
    if not isinstance(profile, str) or profile not in known:
        raise ValueError(f"{params_path}: unknown profile {profile!r}; available: {', '.join(known)} "
                         f"({NO_OVERLAY} = no overlay, others are {Path(params_path).parent / PROFILES_DIR}/NAME.yaml)")
    return Path(params_path).parent / PROFILES_DIR / f"{profile}.yaml"


def check_overlay(overlay_path: Path, overlay: Mapping, params: Mapping) -> None:
    """Reject an overlay that names a section the params file lacks or sets what DVC fixes."""
    sections = [key for key in params if key != PROFILE_KEY]
    unknown = sorted(set(overlay) - set(sections))
    if unknown:
        raise ValueError(f"{overlay_path}: unknown section(s) {', '.join(map(str, unknown))}; "
                         f"known (the params file's): {', '.join(sections)}")
    for section, values in overlay.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{overlay_path}: section {section} must be a mapping, got {type(values).__name__}")
        empty = [key for key, value in values.items() if value is None and isinstance((params.get(section) or {})
                                                                                        .get(key), dict)]
        if empty:  # YAML's `per_task:` with nothing under it would replace the whole mapping
            raise ValueError(f"{overlay_path}: {', '.join(f'{section}.{k}' for k in empty)} is empty (null); "
                             f"an overlay changes entries of a mapping, so list the entries to change or "
                             f"leave the key out")
        fixed = [key for key in DVC_FIXED_KEYS if key in values]
        if fixed:
            raise ValueError(f"{overlay_path}: sets {', '.join(f'{section}.{k}' for k in fixed)}; output paths "
                             f"stay in params.yaml because dvc.yaml reads them from there (${{{section}.{fixed[0]}}}) "
                             f"and would track the wrong files")
        inputs = [key for key in DVC_INPUT_KEYS if key in values]
        if inputs:
            raise ValueError(f"{overlay_path}: sets {', '.join(f'{section}.{k}' for k in inputs)}; input paths stay "
                             f"in params.yaml because dvc.yaml tracks the files params.yaml names, and would not "
                             f"rerun the stage when the ones read instead change")
        new_tasks = sorted(set(values.get("per_task") or {}) - set((params.get(section) or {}).get("per_task") or {}))
        if new_tasks:
            raise ValueError(f"{overlay_path}: {section}.per_task adds task(s) {', '.join(new_tasks)} that params.yaml "
                             f"does not list; dvc.yaml makes one stage per params.yaml entry (foreach), so add "
                             f"them there (an overlay may only change existing entries)")


def check_params(path: Path, params: Mapping) -> None:
    """Reject a params file with an unknown top-level key (a typo such as ``trian``) or a section
    that is not a mapping: either would leave a stage on its defaults without a word."""
    unknown = sorted(map(str, set(params) - {PROFILE_KEY, *SECTIONS}))
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
                         f"known: {PROFILE_KEY}, {', '.join(SECTIONS)}")
    for section in SECTIONS:
        _check_mapping(path, section, params.get(section))


def _check_mapping(source: Path, section: str, values) -> None:
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"{source}: section {section} must be a mapping of settings, "
                         f"got {type(values).__name__} {values!r}")


def _type_name(kind) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
            dict: "a mapping", list: "a list", tuple: "a list"}.get(kind, getattr(kind, "__name__", str(kind)))


def coerce(value, kind, where: str):
    """``value`` as type ``kind`` (int, float, bool, str, dict, list, tuple, ``X | None``; others
    pass); a ValueError naming ``where`` (e.g. ``params.yaml: train.lr``) when it is not one."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        kind = options[0] if len(options) == 1 else Any
    kind = typing.get_origin(kind) or kind
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        if number and (isinstance(value, int) or value.is_integer()):
            return int(value)
    elif kind is float:
        if number:
            return float(value)
        if isinstance(value, str):  # YAML 1.1 (PyYAML) reads 1e-4, without a dot, as a string
            with contextlib.suppress(ValueError):
                if math.isfinite(float(value)):
                    return float(value)
    elif kind is str:
        if isinstance(value, str) or number:
            return str(value)
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is dict:
        if isinstance(value, dict):
            return value
    elif kind in (list, tuple):
        if isinstance(value, (list, tuple)):
            return value
    else:
        return value
    raise ValueError(f"{where} must be {_type_name(kind)}, got {value!r}")


def _coerce_all(source: Path, section: str, values: Mapping, kinds: Mapping | None) -> dict:
    return {key: coerce(value, kinds[key], f"{source}: {section}.{key}") if kinds and key in kinds else value
            for key, value in values.items()}


def _update(params: dict, values: Mapping, merge_dicts: bool) -> None:
    for key, value in values.items():
        if merge_dicts and isinstance(params.get(key), dict) and isinstance(value, dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value


def _check_keys(source: Path, section: str, values: Mapping, defaults: Mapping, closed: tuple = ()) -> None:
    _check_mapping(source, section, values)
    unknown = sorted(map(str, set(values) - set(defaults)))
    if unknown:
        raise ValueError(f"{source}: unknown {section} setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(defaults)}")
    for key in closed:  # dict settings whose keys are those of the default (e.g. counts per split)
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{source}: {section}.{key} must be a mapping ({', '.join(defaults[key])}), "
                             f"got {value!r}")
        typos = sorted(map(str, set(value) - set(defaults[key])))
        if typos:
            raise ValueError(f"{source}: unknown {section}.{key} key(s) {', '.join(typos)}; "
                             f"known: {', '.join(defaults[key])}")


def read_section(path: str | Path | None, section: str, defaults: dict, *, required: bool = False,
                 merge_dicts: bool = False, closed: tuple[str, ...] = (), kinds: Mapping[str, Any] | None = None,
                 check: Callable[[Path, dict], dict] | None = None) -> dict:
    """``defaults`` updated by the file's ``section``, then by its profile overlay's ``section``.

    Unknown keys (top-level, in the section, or in a ``closed`` dict setting) are an error naming
    the file (params or overlay), and so is a value that ``kinds`` (key -> type) refuses. A missing
    file gives the defaults unless ``required``. With ``merge_dicts`` a dict value updates the dict
    below it instead of replacing it (e.g. ``sources: {test: ...}``), in both layers. ``check``
    (file, the layer's typed values) -> the values to merge: a stage's own checks of each layer,
    raising a ValueError that names that file.
    """
    params = copy.deepcopy(defaults)
    if path is None:
        return params
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"params file {path} does not exist")
        return params
    everything = load_yaml_mapping(path)
    check_params(path, everything)
    values = everything.get(section) or {}
    _check_keys(path, section, values, defaults, closed)
    _update(params, _checked(path, _coerce_all(path, section, values, kinds), check), merge_dicts)
    overlay_path = profile_path(path, everything.get(PROFILE_KEY))
    if overlay_path is not None:
        overlay = load_yaml_mapping(overlay_path)
        check_overlay(overlay_path, overlay, everything)
        overlay_values = overlay.get(section) or {}
        _check_keys(overlay_path, section, overlay_values, defaults, closed)
        _update(params, _checked(overlay_path, _coerce_all(overlay_path, section, overlay_values, kinds), check),
                merge_dicts)
    return params


def _checked(source: Path, values: dict, check: Callable[[Path, dict], dict] | None) -> dict:
    return values if check is None else check(source, values)


def setting_source(path: str | Path | None, section: str, key: str) -> Path | None:
    """The file that gives ``section.key`` its value: the profile overlay when it sets the key, else
    the params file (None without one). For errors found after reading, e.g. a checkpoint of
    ``eval.models`` that does not exist, so that they name the file to edit."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    everything = load_yaml_mapping(path)
    overlay_path = profile_path(path, everything.get(PROFILE_KEY))
    if overlay_path is not None and key in (load_yaml_mapping(overlay_path).get(section) or {}):
        return overlay_path
    return path


def names_other_folder(override: str | Path | None, configured: str | Path | None) -> bool:
    """True when a command-line ``--out`` points somewhere other than the params' out folder (both
    resolved from the working directory, so ``data/shards`` and its absolute path are one folder)."""
    if override is None:
        return False
    return configured is None or str(configured) == "" or Path(override).resolve() != Path(configured).resolve()


# What a stage's main() reports as one line (the libraries' errors name their file, task or model);
# the same set as the llvbench command's.
STAGE_ERRORS = (ValueError, KeyError, OSError, RuntimeError)


def run_stage_main(stage: str, description: str, default_params: str, read_params: Callable,
                   run_stage: Callable, argv: list[str] | None = None) -> tuple[Any, int]:
    """A DVC stage's command line: ``--params`` (default ``default_params``; a file named must
    exist) and ``-v``; returns (the stage's result, 0), or (None, 1) after one error line
    ``llvbench STAGE stage: error: ...`` (``-v``: the traceback instead)."""
    import argparse
    import logging
    import sys

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", help=f"params file (default: {default_params}, built-in defaults if it does "
                                          "not exist); a file given here must exist")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages; errors with a traceback")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    params_file = args.params or default_params
    from pipelines.memory import reuse_freed_memory

    reuse_freed_memory()  # big CPU tensors without page faults on every allocation
    try:
        return run_stage(read_params(params_file, required=args.params is not None), params_file), 0
    except STAGE_ERRORS as err:
        if args.verbose:
            raise
        print(f"llvbench {stage} stage: error: {err}", file=sys.stderr)
        return None, 1
