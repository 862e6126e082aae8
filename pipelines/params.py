"""Reading one section of params.yaml over a stage's defaults (shared by every stage)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml


def read_section(path: str | Path | None, section: str, defaults: dict, *, required: bool = False,
                 merge_dicts: bool = False) -> dict:
    """``defaults`` updated by the file's ``section``; unknown keys are an error naming the file.

    A missing file gives the defaults unless ``required``. With ``merge_dicts`` a dict value
    updates the default dict instead of replacing it (e.g. ``sources: {test: ...}``).
    """
    params = copy.deepcopy(defaults)
    if path is None:
        return params
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"params file {path} does not exist")
        return params
    values = (yaml.safe_load(path.read_text()) or {}).get(section) or {}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ValueError(f"{path}: unknown {section} setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(defaults)}")
    for key, value in values.items():
        if merge_dicts and isinstance(params.get(key), dict) and isinstance(value, dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params
