"""DVC train stage glue: params.yaml's ``train`` section (+ command-line overrides) -> ``model.train``.

The section's keys are the fields of :class:`model.train.TrainConfig`; a key it does not know is
an error (a typo must not silently train with a default). A missing section or file means the
defaults.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Mapping


from model.train import TrainConfig, train

from pipelines.params import read_section

SECTION = "train"


def defaults() -> dict:
    return TrainConfig().as_dict()


def read_params(path: str | Path | None, *, required: bool = False) -> dict:
    """The ``train`` section of a params file and its profile overlay over the defaults; values must
    have the types of the TrainConfig fields (an error naming the file and key otherwise)."""
    return read_section(path, SECTION, defaults(), required=required, kinds=typing.get_type_hints(TrainConfig))


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


def configure(params: Mapping, overrides: Mapping | None = None) -> TrainConfig:
    """TrainConfig from params plus overrides (values that are not None win; ``overrides`` of the
    architecture are merged key by key)."""
    merged = dict(params)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in merged:
            raise ValueError(f"unknown training setting {key!r}")
        merged[key] = {**(merged.get(key) or {}), **value} if key == "overrides" else value
    merged["task_weights"] = parse_task_weights(merged.get("task_weights"))
    return TrainConfig(**merged)


def run_train(config: TrainConfig, *, progress: bool = True) -> dict:
    return train(config, progress=progress)


def format_summary(summary: Mapping) -> str:
    loss = summary.get("mean_loss_last_10")
    loss_text = f"{loss:.5f}" if loss is not None else "-"
    lines = [f"{summary['status']}: {summary['arch']} ({summary['params']:,} parameters) step "
             f"{summary['step']}/{summary['steps']}, loss (mean of the last 10 steps) {loss_text}",
             f"{summary['samples_per_s']:.2f} samples/s on {summary['device']} x {summary['world_size']}, "
             f"{summary['elapsed']:.1f} s in all; checkpoint (step {summary['checkpoint_step']}) in {summary['out']}"]
    if summary.get("message"):
        lines.append(summary["message"])
    return "\n".join(lines)
