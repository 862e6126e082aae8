"""DVC train stage glue: params.yaml's ``train`` section (+ command-line overrides) -> ``model.train``.

The section's keys are the fields of :class:`model.train.TrainConfig`; a key it does not know is
an error (a typo must not silently train with a default). A missing section or file means the
defaults.
"""
from __future__ import annotations

import json
import logging
import typing
from pathlib import Path
from typing import Mapping


from model.train import TrainConfig, train

from pipelines.params import PROFILE_KEY, load_yaml_mapping, names_other_folder, profile_path, read_section

log = logging.getLogger(__name__)

SECTION = "train"


def defaults() -> dict:
    return TrainConfig().as_dict()


def read_params(path: str | Path | None, *, required: bool = False) -> dict:
    """The ``train`` section of a params file and its profile overlay over the defaults; values must
    have the types of the TrainConfig fields (an error naming the file and key otherwise)."""
    return read_section(path, SECTION, defaults(), required=required, kinds=typing.get_type_hints(TrainConfig))


def params_name_arch(path: str | Path | None) -> bool:
    """Whether the params file or its profile overlay names ``train.arch`` itself (a default does not)."""
    if path is None or not Path(path).is_file():
        return False
    everything = load_yaml_mapping(Path(path))
    overlay_path = profile_path(Path(path), everything.get(PROFILE_KEY))
    layers = [everything] + ([load_yaml_mapping(overlay_path)] if overlay_path is not None else [])
    return any("arch" in (layer.get(SECTION) or {}) for layer in layers)


def parse_task_weights(value):
    """``uniform``/``genlv``/None pass through; a JSON object string, or the path of a ``.json`` file
    holding one, becomes a dict."""
    if isinstance(value, str) and value.strip().endswith(".json") and not value.strip().startswith("{"):
        path = Path(value.strip())
        try:
            value = path.read_text()
        except OSError as err:
            raise ValueError(f"task weights file {path}: {err.strerror or err}") from None
        if not value.strip().startswith("{"):
            raise ValueError(f"task weights file {path} does not hold a JSON object")
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"task weights {value!r} are not a JSON object: {err}") from None
    return value


_PARAMS_ARCH = object()  # configure()'s default: the schedule in params was tuned for params["arch"]


def configure(params: Mapping, overrides: Mapping | None = None, *, schedule_arch=_PARAMS_ARCH) -> TrainConfig:
    """TrainConfig from params plus overrides (values that are not None win; ``overrides`` of the
    architecture are merged key by key). An ``arch`` override or an ``out`` override that names
    another folder drops the params' ``name`` (the run is then labelled with its out folder's
    name), and that ``out`` override the params' ``metrics`` and ``summary`` too, unless those are
    overridden as well. ``schedule_arch``: the architecture the params' schedule was set for (by
    default params["arch"]; None for a file that names none, e.g. one schedule for several archs),
    which decides whether training another arch logs the settings it inherits."""
    merged = dict(params)
    overrides = overrides or {}
    # Labels and logs the params file gives for its own arch and out folder do not follow a command
    # line that trains another arch or writes elsewhere: that run gets the documented defaults (the
    # out folder's name; OUT/metrics.csv, OUT/summary.json) instead of a leaderboard row under a
    # wrong name or the pipeline's tracked metrics/train.* overwritten.
    other_folder = names_other_folder(overrides.get("out"), params.get("out"))
    if (other_folder or overrides.get("arch") not in (None, params.get("arch"))) and overrides.get("name") is None:
        merged["name"] = ""
    if other_folder:
        for key in ("metrics", "summary"):
            if overrides.get(key) is None:
                merged[key] = None
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in merged:
            raise ValueError(f"unknown training setting {key!r}")
        merged[key] = {**(merged.get(key) or {}), **value} if key == "overrides" else value
    merged["task_weights"] = parse_task_weights(merged.get("task_weights"))
    warn_inherited_schedule(params, overrides,
                            params.get("arch") if schedule_arch is _PARAMS_ARCH else schedule_arch)
    return TrainConfig(**merged)


# Settings tuned per architecture: a params file's values for its own arch rarely suit another.
SCHEDULE_KEYS = ("lr", "warmup", "steps", "ckpt_every", "log_every")


def warn_inherited_schedule(params: Mapping, overrides: Mapping, schedule_arch: str | None) -> None:
    """Log which schedule settings a run of another architecture than ``schedule_arch`` takes from
    the params file; nothing when that is None (a schedule not set for one arch)."""
    arch = overrides.get("arch")
    if schedule_arch is None or arch in (None, schedule_arch):
        return
    inherited = [f"{key} {params[key]}" for key in SCHEDULE_KEYS
                 if key in params and overrides.get(key) is None]
    if inherited:
        log.warning("training %s with the params file's settings for %s: %s; pass them on the command line "
                    "if they do not suit %s", arch, schedule_arch, ", ".join(inherited), arch)


def run_train(config: TrainConfig, *, progress: bool = True) -> dict:
    return train(config, progress=progress)


def format_summary(summary: Mapping) -> str:
    """The lines ``llvbench train`` prints; a resume that trained nothing says so first, above the
    summary of the run as it was saved."""
    loss = summary.get("mean_loss_last_10")
    loss_text = f"{loss:.5f}" if loss is not None else "-"
    idle = bool(summary.get("nothing_trained"))
    lines = [summary["message"]] if idle else []
    lines += [f"{'saved run ' if idle else ''}{summary['status']}: {summary['arch']} ({summary['params']:,} "
              f"parameters) step {summary['step']}/{summary['steps']}, loss (mean of the last 10 steps) {loss_text}",
              f"{summary['samples_per_s']:.2f} samples/s on {summary['device']} x {summary['world_size']}, "
              f"{summary['elapsed']:.1f} s in all; checkpoint (step {summary['checkpoint_step']}) in {summary['out']}"]
    if summary.get("message") and not idle:
        lines.append(summary["message"])
    return "\n".join(lines)
